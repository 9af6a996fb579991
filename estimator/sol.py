"""Speed-of-light model of one layer's MLA / DSA attention block.

Each op is a list of kernels; each kernel has FLOPs, bytes, a precision
(which peak applies) and a kernel group (which fitted efficiency applies).
SOL = sum over kernels of max(FLOPs / peak, bytes / bandwidth): the kernels
run one after another, so their times add.

The arithmetic is written with operators only, so the same code evaluates a
scalar shape (pure Python floats, fast for one lookup) or numpy arrays
(vectorised over many shapes). Where Hopper kernels do more work than the
ideal algorithm, the model follows the kernel (see design/SOL.md): DSA sparse
attention processes all index_topk slots and pads heads to a multiple of 64;
the lightning indexer is not split by tensor parallelism and runs only when
the context exceeds index_topk.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .common import DTYPE_BYTES
from .specs import ModelSpec, SystemSpec

# Kernel groups: one compute and one bandwidth efficiency each in the calibrated SOL.
GROUPS = (
    "gemm_bf16",
    "gemm_fp8",
    "dense_attn",
    "dense_attn_rows",
    "mla_decode",
    "mla_decode_fp8kv",
    "sparse_attn",
    "indexer",
    "elementwise",
)
SPARSE_HEAD_TILE = 64  # FlashMLA sparse kernels process heads in tiles of 64
KEY_TILE = 128  # flash attention walks keys in tiles: each query row pays at least one tile
ACT_BYTES = 2.0  # activations are bf16


class Kernel(NamedTuple):
    name: str
    group: str
    fp8: bool  # FP8 tensor-core peak applies
    flops: Any  # float or ndarray
    bytes: Any


def _min(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.minimum(a, b)
    return a if a < b else b


def _ceil_div(a, b):
    return -(-a // b)


def _gemm(name, group, fp8, m, k, n, w):
    # scalars multiply first so that array shapes cost one pass per product
    return Kernel(name, group, fp8, m * (2.0 * k * n), (w * k) * n + m * (ACT_BYTES * (k + n)))


def phase_dims(phase: str, batch, isl, prefix, kv_len):
    """(T new tokens, L keys per request, Sk summed keys over queries, b) of a shape."""
    b = batch * 1.0
    if phase == "context":
        isl = isl * 1.0
        t = b * isl
        length = prefix + isl
        sk = b * (isl * prefix + isl * (isl + 1.0) * 0.5)
    else:
        t = b
        length = kv_len + 1.0
        sk = b * length
    return t, length, sk, b


class OpDims(NamedTuple):
    """What every kernel formula of an op needs from the model and the dtypes."""

    family: str  # "dsa" or "mla"
    context: bool
    kernel_only: bool
    d: int  # hidden
    rq: int  # q_lora_rank
    rk: int  # kv_lora_rank
    dr: int  # rope head dim
    dn: int  # nope head dim
    dv: int  # v head dim
    dlat: int  # latent cache row: rk + dr
    kvb: float  # KV cache bytes per element
    w: float  # GEMM weight bytes per element
    fp8_gemm: bool
    gg: str  # GEMM kernel group


def op_dims(op: str, model: ModelSpec, gemm_type: str, kv_cache_dtype: str) -> OpDims:
    family, _, rest = op.partition("_")
    fp8_gemm = gemm_type.startswith("fp8")
    rk, dr = model.kv_lora_rank, model.qk_rope_head_dim
    return OpDims(
        family, rest.startswith("context"), rest.endswith("_kernel"),
        model.hidden_size, model.q_lora_rank, rk, dr, model.qk_nope_head_dim, model.v_head_dim, rk + dr,
        DTYPE_BYTES[kv_cache_dtype], DTYPE_BYTES[gemm_type], fp8_gemm, "gemm_fp8" if fp8_gemm else "gemm_bf16",
    )  # fmt: skip


def kernels(
    op: str,
    model: ModelSpec,
    *,
    batch,
    isl,
    prefix,
    kv_len,
    num_heads,
    gemm_type: str = "bfloat16",
    kv_cache_dtype: str = "bfloat16",
    index_topk: int | None = None,
) -> list[Kernel]:
    """The kernels of one call of `op` at the given shape (scalars or arrays)."""
    family, context, kernel_only, d, rq, rk, dr, dn, dv, dlat, kvb, w, fp8_gemm, gg = op_dims(
        op, model, gemm_type, kv_cache_dtype
    )
    phase = "context" if context else "generation"
    t, length, sk, b = phase_dims(phase, batch, isl, prefix, kv_len)
    h = num_heads * 1.0
    out: list[Kernel] = []

    if not kernel_only:
        n_kv_a = rq + rk + dr + (model.index_head_dim if family == "dsa" else 0)
        out.append(_gemm("kv_a_proj", gg, fp8_gemm, t, d, n_kv_a, w))
        out.append(_gemm("q_b_proj", gg, fp8_gemm, t, rq, h * (dn + dr), w))
        out.append(_gemm("o_proj", gg, fp8_gemm, t, h * dv, d, w))
        elem = t * (4.0 * (rq + rk) + dlat * (2.0 + kvb)) + t * h * (4.0 * dr)
        out.append(Kernel("elementwise", "elementwise", False, 0.0, elem))

    if family == "mla" and phase == "context":
        if not kernel_only:
            out.append(_gemm("kv_b_proj", gg, fp8_gemm, b * length, rk, h * (dn + dv), w))
        f = 2.0 * h * (dn + dr + dv) * sk
        by = ACT_BYTES * (t * h * (dn + dr) + b * length * h * (dn + dr + dv) + t * h * dv)
        out.append(Kernel("attention", "dense_attn", False, f, by))
        out.append(Kernel("attention_row_tiles", "dense_attn_rows", False, t * h * (2.0 * (dn + dr + dv) * KEY_TILE),
                          0.0))
        return out

    if not kernel_only:
        th = t * h
        out.append(Kernel("bmm_uk", gg, fp8_gemm, th * (2.0 * dn * rk),
                          h * (w * dn * rk) + th * (ACT_BYTES * (dn + rk))))
        out.append(Kernel("bmm_uv", gg, fp8_gemm, th * (2.0 * rk * dv),
                          h * (w * rk * dv) + th * (ACT_BYTES * (rk + dv))))

    if family == "mla":
        f = h * sk * (2.0 * (dlat + rk))
        by = b * length * (kvb * dlat) + t * h * (ACT_BYTES * (dlat + rk))
        group = "mla_decode_fp8kv" if kvb < 2 else "mla_decode"
        out.append(Kernel("attention", group, False, f, by))
        return out

    topk = model.index_topk if index_topk is None else index_topk
    hp = SPARSE_HEAD_TILE * _ceil_div(h, SPARSE_HEAD_TILE)
    l_sparse = length if phase == "context" else _min(length, topk * 1.0)
    thp = t * hp
    f = thp * (2.0 * (dlat + rk) * topk)
    by = b * l_sparse * (kvb * dlat) + thp * (ACT_BYTES * (dlat + rk)) + t * (4.0 * topk)
    out.append(Kernel("sparse_attention", "sparse_attn", False, f, by))

    hi, di = model.index_n_heads, model.index_head_dim
    out.append(_gemm("indexer_q_proj", gg, fp8_gemm, t, rq, hi * di, w))
    out.append(_gemm("indexer_weights_proj", "gemm_bf16", False, t, d, hi, 2.0))
    out.append(Kernel("indexer_quant", "elementwise", False, 0.0, t * (3.0 * (hi * di + di))))
    runs = length > topk  # below index_topk every key is selected: no logits, no top-k
    sk_on = sk * runs
    t_on = t * runs
    out.append(Kernel("indexer_logits", "indexer", True, sk_on * (2.0 * hi * di),
                      t_on * (hi * (di + 4.0)) + (b * length) * runs * (di + 4.0) + sk_on * 4.0))
    out.append(Kernel("indexer_topk", "indexer", False, 0.0, sk_on * 4.0 + t_on * (4.0 * topk)))
    return out


def _maximum(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.maximum(a, b)
    return a if a > b else b


def sol_ms(ks: list[Kernel], system: SystemSpec):
    """Raw roofline: sum over kernels of max(FLOPs/peak, bytes/bandwidth), in ms."""
    total = 0.0
    for k in ks:
        peak = system.peak_fp8_flops_per_s if k.fp8 else system.peak_bf16_flops_per_s
        total = total + _maximum(k.flops / peak, k.bytes / system.hbm_bytes_per_s)
    return total * 1e3
