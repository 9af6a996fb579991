"""Dense MLA decode over the latent cache (Triton), split-KV / flash-decoding.

Why a separate kernel from ``mla_attn``: decode with 128 heads is bound by the
tensor cores, not by HBM (each 1,152-byte bf16 cache row costs
2 * 128 * (576 + 512) = 278,528 FLOP, 242 FLOP/byte; an H100 turns over about
270 FLOP per byte of HBM). So what matters is (a) reading each cache block
from HBM once for all heads, (b) keeping the tensor cores fed.

* Heads are the M dimension of the tensor-core dots (q [BLOCK_H x 576] .
  K^T [576 x BLOCK_N], then P [BLOCK_H x BLOCK_N] . V [BLOCK_N x 512]). A CTA
  holds BLOCK_H = 64 heads (the fp32 accumulator of 128 heads x 512 would not
  fit one multiprocessor's registers); the CTAs of the other head groups of the
  same (token, kv chunk) are the neighbouring program ids, so they run at the
  same time and the second read of each block is an L2 hit: the cache streams
  from HBM once per (token, kv block).
* The kv axis is split into chunks (grid = tokens x splits x head groups), so
  that every SM is busy at small batch; ``combine`` merges the partial
  outputs by their log-sum-exp.
* FP8 (e4m3) cache rows are loaded as bytes (half the HBM traffic) and
  converted to bf16 in registers; the scale is folded into the softmax scale
  and the output scale.
* ``desc=True``: cache blocks through Hopper's bulk tensor copy engine (TMA
  descriptors over the latent halves and the rope part) instead of per-thread
  loads.
"""
from __future__ import annotations

import torch

try:  # triton is optional on the CPU (CI)
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except Exception:  # pragma: no cover
    triton = None
    tl = None
    HAVE_TRITON = False

LOG2E = 1.4426950408889634

# Launch configuration; ``python -m collector probe`` / benchmarks/decode_bench.py
# may override it. ctas_per_sm: resident programs per SM assumed by pick_splits.
# Layers (measured fastest on an H100, collector/README.md "MLA decode kernel"): "fp8" for the FP8 cache
# (fp16 dots, 128-row blocks, no cp.async stage); "small_h" / "small_h_fp8" below 64 heads (one head
# group, padded to a wgmma's 64 rows).
CONFIG = {"block_h": 64, "block_n": 64, "num_warps": 8, "num_stages": 2, "desc": False, "peel": True,
          "ctas_per_sm": 1, "min_chunk": 512, "fp8": {"block_n": 128, "num_stages": 1, "f16": True},
          "small_h": {"num_warps": 4, "peel": False}, "small_h_fp8": {"block_n": 64, "num_warps": 8}}
LAST: dict = {}


if HAVE_TRITON:

    @triton.jit
    def _block(q_lat, q_pe, k_lat, k_pe, m_i, l_i, acc, qk_scale, qk_row_scale, valid, scr_base, scr_tick,
               FP8_DOT: tl.constexpr, MASK: tl.constexpr, GS: tl.constexpr = 0):
        """One cache block: scores, online softmax, P . V (MASK: the block has rows past the range).

        GS: P and alpha go through a per-program global scratch (store, barrier, load; L1/L2): the score
        dot then has no dot in its forward slice, so Triton splits its N axis over the two warpgroups
        instead of having both compute all the scores."""
        k_lat = k_lat.to(q_lat.dtype)
        k_pe = k_pe.to(q_lat.dtype)
        if GS:  # two scaled dots added (a plain sum is folded back into one accumulating dot)
            qk = tl.dot(q_lat, tl.trans(k_lat)) * qk_scale + tl.dot(q_pe, tl.trans(k_pe)) * qk_scale
        else:
            qk = tl.dot(q_lat, tl.trans(k_lat))
            qk = tl.dot(q_pe, tl.trans(k_pe), qk)
            if FP8_DOT:
                qk = qk * qk_row_scale[:, None]
            else:
                qk = qk * qk_scale
        if MASK:
            qk = tl.where(valid[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc_in = acc
        if not GS:  # (GS: alpha too goes through the scratch, else the rescale ties the score dot to P . V)
            acc = acc * alpha[:, None]
        if FP8_DOT:
            acc = tl.dot((p * 448.0).to(k_lat.dtype), k_lat, acc)
        elif GS:
            # two scratch buffers by block parity: block i + 2 writes one only after block i + 1's barrier
            BUF: tl.constexpr = q_lat.shape[0] * k_lat.shape[0] + 2 * q_lat.shape[0]
            buf = scr_base + ((scr_tick // k_lat.shape[0]) % 2) * BUF
            scr = buf + tl.arange(0, q_lat.shape[0])[:, None] * k_lat.shape[0] + tl.arange(0, k_lat.shape[0])[None, :]
            ascr = (buf + q_lat.shape[0] * k_lat.shape[0]).to(tl.pointer_type(tl.float32)) \
                + tl.arange(0, q_lat.shape[0])
            tl.store(scr, p.to(k_lat.dtype))
            tl.store(ascr, alpha)
            if GS == 2:
                # the barrier as opaque asm returning 0 (a gpu.barrier in the loop stops Triton's pipeliner,
                # and the cache loads then wait each block); the reads' addresses depend on it, so they follow it
                z = tl.inline_asm_elementwise("bar.sync 0;\n\tmov.u32 $0, 0;", "=r,r", [scr_tick],
                                              dtype=tl.int32, is_pure=False, pack=1)
            else:  # GS == 1: Triton's interpreter (CPU tests), which runs no asm
                tl.debug_barrier()
                z = 0
            pb = tl.load(scr + z)
            alpha_b = tl.load(ascr + z)
            acc = tl.dot(pb, k_lat, acc_in * alpha_b[:, None])
        else:
            acc = tl.dot(p.to(k_lat.dtype), k_lat, acc)
        return m_new, l_i, acc

    @triton.jit
    def _decode_kernel(
        Q_LAT, Q_PE, KV, START, LEN, O, O_PART, LSE_PART, P_SCR,
        H, CHUNK, N_HB, N_SPLIT, qk_scale, out_scale,
        s_ql_t, s_ql_h, s_qp_t, s_qp_h, s_kv, s_o_t, s_o_h,
        D_LAT: tl.constexpr, D_PE: tl.constexpr,
        BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT: tl.constexpr, FP8_DOT: tl.constexpr = False,
        PEEL: tl.constexpr = False, GS: tl.constexpr = 0,
    ):
        # program order: head group fastest, then kv chunk, then token, so the
        # head groups sharing a cache chunk are co-resident (L2 serves the 2nd read)
        pid = tl.program_id(0)
        hb = pid % N_HB
        rest = pid // N_HB
        sp = rest % N_SPLIT
        t = rest // N_SPLIT
        t64 = t.to(tl.int64)
        offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
        hmask = offs_h < H
        offs_d = tl.arange(0, D_LAT)
        offs_r = tl.arange(0, D_PE)
        q_lat = tl.load(Q_LAT + t64 * s_ql_t + offs_h.to(tl.int64)[:, None] * s_ql_h + offs_d[None, :],
                        mask=hmask[:, None], other=0.0)
        q_pe = tl.load(Q_PE + t64 * s_qp_t + offs_h.to(tl.int64)[:, None] * s_qp_h + offs_r[None, :],
                       mask=hmask[:, None], other=0.0)
        n_total = tl.load(LEN + t)
        base = tl.load(START + t).to(tl.int64)
        lo = sp * CHUNK
        hi = tl.minimum(lo + CHUNK, n_total)
        m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_H], tl.float32)
        acc = tl.zeros([BLOCK_H, D_LAT], tl.float32)
        qk_row_scale = tl.zeros([BLOCK_H], tl.float32)
        if FP8_DOT:
            # FP8 tensor-core dots (FP8 cache only): q quantised per head, P scaled by 448
            q_amax = tl.maximum(tl.max(tl.abs(q_lat.to(tl.float32)), axis=1), tl.max(tl.abs(q_pe.to(tl.float32)), axis=1))
            q_s = tl.maximum(q_amax, 1e-12) / 448.0
            q_lat = (q_lat.to(tl.float32) / q_s[:, None]).to(KV.dtype.element_ty)
            q_pe = (q_pe.to(tl.float32) / q_s[:, None]).to(KV.dtype.element_ty)
            qk_row_scale = q_s * qk_scale
            out_scale = out_scale / 448.0
        # GS: per program two buffers of P [BLOCK_H, BLOCK_N] (dot dtype) + alpha [BLOCK_H] (fp32)
        scr = P_SCR + pid.to(tl.int64) * (2 * (BLOCK_H * BLOCK_N + 2 * BLOCK_H))
        # one 64-bit scalar base per program; offsets inside the chunk stay 32-bit
        # (chunk * 576 < 2^31), so the per-element addresses need no 64-bit math
        kv_base = KV + (base + lo) * s_kv
        n_rows = hi - lo
        if PEEL:
            # whole blocks without masks (fewer live registers), then one masked tail block
            n_full = (n_rows // BLOCK_N) * BLOCK_N
            for n0 in range(0, n_full, BLOCK_N):
                offs_c = n0 + tl.arange(0, BLOCK_N)
                row_off = offs_c * s_kv
                k_lat = tl.load(kv_base + row_off[:, None] + offs_d[None, :])
                k_pe = tl.load(kv_base + row_off[:, None] + D_LAT + offs_r[None, :])
                m_i, l_i, acc = _block(q_lat, q_pe, k_lat, k_pe, m_i, l_i, acc, qk_scale, qk_row_scale,
                                       offs_c < n_rows, scr, n0, FP8_DOT, False, GS)
            if n_full < n_rows:
                offs_c = n_full + tl.arange(0, BLOCK_N)
                valid = offs_c < n_rows
                row_off = offs_c * s_kv
                k_lat = tl.load(kv_base + row_off[:, None] + offs_d[None, :], mask=valid[:, None], other=0.0)
                k_pe = tl.load(kv_base + row_off[:, None] + D_LAT + offs_r[None, :], mask=valid[:, None], other=0.0)
                m_i, l_i, acc = _block(q_lat, q_pe, k_lat, k_pe, m_i, l_i, acc, qk_scale, qk_row_scale,
                                       valid, scr, n_full, FP8_DOT, True, GS)
        else:
            for n0 in range(0, n_rows, BLOCK_N):
                offs_c = n0 + tl.arange(0, BLOCK_N)
                valid = offs_c < n_rows
                row_off = offs_c * s_kv
                k_lat = tl.load(kv_base + row_off[:, None] + offs_d[None, :], mask=valid[:, None], other=0.0)
                k_pe = tl.load(kv_base + row_off[:, None] + D_LAT + offs_r[None, :], mask=valid[:, None], other=0.0)
                m_i, l_i, acc = _block(q_lat, q_pe, k_lat, k_pe, m_i, l_i, acc, qk_scale, qk_row_scale,
                                       valid, scr, n0, FP8_DOT, True, GS)
        _finish(acc, m_i, l_i, O, O_PART, LSE_PART, t64, sp, offs_h, hmask, offs_d, H, N_SPLIT, out_scale,
                s_o_t, s_o_h, D_LAT, SPLIT)

    @triton.jit
    def _block_desc(q_lo, q_hi, q_pe, k_lo, k_hi, k_pe, m_i, l_i, acc_lo, acc_hi, qk_scale, valid,
                    MASK: tl.constexpr):
        k_lo = k_lo.to(q_lo.dtype)
        k_hi = k_hi.to(q_lo.dtype)
        k_pe = k_pe.to(q_lo.dtype)
        qk = tl.dot(q_lo, tl.trans(k_lo))
        qk = tl.dot(q_hi, tl.trans(k_hi), qk)
        qk = tl.dot(q_pe, tl.trans(k_pe), qk)
        qk = qk * qk_scale
        if MASK:
            qk = tl.where(valid[None, :], qk, float("-inf"))
            # rows past the range may hold anything (even NaN in fp8 garbage): zero them for P @ V
            k_lo = tl.where(valid[:, None], k_lo, 0.0)
            k_hi = tl.where(valid[:, None], k_hi, 0.0)
        m_new = tl.maximum(m_i, tl.max(qk, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        pb = p.to(k_lo.dtype)
        acc_lo = tl.dot(pb, k_lo, acc_lo * alpha[:, None])
        acc_hi = tl.dot(pb, k_hi, acc_hi * alpha[:, None])
        return m_new, l_i, acc_lo, acc_hi

    @triton.jit
    def _decode_kernel_desc(
        Q_LAT, Q_PE, KV_LO, KV_HI, KV_PE, START, LEN, O, O_PART, LSE_PART,
        H, CHUNK, N_HB, N_SPLIT, qk_scale, out_scale,
        s_ql_t, s_ql_h, s_qp_t, s_qp_h, s_o_t, s_o_h,
        D_LAT: tl.constexpr, D_PE: tl.constexpr,
        BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT: tl.constexpr,
        PEEL: tl.constexpr = False,
    ):
        # Same algorithm; cache blocks come through TMA descriptors over the two
        # 256-wide latent halves and the 64-wide rope part (a TMA box is at most
        # 256 elements per dimension); the accumulator is two [BLOCK_H, 256] halves.
        # PEEL: whole blocks need no masking (and no register round trip of V); only the tail block is masked.
        DH: tl.constexpr = D_LAT // 2
        pid = tl.program_id(0)
        hb = pid % N_HB
        rest = pid // N_HB
        sp = rest % N_SPLIT
        t = rest // N_SPLIT
        t64 = t.to(tl.int64)
        offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
        hmask = offs_h < H
        offs_dh = tl.arange(0, DH)
        offs_r = tl.arange(0, D_PE)
        q_ptr = Q_LAT + t64 * s_ql_t + offs_h.to(tl.int64)[:, None] * s_ql_h
        q_lo = tl.load(q_ptr + offs_dh[None, :], mask=hmask[:, None], other=0.0)
        q_hi = tl.load(q_ptr + DH + offs_dh[None, :], mask=hmask[:, None], other=0.0)
        q_pe = tl.load(Q_PE + t64 * s_qp_t + offs_h.to(tl.int64)[:, None] * s_qp_h + offs_r[None, :],
                       mask=hmask[:, None], other=0.0)
        n_total = tl.load(LEN + t)
        base = tl.load(START + t)
        lo = sp * CHUNK
        hi = tl.minimum(lo + CHUNK, n_total)
        m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_H], tl.float32)
        acc_lo = tl.zeros([BLOCK_H, DH], tl.float32)
        acc_hi = tl.zeros([BLOCK_H, DH], tl.float32)
        if PEEL:
            hi_full = lo + ((hi - lo) // BLOCK_N) * BLOCK_N
        else:
            hi_full = lo
        for n0 in range(lo, hi_full, BLOCK_N):
            r0 = base + n0
            m_i, l_i, acc_lo, acc_hi = _block_desc(q_lo, q_hi, q_pe, KV_LO.load([r0, 0]), KV_HI.load([r0, 0]),
                                                   KV_PE.load([r0, 0]), m_i, l_i, acc_lo, acc_hi, qk_scale,
                                                   hmask, False)
        for n0 in range(hi_full, hi, BLOCK_N):
            # rows past this token's range belong to the next token (or TMA zero-fill): masked
            r0 = base + n0
            valid = n0 + tl.arange(0, BLOCK_N) < hi
            m_i, l_i, acc_lo, acc_hi = _block_desc(q_lo, q_hi, q_pe, KV_LO.load([r0, 0]), KV_HI.load([r0, 0]),
                                                   KV_PE.load([r0, 0]), m_i, l_i, acc_lo, acc_hi, qk_scale,
                                                   valid, True)
        _finish(acc_lo, m_i, l_i, O, O_PART, LSE_PART, t64, sp, offs_h, hmask, offs_dh, H, N_SPLIT, out_scale,
                s_o_t, s_o_h, D_LAT, SPLIT)
        _finish(acc_hi, m_i, l_i, O + DH, O_PART + DH, LSE_PART, t64, sp, offs_h, hmask, offs_dh, H, N_SPLIT,
                out_scale, s_o_t, s_o_h, D_LAT, SPLIT)

    @triton.jit
    def _finish(acc, m_i, l_i, O, O_PART, LSE_PART, t64, sp, offs_h, hmask, offs_d, H, N_SPLIT, out_scale,
                s_o_t, s_o_h, D_LAT: tl.constexpr, SPLIT: tl.constexpr):
        l_div = tl.where(l_i > 0, l_i, 1.0)
        out = acc / l_div[:, None] * out_scale
        if SPLIT:
            lse = tl.where(l_i > 0, m_i + tl.log2(l_div), float("-inf"))
            base_p = (t64 * N_SPLIT + sp) * H
            tl.store(LSE_PART + base_p + offs_h, lse, mask=hmask)
            tl.store(O_PART + (base_p + offs_h)[:, None] * D_LAT + offs_d[None, :], out, mask=hmask[:, None])
        else:
            tl.store(O + t64 * s_o_t + offs_h.to(tl.int64)[:, None] * s_o_h + offs_d[None, :],
                     out.to(O.dtype.element_ty), mask=hmask[:, None])

    @triton.jit
    def _combine_kernel(O_PART, LSE, O, H, s_o_t, s_o_h,
                        NUM_SPLITS: tl.constexpr, D: tl.constexpr, BLOCK_S: tl.constexpr):
        """Merge the split partials of one (token, head) by their log-sum-exp (log2 units)."""
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
        o = tl.load(O_PART + base[:, None] * D + offs_d[None, :], mask=smask[:, None], other=0.0)
        res = tl.sum(o * w[:, None], axis=0) / den
        tl.store(O + t * s_o_t + h * s_o_h + offs_d, res.to(O.dtype.element_ty))


def pick_splits(n_tokens: int, n_hb: int, n_keys: int, n_sm: int = 132, *, ctas_per_sm: int = 1,
                block_n: int = 64, min_chunk: int = 512, max_splits: int = 64) -> int:
    """Split factor with the shortest makespan: waves x (chunk length + a fixed cost per program).

    The kernel is compute-bound at 128 heads, so the model is how many rounds
    of resident programs run and how long each one takes; a program's fixed cost
    (q load, fp32 partial store, its share of the combine) is taken as 192 rows."""
    slots = n_sm * ctas_per_sm
    best = (float("inf"), 1)
    for s in range(1, max_splits + 1):
        chunk = -(-n_keys // s)
        chunk = -(-chunk // block_n) * block_n
        if s > 1 and chunk < min_chunk:
            break
        waves = -(-(n_tokens * n_hb * s) // slots)
        cost = waves * (chunk + (192 if s > 1 else 96))
        if cost < best[0] - 1e-9:
            best = (cost, s)
    return best[1]


def _workspace(ws: dict | None, T: int, splits: int, H: int, d: int, device) -> tuple:
    ws = ws if ws is not None else {}
    key = ("decode", T, splits, H, d)
    if ws.get("dkey") != key:
        ws["dkey"] = key
        ws["d_o_part"] = torch.empty((T, splits, H, d), device=device, dtype=torch.float32)
        ws["d_lse"] = torch.empty((T, splits, H), device=device, dtype=torch.float32)
    return ws["d_o_part"], ws["d_lse"]


def _p_scratch(ws: dict | None, programs: int, bh: int, bn: int, dtype, device) -> torch.Tensor:
    """Per-program scratch (``gs``): two buffers of P [BLOCK_H, BLOCK_N] in the dots' dtype + alpha [BLOCK_H] fp32."""
    ws = ws if ws is not None else {}
    n = programs * 2 * (bh * bn + 2 * bh)
    old = ws.get("p_scr")
    if old is None or old.numel() < n or old.dtype != dtype or old.device != torch.device(device):
        ws["p_scr"] = torch.empty(n, device=device, dtype=dtype)
    return ws["p_scr"]


def _descs(kv: torch.Tensor, block_n: int, ws: dict | None):
    from triton.tools.tensor_descriptor import TensorDescriptor
    key = ("desc", kv.data_ptr(), kv.shape[0], block_n, kv.dtype)
    if ws is not None and ws.get("desc_key") == key:
        return ws["descs"]
    d = (TensorDescriptor.from_tensor(kv[:, :256], [block_n, 256]),
         TensorDescriptor.from_tensor(kv[:, 256:512], [block_n, 256]),
         TensorDescriptor.from_tensor(kv[:, 512:], [block_n, 64]))
    if ws is not None:
        ws["desc_key"], ws["descs"] = key, d
    return d


def mla_decode(q_lat: torch.Tensor, q_pe: torch.Tensor, kv: torch.Tensor, *, out: torch.Tensor,
               start: torch.Tensor, length: torch.Tensor, n_slots: int, sm_scale: float,
               kv_scale: float = 1.0, splits: int | None = None, workspace: dict | None = None,
               n_sm: int = 132, config: dict | None = None) -> torch.Tensor:
    """out[t] = softmax(q[t] . K^T * sm_scale) . V over rows start[t] .. start[t] + length[t] of kv.

    q_lat [T,H,512], q_pe [T,H,64], out [T,H,512]: any strides with the last
    dim contiguous. kv [N,576] bf16 (or fp8 e4m3 scaled by kv_scale), rows
    contiguous. n_slots >= max(length) sizes the kv split."""
    if not HAVE_TRITON:
        raise RuntimeError("triton is not installed: use mla_attn.mla_attention_ref")
    T, H, d_lat = q_lat.shape
    # layered launch config: CONFIG, then the FP8 cache's overrides (CONFIG["fp8"]), then those for
    # fewer than 64 heads (one head group under a wgmma's 64 rows: "small_h", "small_h_fp8"), then config
    fp8 = kv.dtype == torch.float8_e4m3fn
    cfg = dict(CONFIG)
    for key, on in (("fp8", fp8), ("small_h", H < 64), ("small_h_fp8", fp8 and H < 64)):
        if on:
            cfg.update(CONFIG.get(key, {}))
    cfg.update(config or {})
    d_pe = q_pe.shape[-1]
    if kv.shape[1] != d_lat + d_pe or kv.stride(1) != 1:
        raise ValueError(f"kv must be [N, {d_lat + d_pe}] with contiguous rows, got {tuple(kv.shape)}")
    bh = max(16, min(cfg["block_h"], 1 << (H - 1).bit_length()))
    bn = cfg["block_n"]
    n_hb = -(-H // bh)
    if splits is None:
        splits = pick_splits(T, n_hb, int(n_slots), n_sm, ctas_per_sm=cfg["ctas_per_sm"], block_n=bn,
                             min_chunk=cfg["min_chunk"])
    chunk = -(-int(n_slots) // splits)
    chunk = max(bn, -(-chunk // bn) * bn)
    splits = max(1, -(-int(n_slots) // chunk))
    if splits > 1:
        o_part, lse = _workspace(workspace, T, splits, H, d_lat, q_lat.device)
    else:
        o_part = lse = out
    grid = (T * splits * n_hb,)
    scal = (H, chunk, n_hb, splits, sm_scale * kv_scale * LOG2E, kv_scale)
    meta = dict(D_LAT=d_lat, D_PE=d_pe, BLOCK_H=bh, BLOCK_N=bn, SPLIT=splits > 1,
                num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    if cfg.get("fp8_dot") and kv.dtype == torch.float8_e4m3fn and not cfg["desc"]:
        meta["FP8_DOT"] = True
    elif cfg.get("f16") and kv.dtype == torch.float8_e4m3fn:
        # FP8 cache: e4m3 -> fp16 is one instruction per pair (-> bf16 takes three), so the dots run in
        # fp16; q is converted here (a q computed in the kernel would be held in registers, not shared memory)
        q_lat, q_pe = q_lat.to(torch.float16), q_pe.to(torch.float16)
    if cfg.get("peel"):
        meta["PEEL"] = True
    p_scr = out
    if cfg.get("gs") and not cfg["desc"]:
        meta["GS"] = 1 if q_lat.device.type == "cpu" else 2  # 1: the interpreter (no inline asm)
        p_scr = _p_scratch(workspace, grid[0], bh, bn, q_lat.dtype, q_lat.device)
    if cfg["desc"]:
        k = _decode_kernel_desc[grid](
            q_lat, q_pe, *_descs(kv, bn, workspace), start, length, out, o_part, lse, *scal,
            q_lat.stride(0), q_lat.stride(1), q_pe.stride(0), q_pe.stride(1), out.stride(0), out.stride(1), **meta)
    else:
        k = _decode_kernel[grid](
            q_lat, q_pe, kv, start, length, out, o_part, lse, p_scr, *scal,
            q_lat.stride(0), q_lat.stride(1), q_pe.stride(0), q_pe.stride(1), kv.stride(0),
            out.stride(0), out.stride(1), **meta)
    LAST.clear()
    LAST.update(splits=splits, block_h=bh, chunk=chunk, programs=grid[0], block_n=bn,
                num_warps=cfg["num_warps"], num_stages=cfg["num_stages"], peel=bool(cfg.get("peel")),
                f16=q_lat.dtype == torch.float16, desc=bool(cfg["desc"]),
                gs=bool(meta.get("GS")))
    for a in ("n_regs", "n_spills"):
        if hasattr(k, a):
            LAST[a] = getattr(k, a)
    if splits > 1:
        bs = max(2, 1 << (splits - 1).bit_length())
        _combine_kernel[(T, H)](o_part, lse, out, H, out.stride(0), out.stride(1),
                                NUM_SPLITS=splits, D=d_lat, BLOCK_S=bs, num_warps=4)
    return out
