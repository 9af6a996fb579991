"""Fused generation prologue of the MLA / DSA module (Triton): two launches instead of about twenty.

At small batch the module's decode step is a few microseconds of work spread over many tiny kernels, and
their fixed cost (launch, tail, one HBM round trip each) is what keeps the module above TensorRT-LLM's
latency (issue 16 item 3). The eager prologue (``modules.AttentionModule.forward``) is two RMSNorms on
slices of the down-projection output, a RoPE of k_pe (slices, four muls, add/sub, cat), two copies of the
latent row into the cache (plus the FP8 cast), and the same RoPE again on q_pe. Here:

* ``gen_prologue``: one program per token reads its row of the down-projection output once and writes
  q_a = RMSNorm(a[:, :1536]) (feeds wq_b; with FP8 block GEMMs already quantised, 1x128 scales, into
  the GEMM's padded rows) and the cache row of this step, [RMSNorm(kv_c) | RoPE(k_pe)], straight into
  the cache (bf16, or FP8 e4m3 divided by kv_scale). The DSA indexer columns after k_pe are left to the
  indexer.
* ``rope_q``: RoPE of the q_pe slice of the wq_b output ([T, H, 64], strided) into the contiguous
  [T, H, 64] the decode takes.

Arithmetic in float32 (the eager path rounds to the activation dtype after each op: the two agree to bf16
rounding). RoPE is the rotate-half form of ``modules.rope``: [x1 cos - x2 sin | x2 cos + x1 sin].
"""
from __future__ import annotations

import torch

from .mla_attn import HAVE_TRITON

if HAVE_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _rms(x, w, n: tl.constexpr, eps):
        var = tl.sum(x * x, axis=0) / n
        return x * (1.0 / tl.sqrt(var + eps)) * w

    @triton.jit
    def _append_row(a_row, KV, KW, COS, SIN, start, length, s_kv, inv_kv_scale, eps,
                    D_C: tl.constexpr, D_R: tl.constexpr):
        """Cache row start + length - 1 (the last of the request's rows) = [RMSNorm(kv_c) | RoPE(k_pe)]
        / kv_scale; a_row points at kv_c, followed by k_pe; COS / SIN at this token's tables."""
        row = tl.load(start).to(tl.int64) + tl.load(length).to(tl.int64) - 1
        kv_row = KV + row * s_kv
        oc = tl.arange(0, D_C)
        xc = tl.load(a_row + oc).to(tl.float32)
        kvc = _rms(xc, tl.load(KW + oc).to(tl.float32), D_C, eps)
        tl.store(kv_row + oc, (kvc * inv_kv_scale).to(KV.dtype.element_ty))
        HALF: tl.constexpr = D_R // 2
        oh = tl.arange(0, HALF)
        x1 = tl.load(a_row + D_C + oh).to(tl.float32)
        x2 = tl.load(a_row + D_C + HALF + oh).to(tl.float32)
        c = tl.load(COS + oh).to(tl.float32)
        s = tl.load(SIN + oh).to(tl.float32)
        tl.store(kv_row + D_C + oh, ((x1 * c - x2 * s) * inv_kv_scale).to(KV.dtype.element_ty))
        tl.store(kv_row + D_C + HALF + oh, ((x2 * c + x1 * s) * inv_kv_scale).to(KV.dtype.element_ty))

    @triton.jit
    def _gen_prologue_kernel(A, QA, Q8, QS, KV, QW, KW, COS, SIN, START, LEN, T, s_a, s_qa, s_q8, s_qs_m, s_qs_g,
                             s_kv, s_cs, inv_kv_scale, eps, D_Q: tl.constexpr, BLOCK_Q: tl.constexpr,
                             D_C: tl.constexpr, D_R: tl.constexpr, WRITE_QA: tl.constexpr,
                             QUANT: tl.constexpr, GROUP: tl.constexpr):
        # programs T.. (QUANT only): the zero rows that pad Q8 / QS for the FP8 GEMM
        t = tl.program_id(0).to(tl.int64)
        live = t < T
        a_row = A + t * s_a
        # q_a = RMSNorm(a[:D_Q]) (D_Q = 1536: a 2048-wide masked block)
        oq = tl.arange(0, BLOCK_Q)
        qm = oq < D_Q
        xq = tl.load(a_row + oq, mask=qm & live, other=0.0).to(tl.float32)
        wq = tl.load(QW + oq, mask=qm, other=0.0).to(tl.float32)
        q_a = _rms(xq, wq, D_Q, eps)
        if WRITE_QA:
            tl.store(QA + t * s_qa + oq, q_a.to(QA.dtype.element_ty), mask=qm & live)
        if QUANT:  # gemm.quant_groups of q_a: FP8 e4m3 with one scale per GROUP columns
            NG: tl.constexpr = BLOCK_Q // GROUP
            g2 = tl.reshape(q_a, (NG, GROUP))
            sc = tl.maximum(tl.max(tl.abs(g2), axis=1), 1e-4) / 448.0
            q8 = tl.clamp(g2 / sc[:, None], -448.0, 448.0)
            og = tl.arange(0, NG)
            tl.store(Q8 + t * s_q8 + og[:, None] * GROUP + tl.arange(0, GROUP)[None, :],
                     q8.to(Q8.dtype.element_ty), mask=(og < D_Q // GROUP)[:, None])
            tl.store(QS + t * s_qs_m + og * s_qs_g, sc, mask=og < D_Q // GROUP)
        if live:
            _append_row(a_row + D_Q, KV, KW, COS + t * s_cs, SIN + t * s_cs, START + t, LEN + t, s_kv,
                        inv_kv_scale, eps, D_C, D_R)

    @triton.jit
    def _rope_q_kernel(X, O, COS, SIN, H, s_xt, s_xh, s_ot, s_oh, s_cs,
                       HALF: tl.constexpr, BLOCK_H: tl.constexpr):
        t = tl.program_id(0).to(tl.int64)
        oh = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
        hm = oh < H
        od = tl.arange(0, HALF)
        x_p = X + t * s_xt + oh.to(tl.int64)[:, None] * s_xh + od[None, :]
        x1 = tl.load(x_p, mask=hm[:, None], other=0.0).to(tl.float32)
        x2 = tl.load(x_p + HALF, mask=hm[:, None], other=0.0).to(tl.float32)
        c = tl.load(COS + t * s_cs + od).to(tl.float32)[None, :]
        s = tl.load(SIN + t * s_cs + od).to(tl.float32)[None, :]
        o_p = O + t * s_ot + oh.to(tl.int64)[:, None] * s_oh + od[None, :]
        tl.store(o_p, (x1 * c - x2 * s).to(O.dtype.element_ty), mask=hm[:, None])
        tl.store(o_p + HALF, (x2 * c + x1 * s).to(O.dtype.element_ty), mask=hm[:, None])


def gen_prologue(a: torch.Tensor, q_norm: torch.Tensor, kv_norm: torch.Tensor, cos: torch.Tensor,
                 sin: torch.Tensor, kv: torch.Tensor, start: torch.Tensor, length: torch.Tensor, *,
                 d_q: int, d_c: int, d_r: int, kv_scale: float = 1.0, eps: float = 1e-6,
                 write_q_a: bool = True, quant: tuple[torch.Tensor, torch.Tensor] | None = None,
                 group: int = 128) -> torch.Tensor | None:
    """q_a [T, d_q] = RMSNorm(a[:, :d_q]); kv[start[t] + len[t] - 1] = [RMSNorm(a[:, d_q:d_q+d_c]) |
    RoPE(a[:, d_q+d_c:d_q+d_c+d_r])] / kv_scale, in kv's dtype. a [T, >= d_q+d_c+d_r], last dim
    contiguous; kv [N, d_c + d_r] contiguous; cos/sin [T, d_r/2].

    ``quant = (q8 [R, d_q] fp8, qs [R, d_q / group] fp32, any strides)``, R >= T: also q_a quantised as
    ``gemm.quant_groups(q_a, rows=R)`` does (the FP8 GEMM's input: rows T.. zero, scale 1e-4 / 448).
    Returns q_a, or None when ``write_q_a`` is False."""
    T = a.shape[0]
    assert a.stride(1) == 1 and kv.is_contiguous() and kv.shape[1] == d_c + d_r
    assert cos.stride(1) == 1 and cos.stride() == sin.stride()
    q_a = torch.empty((T, d_q), device=a.device, dtype=a.dtype) if write_q_a else None
    q8, qs = quant if quant is not None else (None, None)
    R = T
    if quant is not None:
        R = q8.shape[0]
        assert R >= T and q8.shape[1] == d_q and q8.stride(1) == 1 and qs.shape == (R, d_q // group)
    dummy = a
    _gen_prologue_kernel[(R,)](
        a, q_a if write_q_a else dummy, q8 if quant is not None else dummy, qs if quant is not None else dummy,
        kv, q_norm, kv_norm, cos, sin, start, length, T,
        a.stride(0), q_a.stride(0) if write_q_a else 0, q8.stride(0) if quant is not None else 0,
        qs.stride(0) if quant is not None else 0, qs.stride(1) if quant is not None else 0,
        kv.stride(0), cos.stride(0), 1.0 / kv_scale, eps,
        D_Q=d_q, BLOCK_Q=triton.next_power_of_2(d_q), D_C=d_c, D_R=d_r, WRITE_QA=write_q_a,
        QUANT=quant is not None, GROUP=group, num_warps=4)
    return q_a


def rope_q(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """RoPE of x [T, H, d_r] (any strides, last dim contiguous) -> contiguous [T, H, d_r]."""
    T, H, d_r = x.shape
    assert x.stride(2) == 1 and cos.stride(1) == 1 and cos.stride() == sin.stride()
    o = out if out is not None else torch.empty((T, H, d_r), device=x.device, dtype=x.dtype)
    block_h = min(64, triton.next_power_of_2(H))
    _rope_q_kernel[(T, triton.cdiv(H, block_h))](x, o, cos, sin, H, x.stride(0), x.stride(1), o.stride(0),
                                                 o.stride(1), cos.stride(0), HALF=d_r // 2, BLOCK_H=block_h,
                                                 num_warps=4)
    return o
