"""Correctness checks: every Triton kernel / GEMM / module against a naive PyTorch
reference on small shapes. Used by ``python -m collector check`` and by the
GPU tests in tests/collector. Tolerances: relative Frobenius error
||out - ref|| / ||ref||.
"""
from __future__ import annotations

import torch

from . import modules as MOD
from .gemm import FP8, Linear
from .kernels import indexer as IDX
from .kernels import mla_attn as ATT
from .modules import AttentionModule

TOL = {
    "attn_bf16": 2e-2,     # bf16 operands, fp32 accumulation and softmax
    "attn_fp8kv": 2e-2,    # fp8 cache rows, same scale in kernel and reference
    "indexer": 1e-4,       # fp8 x fp8 products are exact in fp32; only summation order differs
    "gemm": 2e-2,          # cuBLAS/CUTLASS vs float32 matmul of the same quantised operands
    "module": 3e-2,        # whole block: Triton path vs reference path
}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _sparse_idx(T, K, N, g, device):
    idx = torch.randint(0, N, (T, K), generator=g, device=device, dtype=torch.int32)
    nvalid = torch.randint(1, K + 1, (T,), generator=g, device=device)
    nvalid[0] = K
    idx[torch.arange(K, device=device)[None, :] >= nvalid[:, None]] = -1
    return idx


def check_attention(device="cuda", dtype=torch.bfloat16) -> list[tuple[str, float, float]]:
    g = torch.Generator(device=device).manual_seed(3)
    out = []
    for H, T, K, N, splits in ((128, 6, 2048, 6000, 1), (128, 6, 2048, 6000, None), (16, 5, 512, 3000, 1),
                               (32, 3, 300, 1000, None)):
        ql = torch.randn((T, H, 512), generator=g, device=device).to(dtype)
        qp = torch.randn((T, H, 64), generator=g, device=device).to(dtype)
        kv = torch.randn((N, 576), generator=g, device=device).to(dtype)
        idx = _sparse_idx(T, K, N, g, device)
        o = torch.full((T, H, 512), float("nan"), device=device, dtype=dtype)
        ATT.mla_attention(ql, qp, kv, out=o, sm_scale=192 ** -0.5, idx=idx, splits=splits)
        ref = ATT.mla_attention_ref(ql, qp, kv, sm_scale=192 ** -0.5, idx=idx)
        out.append((f"sparse_attn H={H} T={T} topk={K} splits={splits or 'auto'}", rel(o, ref), TOL["attn_bf16"]))
    for kvd in (dtype, FP8):
        if kvd == FP8 and device != "cuda":
            continue
        b, H, Ls = 4, 128, (3000, 17, 1500, 2048)
        N = 4 * 3000
        ql = torch.randn((b, H, 512), generator=g, device=device).to(dtype)
        qp = torch.randn((b, H, 64), generator=g, device=device).to(dtype)
        kv = torch.randn((N, 576), generator=g, device=device).to(kvd)
        start = torch.tensor([0, 3000, 6000, 9000], device=device, dtype=torch.int32)
        ln = torch.tensor(Ls, device=device, dtype=torch.int32)
        o = torch.full((b, H, 512), float("nan"), device=device, dtype=dtype)
        ATT.mla_attention(ql, qp, kv, out=o, sm_scale=192 ** -0.5, kv_scale=0.5, start=start, length=ln,
                          n_slots=max(Ls))
        ref = ATT.mla_attention_ref(ql, qp, kv, sm_scale=192 ** -0.5, kv_scale=0.5, start=start, length=ln)
        out.append((f"dense_decode kv={str(kvd).split('.')[-1]} b={b} H={H}", rel(o, ref),
                    TOL["attn_fp8kv" if kvd == FP8 else "attn_bf16"]))
    return out


def check_indexer(device="cuda") -> list[tuple[str, float, float]]:
    g = torch.Generator(device=device).manual_seed(4)
    qd = FP8 if device == "cuda" else torch.float32
    out = []
    NH, D = 64, 128
    n_req, n_q, pos0 = 2, 150, 70
    L = pos0 + n_q
    Lc = L + 5
    q = torch.randn((n_req * n_q, NH, D), generator=g, device=device).to(qd)
    w = torch.rand((n_req * n_q, NH), generator=g, device=device)
    k = torch.randn((n_req * Lc, D), generator=g, device=device).to(qd)
    ks = torch.rand((n_req * Lc,), generator=g, device=device)
    lg = torch.full((n_req * n_q, L), float("nan"), device=device)
    IDX.indexer_logits_context(q, w, k, ks, lg, n_req=n_req, n_q=n_q, pos0=pos0, L=L, k_rows_per_req=Lc)
    ref = IDX.indexer_logits_ref(q, w, k, ks, n_req=n_req, n_q=n_q, pos0=pos0, L=L, k_rows_per_req=Lc)
    fin = torch.isfinite(ref)
    same_mask = bool((torch.isfinite(lg) == fin).all())
    out.append(("indexer_logits context (causal mask identical)", rel(lg[fin], ref[fin]) if same_mask else 1.0,
                TOL["indexer"]))
    b, L2 = 3, 200
    qg = torch.randn((b, NH, D), generator=g, device=device).to(qd)
    wg = torch.rand((b, NH), generator=g, device=device)
    k2 = torch.randn((b * L2, D), generator=g, device=device).to(qd)
    ks2 = torch.rand((b * L2,), generator=g, device=device)
    lg2 = torch.full((b, L2), float("nan"), device=device)
    IDX.indexer_logits_generation(qg, wg, k2, ks2, lg2, L=L2, k_rows_per_req=L2)
    ref2 = IDX.indexer_logits_ref(qg, wg, k2, ks2, n_req=b, n_q=1, pos0=L2 - 1, L=L2, k_rows_per_req=L2)
    out.append(("indexer_logits generation", rel(lg2, ref2), TOL["indexer"]))
    # top-k: same selected set as the reference logits
    rb = (torch.arange(n_req, device=device) * Lc).repeat_interleave(n_q)[:, None]
    a = IDX.topk_indices(lg, 64, row_base=rb)
    r = IDX.topk_indices(ref.float(), 64, row_base=rb)
    agree = sum(len(set(a[i].tolist()) & set(r[i].tolist())) for i in range(a.shape[0])) / a.numel()
    out.append(("topk(64) set overlap with reference (1 - overlap)", 1 - agree, 1e-2))
    return out


def check_gemm(device="cuda") -> list[tuple[str, float, float]]:
    g = torch.Generator(device=device).manual_seed(5)
    out = []
    for gt in ("bfloat16", "fp8_block", "fp8_tensor"):
        lin = Linear(1536, 2112, gt, device, generator=g)
        for M in (3, 300):
            x = torch.randn((M, 1536), generator=g, device=device).to(torch.bfloat16)
            try:
                y = lin(x)
                out.append((f"gemm {gt} M={M} K=1536 N=2112", rel(y[:, :2112], lin.reference(x)[:, :2112]),
                            TOL["gemm"]))
            except Exception as exc:  # noqa: BLE001
                out.append((f"gemm {gt} M={M} ERROR {str(exc).splitlines()[0][:80]}", float("inf"), TOL["gemm"]))
    return out


def check_modules(device="cuda") -> list[tuple[str, float, float]]:
    out = []
    cases = [
        ("dsa", 32, "fp8_block", "bfloat16", ("ctx", 2, 64, 40)),
        ("dsa", 128, "bfloat16", "bfloat16", ("gen", 3, 300)),
        ("mla", 128, "fp8_block", "fp8", ("gen", 2, 500)),
        ("mla", 16, "bfloat16", "bfloat16", ("ctx", 2, 48, 0)),
    ]
    for fam, H, gt, kvd, sh in cases:
        mods = [AttentionModule(fam, H, gt, kvd, device=device, topk=64, use_triton=ut, seed=7) for ut in (True, False)]
        ys = []
        for m in mods:
            step = m.prepare_context(*sh[1:]) if sh[0] == "ctx" else m.prepare_generation(*sh[1:])
            ys.append(step.run())
        logits = step.meta.get("indexer_logits")
        name = f"module {fam} {sh[0]} H={H} {gt}/{kvd} shape={sh[1:]}" + (" (indexer logits+topk)" if logits else "")
        if sh[0] == "gen":  # the Triton module's generation prologue (modules.PROLOGUE) against the eager reference
            name += f" prologue={MOD.PROLOGUE}"
        out.append((name, rel(ys[0], ys[1]), TOL["module"]))
    return out


def run_all(device="cuda", log=print) -> bool:
    rows = []
    for fn in (check_gemm, check_attention, check_indexer, check_modules):
        try:
            rows += fn(device)
        except Exception as exc:  # noqa: BLE001
            rows.append((f"{fn.__name__} CRASHED: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}",
                         float("inf"), 0.0))
    ok = True
    for name, err, tol in rows:
        passed = err == err and err <= tol
        ok &= passed
        log(f"  {'PASS' if passed else 'FAIL'}  {err:.2e} (tol {tol:.0e})  {name}")
    return ok
