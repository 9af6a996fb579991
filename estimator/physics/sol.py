"""Speed-of-light model of one layer's MLA / DSA attention block.

Each op is a list of kernels; each kernel has FLOPs, bytes, a precision
(which peak applies) and a kernel group (which fitted efficiency applies).
SOL = sum over kernels of max(FLOPs / peak, bytes / bandwidth): the kernels
run one after another, so their times add.

The kernels are data (`kernel_specs`: FLOPs and bytes as linear forms over a
few shape variables); `kernels` evaluates them at scalar or array shapes and
`fastsol` folds the same data with the peaks and fitted efficiencies into the
scalar and the vectorised calibrated SOL. Where Hopper kernels do more work than the
ideal algorithm, the model follows the kernel (see design/SOL.md): DSA sparse
attention processes all index_topk slots and pads heads to a multiple of 64;
the lightning indexer is not split by tensor parallelism and runs only when
the context exceeds index_topk. A kernel_source whose backend path attends
densely or skips the indexer gets those kernels instead (`variants`). Where
the attention kernel's launch is known (the project's own collector,
`launch`), its FLOPs and bytes are those of the launch's waves: padded
chunks, head blocks and the idle SMs of a last partial wave included.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from warehouse.vocab import Op

from estimator.common import DTYPE_BYTES
from estimator.physics.launch import Launch, occupied
from estimator.physics.specs import ModelSpec, SystemSpec
from estimator.physics.variants import AttentionVariant, attention_variant

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
DENSE_NO_INDEXER = AttentionVariant(dense=True, indexer=False)  # what MLA runs


class Kernel(NamedTuple):
    """One kernel evaluated at a shape: FLOPs and bytes (floats or arrays)."""

    name: str
    group: str
    fp8: bool  # FP8 tensor-core peak applies
    flops: Any  # float or ndarray
    bytes: Any


class KernelSpec(NamedTuple):
    """One kernel as data: FLOPs and bytes are linear forms over the shape variables
    (`VARIABLES`), each a tuple of (variable, coefficient); "1" is the constant term."""

    name: str
    group: str
    fp8: bool
    flops: tuple[tuple[str, float], ...]
    bytes: tuple[tuple[str, float], ...]
    waves: str | None = None  # the attention kernel: "sparse" or "dense", whose launch `launch_scale` knows


# Shape variables the kernel forms use (see `shape_variables`).
VARIABLES = ("1", "t", "h", "th", "bl", "blh", "hsk", "thp", "bls", "sk_on", "t_on", "bl_on")


def _min(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.minimum(a, b)
    return a if a < b else b


def _ceil_div(a, b):
    return -(-a // b)


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


def shape_variables(context: bool, index_topk: float, *, batch, isl, prefix, kv_len, num_heads) -> dict:
    """{variable: value} of one shape (floats) or many (arrays), for the kernel forms."""
    t, length, sk, b = phase_dims("context" if context else "generation", batch, isl, prefix, kv_len)
    h = num_heads * 1.0
    bl = b * length
    runs = length > index_topk  # DSA: below index_topk every key is selected, no indexer logits
    return {"1": 1.0, "t": t, "h": h, "th": t * h, "bl": bl, "blh": b * length * h, "hsk": h * sk,
            "thp": t * (SPARSE_HEAD_TILE * _ceil_div(h, SPARSE_HEAD_TILE)),
            "bls": bl if context else b * _min(length, index_topk * 1.0),
            "sk_on": sk * runs, "t_on": t * runs, "bl_on": bl * runs}


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
    o = Op.parse(op)
    fp8_gemm = gemm_type.startswith("fp8")
    rk, dr = model.kv_lora_rank, model.qk_rope_head_dim
    return OpDims(
        o.family, o.context, o.kernel_only,
        model.hidden_size, model.q_lora_rank, rk, dr, model.qk_nope_head_dim, model.v_head_dim, rk + dr,
        DTYPE_BYTES[kv_cache_dtype], DTYPE_BYTES[gemm_type], fp8_gemm, "gemm_fp8" if fp8_gemm else "gemm_bf16",
    )  # fmt: skip


def kernel_specs(op: str, model: ModelSpec, gemm_type: str = "bfloat16", kv_cache_dtype: str = "bfloat16",
                 index_topk: int | None = None, kernel_source: str | None = None) -> tuple[KernelSpec, ...]:
    """The kernels of one call of `op`, as data: the one place the SOL physics is written.

    kernel_source picks the DSA attention variant (`variants.attention_variant`): a dense
    variant runs MLA's dense attention (every prior key) in place of top-k sparse attention
    and, as if index_topk >= context, no indexer logits or top-k selection at any length (the
    indexer's projections still run); one without the indexer is not charged the indexer
    kernels (nor its key projection)."""
    family, context, kernel_only, d, rq, rk, dr, dn, dv, dlat, kvb, w, fp8_gemm, gg = op_dims(
        op, model, gemm_type, kv_cache_dtype
    )
    variant = attention_variant(kernel_source) if family == "dsa" else DENSE_NO_INDEXER
    topk = model.index_topk if index_topk is None else index_topk
    hi, di = model.index_n_heads, model.index_head_dim
    a = ACT_BYTES
    out: list[KernelSpec] = []

    def k(name, group, fp8, flops: dict, nbytes: dict, waves: str | None = None) -> None:
        out.append(KernelSpec(name, group, fp8, tuple((v, float(c)) for v, c in flops.items() if c),
                              tuple((v, float(c)) for v, c in nbytes.items() if c), waves))

    def gemm(name, group, fp8, m: str, kk, n, ww) -> None:
        """GEMM(M = variable m, K, N): F = 2MKN, B = w*K*N + 2M(K+N)."""
        k(name, group, fp8, {m: 2.0 * kk * n}, {"1": ww * kk * n, m: a * (kk + n)})

    if not kernel_only:
        n_kv_a = rq + rk + dr + (di if variant.indexer else 0)
        gemm("kv_a_proj", gg, fp8_gemm, "t", d, n_kv_a, w)
        q = dn + dr
        k("q_b_proj", gg, fp8_gemm, {"th": 2.0 * rq * q}, {"h": w * rq * q, "t": a * rq, "th": a * q})
        k("o_proj", gg, fp8_gemm, {"th": 2.0 * dv * d}, {"h": w * dv * d, "th": a * dv, "t": a * d})
        k("elementwise", "elementwise", False, {}, {"t": 4.0 * (rq + rk) + dlat * (2.0 + kvb), "th": 4.0 * dr})
    if variant.dense and context:  # MHA prefill: keys and values expanded per head, flash attention
        if not kernel_only:
            k("kv_b_proj", gg, fp8_gemm, {"blh": 2.0 * rk * (dn + dv)},
              {"h": w * rk * (dn + dv), "bl": a * rk, "blh": a * (dn + dv)})
        k("attention", "dense_attn", False, {"hsk": 2.0 * (dn + dr + dv)},
          {"th": a * (dn + dr + dv), "blh": a * (dn + dr + dv)})
        k("attention_row_tiles", "dense_attn_rows", False, {"th": 2.0 * (dn + dr + dv) * KEY_TILE}, {})
    else:  # absorbed MQA over the latent cache
        if not kernel_only:
            k("bmm_uk", gg, fp8_gemm, {"th": 2.0 * dn * rk}, {"h": w * dn * rk, "th": a * (dn + rk)})
            k("bmm_uv", gg, fp8_gemm, {"th": 2.0 * rk * dv}, {"h": w * rk * dv, "th": a * (rk + dv)})
        if variant.dense:
            k("attention", "mla_decode_fp8kv" if kvb < 2 else "mla_decode", False, {"hsk": 2.0 * (dlat + rk)},
              {"bl": kvb * dlat, "th": a * (dlat + rk)}, waves="dense")
        else:
            k("sparse_attention", "sparse_attn", False, {"thp": 2.0 * (dlat + rk) * topk},
              {"bls": kvb * dlat, "thp": a * (dlat + rk), "t": 4.0 * topk}, waves="sparse")
    if variant.indexer:
        gemm("indexer_q_proj", gg, fp8_gemm, "t", rq, hi * di, w)
        gemm("indexer_weights_proj", "gemm_bf16", False, "t", d, hi, 2.0)
        k("indexer_quant", "elementwise", False, {}, {"t": 3.0 * (hi * di + di)})
    if variant.indexer and not variant.dense:  # dense attention keeps every key, as if index_topk >= context
        k("indexer_logits", "indexer", True, {"sk_on": 2.0 * hi * di},
          {"t_on": hi * (di + 4.0), "bl_on": di + 4.0, "sk_on": 4.0})
        k("indexer_topk", "indexer", False, {}, {"sk_on": 4.0, "t_on": 4.0 * topk})
    return tuple(out)


def launch_scale(launch: Launch | None, waves: str | None, topk, *, batch, kv_len, num_heads, thp, hsk):
    """Factor on an attention kernel's FLOPs and bytes for a known launch: the head-row x key slots
    the launch occupies (`launch.occupied`) over the kernel form's own (sparse: thp x index_topk;
    dense: hsk, heads x summed keys). 1.0 without a launch, for other kernels and where the rule
    is another kernel's. Generation shapes only: the rules name generation ops."""
    if launch is None or waves is None or launch.rule != waves:
        return 1.0
    if waves == "sparse":
        return occupied(launch, batch, num_heads, topk) / (thp * topk)
    return occupied(launch, batch, num_heads, kv_len + 1.0) / hsk


def linear_form(terms: tuple[tuple[str, float], ...], variables: dict, scale: float = 1.0):
    """sum of coefficient x variable (x scale), in term order; 0.0 for no terms."""
    total = 0.0
    for i, (v, c) in enumerate(terms):
        term = c * scale if v == "1" else (c * scale) * variables[v]
        total = term if i == 0 else total + term
    return total


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
    kernel_source: str | None = None,
    launch: Launch | None = None,
) -> list[Kernel]:
    """The kernels of one call of `op` at the given shape (scalars or arrays); launch: the attention
    launch of the collector that measured (`launch_scale`), None for the plain SOL."""
    specs = kernel_specs(op, model, gemm_type, kv_cache_dtype, index_topk, kernel_source)
    topk = model.index_topk if index_topk is None else index_topk
    context = Op.parse(op).context
    var = shape_variables(context, topk, batch=batch, isl=isl, prefix=prefix, kv_len=kv_len, num_heads=num_heads)
    out = []
    for s in specs:
        f = launch_scale(launch, s.waves, topk, batch=batch, kv_len=kv_len, num_heads=num_heads, thp=var["thp"],
                         hsk=var["hsk"])
        out.append(Kernel(s.name, s.group, s.fp8, linear_form(s.flops, var, f), linear_form(s.bytes, var, f)))
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
