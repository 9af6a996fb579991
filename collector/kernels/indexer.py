"""DSA lightning indexer: FP8 logits over all previous keys, then top-k.

logits[t, j] = k_scale[j] * sum_h w[t, h] * relu(q[t, h, :] . k[j, :])

with q [T, Hi=64, 128] and k [L, 128] in FP8 e4m3 (per-(token, head) and
per-token scales folded into w and k_scale), as in DeepSeek-V3.2's reference
``fp8_index``. Two Triton kernels:

* context: tokens are the M dimension (BLOCK_M queries x BLOCK_N keys per
  program, loop over the 64 index heads), causal (key j visible to the query
  at position p iff j <= p); key tiles wholly in the future are written -inf
  without any math.
* generation: one query per request, the 64 index heads are the M dimension
  (so the tensor-core tile is full and the kernel is bound by reading the
  index-K cache).

``topk_indices`` turns logits into global cache rows (-1 = empty slot).
"""
from __future__ import annotations

import torch

from .mla_attn import HAVE_TRITON

if HAVE_TRITON:
    import triton
    import triton.language as tl

    from .mla_attn import off64

    @triton.jit
    def _indexer_ctx_kernel(
        Q, W, K, KS, OUT,
        n_q, pos0, L, k_rows_per_req,
        s_q_t, s_q_h, s_w_t, s_k, s_o_t,
        NH: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ):
        r = tl.program_id(0)
        mb = tl.program_id(1)
        nb = tl.program_id(2)
        offs_m = mb * BLOCK_M + tl.arange(0, BLOCK_M)
        mmask = offs_m < n_q
        tok = off64(r, n_q) + offs_m
        pos = pos0 + offs_m
        offs_n = nb * BLOCK_N + tl.arange(0, BLOCK_N)
        nmask = offs_n < L
        offs_d = tl.arange(0, D)
        out_ptrs = OUT + off64(tok, s_o_t)[:, None] + offs_n[None, :]
        omask = mmask[:, None] & nmask[None, :]
        last_pos = pos0 + tl.minimum((mb + 1) * BLOCK_M, n_q) - 1
        if nb * BLOCK_N > last_pos:
            tl.store(out_ptrs, tl.full([BLOCK_M, BLOCK_N], float("-inf"), tl.float32), mask=omask)
        else:
            krow = off64(r, k_rows_per_req) + offs_n
            k = tl.load(K + krow[:, None] * s_k + offs_d[None, :], mask=nmask[:, None], other=0.0)
            ks = tl.load(KS + krow, mask=nmask, other=0.0)
            acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
            for h in range(NH):
                q = tl.load(Q + off64(tok, s_q_t)[:, None] + h * s_q_h + offs_d[None, :],
                            mask=mmask[:, None], other=0.0)
                w = tl.load(W + off64(tok, s_w_t) + h, mask=mmask, other=0.0)
                s = tl.dot(q, tl.trans(k))
                acc += tl.maximum(s, 0.0) * w[:, None]
            acc = acc * ks[None, :]
            acc = tl.where(offs_n[None, :] <= pos[:, None], acc, float("-inf"))
            tl.store(out_ptrs, acc, mask=omask)

    @triton.jit
    def _indexer_gen_kernel(
        Q, W, K, KS, OUT, L, k_rows_per_req,
        s_q_t, s_q_h, s_w_t, s_k, s_o_t,
        NH: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCKS: tl.constexpr,
    ):
        # one program: one request, BLOCKS consecutive key blocks (q loaded once)
        r = tl.program_id(0)
        nb = tl.program_id(1)
        r64 = r.to(tl.int64)
        offs_h = tl.arange(0, NH)
        offs_d = tl.arange(0, D)
        q = tl.load(Q + r64 * s_q_t + off64(offs_h, s_q_h)[:, None] + offs_d[None, :])
        w = tl.load(W + r64 * s_w_t + offs_h)
        for i in range(BLOCKS):
            offs_n = off64(nb * BLOCKS + i, BLOCK_N) + tl.arange(0, BLOCK_N)
            nmask = offs_n < L
            krow = r64 * k_rows_per_req + offs_n
            k = tl.load(K + krow[:, None] * s_k + offs_d[None, :], mask=nmask[:, None], other=0.0)
            ks = tl.load(KS + krow, mask=nmask, other=0.0)
            s = tl.dot(q, tl.trans(k))  # [NH, BLOCK_N]
            logit = tl.sum(tl.maximum(s, 0.0) * w[:, None], axis=0) * ks
            tl.store(OUT + r64 * s_o_t + offs_n, logit, mask=nmask)


CTX_CONFIG = {"block_m": 64, "block_n": 128, "num_warps": 4, "num_stages": 2}
GEN_CONFIG = {"block_n": 64, "num_warps": 4, "num_stages": 3, "blocks": 8}
# largest logits buffer (elements) per launch; bigger problems are chunked
MAX_LOGITS = 1 << 30


def indexer_logits_context(q, w, k, ks, out, *, n_req: int, n_q: int, pos0: int, L: int,
                           k_rows_per_req: int):
    """q [n_req*n_q, NH, D], w [n_req*n_q, NH] fp32, k [rows, D], ks [rows] fp32,
    out [n_req*n_q, >=L] fp32 (row stride s_o_t). Query i of request r sits at
    position pos0 + i and sees cache rows r*k_rows_per_req + [0, pos0 + i]."""
    nh, d = q.shape[1], q.shape[2]
    bm, bn = CTX_CONFIG["block_m"], CTX_CONFIG["block_n"]
    grid = (n_req, triton.cdiv(n_q, bm), triton.cdiv(L, bn))
    _indexer_ctx_kernel[grid](
        q, w, k, ks, out, n_q, pos0, L, k_rows_per_req,
        q.stride(0), q.stride(1), w.stride(0), k.stride(0), out.stride(0),
        NH=nh, D=d, BLOCK_M=bm, BLOCK_N=bn,
        num_warps=CTX_CONFIG["num_warps"], num_stages=CTX_CONFIG["num_stages"],
    )
    return out


def indexer_logits_generation(q, w, k, ks, out, *, L: int, k_rows_per_req: int):
    """One query per request (position L-1, sees all L rows). q [b, NH, D]."""
    b, nh, d = q.shape
    bn = GEN_CONFIG["block_n"]
    nbk = GEN_CONFIG.get("blocks", 1)
    grid = (b, triton.cdiv(L, bn * nbk))
    _indexer_gen_kernel[grid](
        q, w, k, ks, out, L, k_rows_per_req,
        q.stride(0), q.stride(1), w.stride(0), k.stride(0), out.stride(0),
        NH=nh, D=d, BLOCK_N=bn, BLOCKS=nbk,
        num_warps=GEN_CONFIG["num_warps"], num_stages=GEN_CONFIG["num_stages"],
    )
    return out


def indexer_logits_ref(q, w, k, ks, *, n_req: int, n_q: int, pos0: int, L: int,
                       k_rows_per_req: int) -> torch.Tensor:
    """float64 reference for both phases (generation: n_q=1, pos0=L-1)."""
    T = n_req * n_q
    out = torch.full((T, L), float("-inf"), dtype=torch.float64, device=q.device)
    qf, kf = q.to(torch.float64), k.to(torch.float64)
    for r in range(n_req):
        kr = kf[r * k_rows_per_req: r * k_rows_per_req + L]  # [L, D]
        sr = ks[r * k_rows_per_req: r * k_rows_per_req + L].to(torch.float64)
        for i in range(n_q):
            t = r * n_q + i
            s = torch.relu(qf[t] @ kr.T)  # [NH, L]
            lg = (w[t].to(torch.float64)[:, None] * s).sum(0) * sr
            p = pos0 + i
            lg[p + 1:] = float("-inf")
            out[t] = lg
    return out


def topk_indices(logits: torch.Tensor, topk: int, *, row_base: torch.Tensor,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """Top-k key positions per query as global cache rows (int32, -1 = empty).

    logits [T, L] (-inf = not visible); row_base [T, 1] int64: first cache row
    of each query's request. Returns [T, min(topk, L)] padded to topk with -1.
    """
    T, L = logits.shape
    k = min(topk, L)
    vals, pos = torch.topk(logits, k, dim=1, sorted=False)
    rows = torch.where(torch.isinf(vals), torch.full_like(pos, -1), pos + row_base)
    if out is None:
        out = torch.full((T, topk), -1, dtype=torch.int32, device=logits.device)
    out[:, :k] = rows.to(torch.int32)
    return out


def causal_all_indices(n_req: int, n_q: int, pos0: int, topk: int, k_rows_per_req: int,
                       device) -> torch.Tensor:
    """When the context is <= topk every visible key is selected: rows of
    positions 0..p for the query at position p, -1 after."""
    j = torch.arange(topk, device=device)
    p = pos0 + torch.arange(n_q, device=device)
    vis = j[None, :] <= p[:, None]  # [n_q, topk]
    base = (torch.arange(n_req, device=device) * k_rows_per_req)[:, None, None]
    rows = torch.where(vis[None], j[None, None, :] + base, torch.full_like(base, -1).expand(-1, n_q, topk))
    return rows.reshape(n_req * n_q, topk).to(torch.int32)
