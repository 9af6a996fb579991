"""Latent-cache MLA attention in Triton: one kernel for

* DSA sparse attention: each query reads only the KV rows named by its top-k
  index list (``idx[t, :]``, -1 = empty slot). Rows are loaded straight from the
  cache inside the kernel; the ``[tokens, topk, 576]`` gather is never built.
* MLA decode (dense) attention: each query reads ``len[t]`` consecutive rows
  starting at ``start[t]`` (no index list).

Absorbed form: q_lat = q_nope @ W_uk (512 wide) and q_pe (64) against the cache
row [latent 512 | rope 64]; V is the latent part of the same row. The output is
the 512-wide latent, which the module multiplies by W_uv.

Heads are the M dimension of the tensor-core tiles (BLOCK_H heads per program,
at least 16); the key list can be split across programs (split-KV, flash-decoding)
and merged by ``combine_splits`` for small batches.
"""
from __future__ import annotations

import math

import torch

try:  # triton is optional on the CPU (CI); the torch reference always works
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except Exception:  # pragma: no cover - depends on the environment
    triton = None
    tl = None
    HAVE_TRITON = False

LOG2E = 1.4426950408889634

# Launch configuration; the runner may override it after a GPU probe.
# Two launch configurations: CONFIG for many query tokens (context), and
# CONFIG_DEC when few (T * head blocks < DEC_PROGRAMS * SMs: decode, small
# prefill); split_target = programs wanted per SM (split-KV below that), for
# the sparse (top-k) mode; split_target_dense for dense decode.
CONFIG = {"block_n": 64, "num_warps": 8, "num_stages": 3, "block_h_max": 64, "skip_empty": False,
          "split_target": 2}
CONFIG_DEC = {"block_n": 64, "num_warps": 8, "num_stages": 2, "block_h_max": 64, "skip_empty": False,
              "split_target": 1, "split_target_dense": 4}
DEC_PROGRAMS = 4
# Dense (MLA decode) mode: "decode" = mla_decode.py (collector 0.2: all heads of a
# cache block co-resident, kv split by makespan); "legacy" = this kernel (0.1);
# "flashinfer" = FlashInfer's paged MLA decode (fi_mla.py, collector 0.3); "flashmla" = DeepSeek's FlashMLA
# dense decode through a C shim (flashmla.py, bf16 cache; fused prologue only, collector 0.4).
DENSE_IMPL = "decode"
LAST = {}  # compile report of the last launch (registers, spills)


if HAVE_TRITON:

    @triton.jit
    def off64(i, stride):
        """Element offset ``i * stride`` in 64-bit arithmetic.

        Every head / token / row offset in these kernels goes through this:
        with int32 operands the product wraps past 2^31 - 1 elements (e.g. the
        head stride of q_lat [H, T, 512] viewed as [T, H, 512] is T * 512, and
        head 127 at T = 49,152 is at 3.2e9), which was the illegal memory
        access of dsa_context H=128 isl=49152.
        """
        return i.to(tl.int64) * stride

    @triton.jit
    def _attn_block(q_lat, q_pe, KV, rows, valid, m_i, l_i, acc, qk_scale, s_kv,
                    D_LAT: tl.constexpr, D_PE: tl.constexpr):
        """One block of keys: gather rows, QK over 512+64, online softmax, P @ latent."""
        offs_d = tl.arange(0, D_LAT)
        offs_r = tl.arange(0, D_PE)
        kv_ptr = KV + rows[:, None] * s_kv
        k_lat = tl.load(kv_ptr + offs_d[None, :], mask=valid[:, None], other=0.0).to(q_lat.dtype)
        k_pe = tl.load(kv_ptr + D_LAT + offs_r[None, :], mask=valid[:, None], other=0.0).to(q_lat.dtype)
        qk = tl.dot(q_lat, tl.trans(k_lat))
        qk = tl.dot(q_pe, tl.trans(k_pe), qk)
        qk = qk * qk_scale
        qk = tl.where(valid[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(qk - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(k_lat.dtype), k_lat, acc)
        return m_new, l_i, acc

    @triton.jit
    def _mla_attn_kernel(
        Q_LAT, Q_PE, KV, IDX, START, LEN, O, O_PART, LSE_PART,
        H, K_SLOTS, CHUNK, qk_scale, out_scale,
        s_ql_t, s_ql_h, s_qp_t, s_qp_h, s_kv, s_idx, s_o_t, s_o_h,
        D_LAT: tl.constexpr, D_PE: tl.constexpr,
        BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
        DENSE: tl.constexpr, SPLIT: tl.constexpr, NUM_SPLITS: tl.constexpr,
        SKIP_EMPTY: tl.constexpr,
    ):
        # grid: (query token, head block, key split). SKIP_EMPTY (sparse mode):
        # skip key blocks whose index slots are all -1 (costs a branch that
        # keeps Triton from software-pipelining the loop).
        t = tl.program_id(0)
        hb = tl.program_id(1)
        sp = tl.program_id(2)
        offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
        hmask = offs_h < H
        offs_d = tl.arange(0, D_LAT)
        offs_r = tl.arange(0, D_PE)
        t64 = t.to(tl.int64)
        q_lat = tl.load(Q_LAT + off64(t, s_ql_t) + off64(offs_h, s_ql_h)[:, None] + offs_d[None, :],
                        mask=hmask[:, None], other=0.0)
        q_pe = tl.load(Q_PE + off64(t, s_qp_t) + off64(offs_h, s_qp_h)[:, None] + offs_r[None, :],
                       mask=hmask[:, None], other=0.0)
        if DENSE:
            n_total = tl.load(LEN + t)
            base = tl.load(START + t).to(tl.int64)
        else:
            n_total = K_SLOTS
            base = 0
        lo = sp * CHUNK
        hi = tl.minimum(lo + CHUNK, n_total)
        end = lo + CHUNK
        m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_H], tl.float32)
        acc = tl.zeros([BLOCK_H, D_LAT], tl.float32)
        for n0 in range(lo, end, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            nmask = offs_n < hi
            if DENSE:
                rows = base + offs_n.to(tl.int64)
                valid = nmask
            else:
                rows = tl.load(IDX + off64(t, s_idx) + offs_n, mask=nmask, other=-1).to(tl.int64)
                valid = rows >= 0
            rows = tl.where(valid, rows, 0)
            if SKIP_EMPTY:
                if tl.max(valid.to(tl.int32), axis=0) > 0:
                    m_i, l_i, acc = _attn_block(q_lat, q_pe, KV, rows, valid, m_i, l_i, acc, qk_scale, s_kv,
                                                D_LAT, D_PE)
            else:
                m_i, l_i, acc = _attn_block(q_lat, q_pe, KV, rows, valid, m_i, l_i, acc, qk_scale, s_kv,
                                            D_LAT, D_PE)
        l_div = tl.where(l_i > 0, l_i, 1.0)
        out = acc / l_div[:, None] * out_scale
        if SPLIT:
            lse = tl.where(l_i > 0, m_i + tl.log2(l_div), float("-inf"))
            base_p = (t64 * NUM_SPLITS + sp) * H
            tl.store(LSE_PART + base_p + offs_h, lse, mask=hmask)
            tl.store(O_PART + off64(base_p + offs_h, D_LAT)[:, None] + offs_d[None, :], out,
                     mask=hmask[:, None])
        else:
            tl.store(O + off64(t, s_o_t) + off64(offs_h, s_o_h)[:, None] + offs_d[None, :],
                     out.to(O.dtype.element_ty), mask=hmask[:, None])


if HAVE_TRITON:

    @triton.jit
    def _combine_kernel(O_PART, LSE, O, H, s_o_t, s_o_h,
                        NUM_SPLITS: tl.constexpr, D: tl.constexpr, BLOCK_S: tl.constexpr):
        t = tl.program_id(0).to(tl.int64)
        h = tl.program_id(1).to(tl.int64)
        offs_s = tl.arange(0, BLOCK_S)
        smask = offs_s < NUM_SPLITS
        base = (t * NUM_SPLITS + offs_s) * H + h
        lse = tl.load(LSE + base, mask=smask, other=float("-inf"))
        m = tl.max(lse, axis=0)
        m = tl.where(m == float("-inf"), 0.0, m)
        w = tl.where(smask, tl.exp2(lse - m), 0.0)
        den = tl.maximum(tl.sum(w, axis=0), 1e-30)
        offs_d = tl.arange(0, D)
        o = tl.load(O_PART + off64(base, D)[:, None] + offs_d[None, :], mask=smask[:, None], other=0.0)
        res = tl.sum(o * w[:, None], axis=0) / den
        tl.store(O + off64(t, s_o_t) + off64(h, s_o_h) + offs_d, res.to(O.dtype.element_ty))


def pick_splits(n_tokens: int, n_head_blocks: int, n_slots: int, n_sm: int = 132,
                min_chunk: int = 256, target: float = 2.0) -> int:
    """Split-KV factor: about target*n_sm programs, chunks of >= min_chunk keys."""
    progs = n_tokens * n_head_blocks
    if progs >= target * n_sm:
        return 1
    want = -(-int(target * n_sm) // progs)
    most = max(1, n_slots // min_chunk)
    return max(1, min(want, most))


def combine_splits(o_part: torch.Tensor, lse: torch.Tensor, out: torch.Tensor) -> None:
    """Merge split-KV partials. o_part [T,S,H,D] fp32, lse [T,S,H] (log2 units)."""
    m = lse.amax(dim=1, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    w = torch.exp2(lse - m)  # [T,S,H]
    num = (o_part * w.unsqueeze(-1)).sum(dim=1)
    den = w.sum(dim=1).clamp_min(1e-30).unsqueeze(-1)
    out.copy_((num / den).to(out.dtype))


def mla_attention(q_lat: torch.Tensor, q_pe: torch.Tensor, kv: torch.Tensor, *,
                  out: torch.Tensor, sm_scale: float, kv_scale: float = 1.0,
                  idx: torch.Tensor | None = None, start: torch.Tensor | None = None,
                  length: torch.Tensor | None = None, n_slots: int | None = None,
                  splits: int | None = None, workspace: dict | None = None,
                  n_sm: int = 132) -> torch.Tensor:
    """Run the Triton kernel.

    q_lat [T,H,512] and q_pe [T,H,64] may be any strided views (last dim
    contiguous); out [T,H,512] likewise. kv [N,576] (bf16 or fp8 e4m3; fp8 is
    scaled by kv_scale). Sparse mode: idx [T,K] int32 global rows (-1 = empty).
    Dense mode: start/length [T] int32 and n_slots = max(length) (for the grid).
    """
    dense = idx is None
    fi = None
    if dense and DENSE_IMPL == "flashinfer":
        from . import fi_mla
        fi = fi_mla if fi_mla.serves("fp8" if kv.dtype == torch.float8_e4m3fn else "bfloat16") else None
    elif dense and DENSE_IMPL == "flashmla":
        from . import flashmla
        fi = flashmla if flashmla.serves("fp8" if kv.dtype == torch.float8_e4m3fn else "bfloat16") else None
    if fi is not None:
        return fi.decode(q_lat, q_pe, kv, out=out, start=start, length=length, sm_scale=sm_scale,
                             kv_scale=kv_scale, workspace=workspace)
    if not HAVE_TRITON:
        raise RuntimeError("triton is not installed: use mla_attention_ref")
    T, H, d_lat = q_lat.shape
    d_pe = q_pe.shape[-1]
    assert kv.shape[1] == d_lat + d_pe and kv.stride(1) == 1
    if dense and DENSE_IMPL in ("decode", "flashinfer", "flashmla"):  # the others: a cache dtype they do not serve
        from . import mla_decode
        return mla_decode.mla_decode(q_lat, q_pe, kv, out=out, start=start, length=length, n_slots=n_slots,
                                     sm_scale=sm_scale, kv_scale=kv_scale, splits=splits, workspace=workspace,
                                     n_sm=n_sm)
    if dense:
        assert start is not None and length is not None and n_slots is not None
        k_slots = int(n_slots)
    else:
        k_slots = idx.shape[1]
    cfg = CONFIG
    if T * -(-H // min(64, CONFIG["block_h_max"])) < DEC_PROGRAMS * n_sm:
        cfg = CONFIG_DEC
    block_h = max(16, min(cfg["block_h_max"], 1 << (H - 1).bit_length()))
    n_hb = -(-H // block_h)
    if splits is None:
        tgt = cfg.get("split_target_dense", cfg.get("split_target", 2)) if dense else cfg.get("split_target", 2)
        splits = pick_splits(T, n_hb, k_slots, n_sm, target=tgt)
    chunk = -(-k_slots // splits)
    bn = cfg["block_n"]
    chunk = -(-chunk // bn) * bn
    splits = -(-k_slots // chunk)
    dummy = q_lat
    if splits > 1:
        ws = workspace if workspace is not None else {}
        key = (T, splits, H, d_lat)
        if ws.get("key") != key:
            ws["key"] = key
            ws["o_part"] = torch.empty((T, splits, H, d_lat), device=q_lat.device, dtype=torch.float32)
            ws["lse"] = torch.empty((T, splits, H), device=q_lat.device, dtype=torch.float32)
        o_part, lse = ws["o_part"], ws["lse"]
    else:
        o_part = lse = dummy
    grid = (T, n_hb, splits)
    k = _mla_attn_kernel[grid](
        q_lat, q_pe, kv,
        idx if idx is not None else dummy,
        start if start is not None else dummy,
        length if length is not None else dummy,
        out, o_part, lse,
        H, k_slots, chunk, sm_scale * kv_scale * LOG2E, kv_scale,
        q_lat.stride(0), q_lat.stride(1), q_pe.stride(0), q_pe.stride(1), kv.stride(0),
        idx.stride(0) if idx is not None else 0, out.stride(0), out.stride(1),
        D_LAT=d_lat, D_PE=d_pe, BLOCK_H=block_h, BLOCK_N=bn,
        DENSE=dense, SPLIT=splits > 1, NUM_SPLITS=splits, SKIP_EMPTY=bool(cfg["skip_empty"]) and not dense,
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    try:
        LAST.update(n_regs=k.n_regs, n_spills=k.n_spills, splits=splits, block_h=block_h)
    except Exception:  # noqa: BLE001 - interpreter / older triton
        LAST.update(splits=splits, block_h=block_h)
    if splits > 1:
        bs = max(2, 1 << (splits - 1).bit_length())
        _combine_kernel[(T, H)](o_part, lse, out, H, out.stride(0), out.stride(1),
                                NUM_SPLITS=splits, D=d_lat, BLOCK_S=bs, num_warps=4)
    return out


def mla_attention_ref(q_lat: torch.Tensor, q_pe: torch.Tensor, kv: torch.Tensor, *,
                      sm_scale: float, kv_scale: float = 1.0,
                      idx: torch.Tensor | None = None, start: torch.Tensor | None = None,
                      length: torch.Tensor | None = None) -> torch.Tensor:
    """Naive float64 PyTorch reference (per query: gather its rows, softmax, weighted sum)."""
    T, H, d_lat = q_lat.shape
    kvf = kv.to(torch.float64) * kv_scale
    q = torch.cat([q_lat, q_pe], dim=-1).to(torch.float64)
    out = torch.zeros((T, H, d_lat), dtype=torch.float64, device=q_lat.device)
    for t in range(T):
        if idx is None:
            s0, n = int(start[t]), int(length[t])
            rows = torch.arange(s0, s0 + n, device=kv.device)
        else:
            rows = idx[t][idx[t] >= 0].long()
        if rows.numel() == 0:
            continue
        k = kvf[rows]  # [n, 576]
        s = (q[t] @ k.T) * sm_scale  # [H, n]
        p = torch.softmax(s, dim=-1)
        out[t] = p @ k[:, :d_lat]
    return out


def softmax_scale(dims_qk: int = 192) -> float:
    return 1.0 / math.sqrt(dims_qk)
