"""Projection GEMMs in bf16 or FP8 (DeepSeek-style 1x128 activation / 128x128
weight block scales, or per-tensor scales) through ``torch._scaled_mm``.

The blockwise ``_scaled_mm`` path needs a Hopper GPU and cuBLASLt >= 12.9, and
the scale layouts it accepts have changed between torch releases, so
``probe_fp8_block`` tries the known layouts once on the GPU against a
dequantised reference and keeps the first that is right. If none is, the
Triton block-scaled GEMM below is used instead (``IMPL["fp8_block"]``).
"""
from __future__ import annotations

import torch

from .kernels.mla_attn import HAVE_TRITON

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
BLOCK = 128

# chosen implementation details (filled by probe_fp8_block on the GPU)
IMPL: dict = {"fp8_block": "scaled_mm", "a_scale_colmajor": True, "b_scale_contig": False,
              "pad_m": 16}


def quant_groups_ref(x: torch.Tensor, group: int = BLOCK):
    """Per-token, per-128-column FP8 quantisation. x [M,K] -> (xq [M,K] fp8, s [M,K/128] fp32)."""
    M, K = x.shape
    xv = x.float().view(M, K // group, group)
    s = xv.abs().amax(-1).clamp_min(1e-4) / FP8_MAX
    xq = (xv / s.unsqueeze(-1)).clamp(-FP8_MAX, FP8_MAX).to(FP8).view(M, K)
    return xq, s


def quant_weight_blocks(w: torch.Tensor, block: int = BLOCK):
    """128x128 block quantisation of a weight [N,K] -> (wq [N,K] fp8, s [N/128, K/128])."""
    N, K = w.shape
    wv = w.float().view(N // block, block, K // block, block)
    s = wv.abs().amax(dim=(1, 3)).clamp_min(1e-4) / FP8_MAX  # [Nb, Kb]
    wq = (wv / s[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8).view(N, K)
    return wq, s


def dequant_blocks(wq: torch.Tensor, s: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    N, K = wq.shape
    return (wq.float().view(N // block, block, K // block, block) * s[:, None, :, None]).view(N, K)


def quant_tensor(x: torch.Tensor):
    s = x.abs().amax().float().clamp_min(1e-4) / FP8_MAX
    return (x.float() / s).clamp(-FP8_MAX, FP8_MAX).to(FP8), s


if HAVE_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _quant_groups_kernel(X, XQ, S, M, K, s_x, s_xq, s_s_m, s_s_k, GROUP: tl.constexpr):
        # rows M.. of XQ / S (padding for the GEMM): zeros, the smallest scale
        m = tl.program_id(0).to(tl.int64)
        g = tl.program_id(1)
        offs = g * GROUP + tl.arange(0, GROUP)
        x = tl.load(X + m * s_x + offs, mask=(offs < K) & (m < M), other=0.0).to(tl.float32)
        amax = tl.maximum(tl.max(tl.abs(x), axis=0), 1e-4)
        s = amax / 448.0
        xq = tl.clamp(x / s, -448.0, 448.0)
        tl.store(XQ + m * s_xq + offs, xq.to(XQ.dtype.element_ty))
        tl.store(S + m * s_s_m + g * s_s_k, s)

    @triton.jit
    def _block_fp8_gemm_kernel(A, B, C, SA, SB, M, N, K,
                               s_am, s_bn, s_cm, s_sa_m, s_sa_k, s_sb_n, s_sb_k,
                               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """C[M,N] = (A*SA) @ (B*SB)^T ; A [M,K] fp8 (1x128 scales), B [N,K] fp8 (128x128)."""
        pm = tl.program_id(0)
        pn = tl.program_id(1)
        offs_m = pm * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pn * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        mmask = offs_m < M
        nmask = offs_n < N
        acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        for k0 in range(0, K, BLOCK_K):
            a = tl.load(A + offs_m[:, None].to(tl.int64) * s_am + k0 + offs_k[None, :], mask=mmask[:, None], other=0.0)
            b = tl.load(B + offs_n[:, None].to(tl.int64) * s_bn + k0 + offs_k[None, :], mask=nmask[:, None], other=0.0)
            kb = k0 // BLOCK_K
            sa = tl.load(SA + offs_m * s_sa_m + kb * s_sa_k, mask=mmask, other=0.0)
            sb = tl.load(SB + (offs_n // 128) * s_sb_n + kb * s_sb_k, mask=nmask, other=0.0)
            acc += tl.dot(a, tl.trans(b)) * sa[:, None] * sb[None, :]
        tl.store(C + offs_m[:, None].to(tl.int64) * s_cm + offs_n[None, :], acc.to(C.dtype.element_ty),
                 mask=mmask[:, None] & nmask[None, :])


def quant_groups(x: torch.Tensor, colmajor_scale: bool = False, rows: int | None = None):
    """Fused Triton version of quant_groups_ref (GPU); falls back to torch on CPU.

    ``rows`` > M: the outputs have that many rows, the extra ones zero (scale 1e-4 / 448), so a GEMM that
    wants M padded takes them without a padded copy of x (one launch instead of two)."""
    M, K = x.shape
    R = M if rows is None else rows
    if R < M:
        raise ValueError(f"rows {R} < the {M} rows of x")
    if not (HAVE_TRITON and x.is_cuda):
        xq, s = quant_groups_ref(torch.nn.functional.pad(x, (0, 0, 0, R - M)) if R > M else x)
        return xq, (s.t().contiguous().t() if colmajor_scale else s)
    xq = torch.empty((R, K), dtype=FP8, device=x.device)
    if colmajor_scale:
        s = torch.empty((K // BLOCK, R), dtype=torch.float32, device=x.device).t()
    else:
        s = torch.empty((R, K // BLOCK), dtype=torch.float32, device=x.device)
    _quant_groups_kernel[(R, K // BLOCK)](x, xq, s, M, K, x.stride(0), xq.stride(0), s.stride(0), s.stride(1),
                                          GROUP=BLOCK, num_warps=1)
    return xq, s


def block_fp8_gemm_triton(xq, xs, wq, ws, out_dtype=torch.bfloat16):
    M, K = xq.shape
    N = wq.shape[0]
    c = torch.empty((M, N), dtype=out_dtype, device=xq.device)
    bm = 64 if M > 32 else 16
    grid = (triton.cdiv(M, bm), triton.cdiv(N, 128))
    _block_fp8_gemm_kernel[grid](xq, wq, c, xs, ws, M, N, K, xq.stride(0), wq.stride(0), c.stride(0),
                                 xs.stride(0), xs.stride(1), ws.stride(0), ws.stride(1),
                                 BLOCK_M=bm, BLOCK_N=128, BLOCK_K=128, num_warps=4, num_stages=3)
    return c


class Linear:
    """y = x @ W^T with W [out, in]; out features padded to a multiple of 128."""

    def __init__(self, in_f: int, out_f: int, gemm_type: str, device, dtype=torch.bfloat16,
                 std: float = 0.02, generator: torch.Generator | None = None):
        if gemm_type not in ("bfloat16", "fp8_block", "fp8_tensor"):
            raise ValueError(f"gemm_type {gemm_type!r}: expected bfloat16, fp8_block or fp8_tensor")
        if in_f % BLOCK:
            raise ValueError(f"in_features {in_f} must be a multiple of {BLOCK}")
        self.in_f, self.out_f = in_f, out_f
        self.out_pad = -(-out_f // BLOCK) * BLOCK
        self.gemm_type = gemm_type
        w = torch.randn((self.out_pad, in_f), device=device, dtype=torch.float32, generator=generator) * std
        self.w_ref = w.to(dtype)  # dequantisable reference (tests)
        if gemm_type == "bfloat16":
            self.w = w.to(dtype)
        elif gemm_type == "fp8_block":
            self.wq, self.ws = quant_weight_blocks(w)
            self.ws_t = self.ws.t().contiguous() if IMPL.get("b_scale_contig") else self.ws.t()
            self.w_ref = dequant_blocks(self.wq, self.ws).to(dtype)
        else:
            self.wq, self.ws = quant_tensor(w)
            self.w_ref = (self.wq.float() * self.ws).to(dtype)
        self.dtype = dtype

    def refresh_layout(self):
        if self.gemm_type == "fp8_block":
            self.ws_t = self.ws.t().contiguous() if IMPL.get("b_scale_contig") else self.ws.t()

    def __call__(self, x: torch.Tensor, pad_in_quant: bool = False) -> torch.Tensor:
        """``pad_in_quant``: with fp8_block through _scaled_mm, the activation quantisation writes the
        padded rows itself (``quant_groups(rows=)``) instead of quantising a padded copy of x."""
        if self.gemm_type == "bfloat16" or not x.is_cuda:
            if self.gemm_type == "bfloat16":
                return x @ self.w.t()
            return self.reference(x)
        M = x.shape[0]
        pad = (-M) % IMPL["pad_m"] if IMPL["pad_m"] else 0
        if pad_in_quant and self.takes_quantised(x):
            xq, xs = quant_groups(x, colmajor_scale=IMPL["a_scale_colmajor"], rows=M + pad)
            return self.mm_quantised(xq, xs, M)
        if pad:
            x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        if self.gemm_type == "fp8_tensor":
            xq, xs = quant_tensor(x)
            y = torch._scaled_mm(xq, self.wq.t(), scale_a=xs, scale_b=self.ws, out_dtype=self.dtype)
        elif IMPL["fp8_block"] == "scaled_mm":
            xq, xs = quant_groups(x, colmajor_scale=IMPL["a_scale_colmajor"])
            y = torch._scaled_mm(xq, self.wq.t(), scale_a=xs, scale_b=self.ws_t, out_dtype=self.dtype)
        else:
            xq, xs = quant_groups(x)
            y = block_fp8_gemm_triton(xq, xs, self.wq, self.ws, self.dtype)
        return y[:M] if pad else y

    def takes_quantised(self, x: torch.Tensor) -> bool:
        """Whether a caller may quantise x itself (``quant_buffers``, ``mm_quantised``): fp8_block through
        _scaled_mm on the GPU."""
        return self.gemm_type == "fp8_block" and x.is_cuda and IMPL["fp8_block"] == "scaled_mm"

    def quant_buffers(self, M: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Empty (xq, xs) for M activation rows in the layout _scaled_mm takes (rows padded to pad_m)."""
        R = M + ((-M) % IMPL["pad_m"] if IMPL["pad_m"] else 0)
        xq = torch.empty((R, self.in_f), dtype=FP8, device=device)
        if IMPL["a_scale_colmajor"]:
            return xq, torch.empty((self.in_f // BLOCK, R), dtype=torch.float32, device=device).t()
        return xq, torch.empty((R, self.in_f // BLOCK), dtype=torch.float32, device=device)

    def mm_quantised(self, xq: torch.Tensor, xs: torch.Tensor, M: int) -> torch.Tensor:
        """The GEMM of activations already quantised as ``quant_groups(x, rows=)`` does; the first M rows."""
        y = torch._scaled_mm(xq, self.wq.t(), scale_a=xs, scale_b=self.ws_t, out_dtype=self.dtype)
        return y[:M] if y.shape[0] != M else y

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """What the GEMM should compute: quantised activations x dequantised weights."""
        if self.gemm_type == "bfloat16":
            return (x.float() @ self.w.float().t()).to(self.dtype)
        if self.gemm_type == "fp8_block":
            xq, xs = quant_groups_ref(x)
            xd = (xq.float().view(x.shape[0], -1, BLOCK) * xs.unsqueeze(-1)).view_as(x.float())
        else:
            xq, xs = quant_tensor(x)
            xd = xq.float() * xs
        return (xd @ self.w_ref.float().t()).to(self.dtype)


def probe_fp8_block(device, log=print) -> dict:
    """Find a working blockwise-scaled _scaled_mm layout on this GPU (or fall back to Triton)."""
    g = torch.Generator(device=device).manual_seed(1)
    results = []
    for M in (256, 3):
        x = torch.randn((M, 1536), device=device, dtype=torch.bfloat16, generator=g)
        lin_w = torch.randn((2304, 1536), device=device, generator=g) * 0.02
        wq, ws = quant_weight_blocks(lin_w)
        ref_xq, ref_xs = quant_groups_ref(x)
        xd = (ref_xq.float().view(M, -1, BLOCK) * ref_xs.unsqueeze(-1)).view(M, -1)
        ref = xd @ dequant_blocks(wq, ws).t()
        for a_col in (True, False):
            for b_contig in (False, True):
                for pad_m in (0, 16):
                    try:
                        xx = torch.nn.functional.pad(x, (0, 0, 0, (-M) % pad_m)) if pad_m else x
                        xq, xs = quant_groups(xx, colmajor_scale=a_col)
                        sb = ws.t().contiguous() if b_contig else ws.t()
                        y = torch._scaled_mm(xq, wq.t(), scale_a=xs, scale_b=sb, out_dtype=torch.bfloat16)[:M]
                        torch.cuda.synchronize()
                        err = ((y.float() - ref).norm() / ref.norm()).item()
                        results.append((M, a_col, b_contig, pad_m, err, None))
                    except Exception as exc:  # noqa: BLE001 - probing
                        results.append((M, a_col, b_contig, pad_m, None, str(exc).splitlines()[0][:160]))
    for r in results:
        log(f"  probe _scaled_mm blockwise M={r[0]} a_colmajor={r[1]} b_contig={r[2]} pad_m={r[3]}: "
            + (f"rel err {r[4]:.2e}" if r[4] is not None else f"error {r[5]}"))
    ok = {}
    for M, a_col, b_contig, pad_m, err, _ in results:
        if err is not None and err < 2e-2:
            ok.setdefault((a_col, b_contig, pad_m), set()).add(M)
    choice = None
    for key in sorted(ok, key=lambda k: (k[2] != 0, not k[0], k[1])):
        if ok[key] == {256, 3}:
            choice = key
            break
    if choice is None:
        IMPL.update(fp8_block="triton", pad_m=0)
    else:
        IMPL.update(fp8_block="scaled_mm", a_scale_colmajor=choice[0], b_scale_contig=choice[1],
                    pad_m=choice[2])
    log(f"  fp8_block GEMM implementation: {IMPL}")
    return dict(IMPL)
