"""MLA decode kernel alone: effective HBM bandwidth and correctness per launch config.

For each config: check against the float64 reference (b=3, H=128, uneven
lengths, poisoned output; bf16 and FP8 cache), then time b x kv_len x 128
heads (default 64 x 32768) with the L2 flushed before every sample (CUDA graph
replays, median). Effective bandwidth = (cache rows + q + out bytes) / time;
TFLOP/s counts 2 * H * (576 + 512) per cache row. The old kernel
(``mla_attn.mla_attention``, dense mode, collector 0.1) is the baseline.

    python benchmarks/decode_bench.py --deadline 200 --json out.json [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from collector.kernels import mla_attn as ATT  # noqa: E402
from collector.kernels import mla_decode as DEC  # noqa: E402
from collector.timing import Bencher  # noqa: E402

FP8 = torch.float8_e4m3fn
SM_SCALE = 192 ** -0.5
DEFAULT_CONFIG = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEC.CONFIG.items()}
# the sweep's names list every option they turn on: they run over this neutral base, not the module default
NEUTRAL = dict(DEC.CONFIG, peel=False, fp8={}, small_h={}, small_h_fp8={})

# (name, config); splits None = pick_splits
SWEEP = [  # most promising first: a deadline cuts the tail
    ("bn64 w8 s2", dict(block_n=64, num_warps=8, num_stages=2), None),
    ("desc bn64 w8 s2", dict(block_n=64, num_warps=8, num_stages=2, desc=True), None),
    ("bn32 w8 s3", dict(block_n=32, num_warps=8, num_stages=3), None),
    ("bh32 bn64 w4 s2", dict(block_h=32, block_n=64, num_warps=4, num_stages=2, ctas_per_sm=2), None),
    ("fp8dot bn64 w8 s2", dict(block_n=64, num_warps=8, num_stages=2, fp8_dot=True), None),
    ("bn64 w8 s3", dict(block_n=64, num_warps=8, num_stages=3), None),
    ("desc bn32 w8 s3", dict(block_n=32, num_warps=8, num_stages=3, desc=True), None),
    ("bn128 w8 s1", dict(block_n=128, num_warps=8, num_stages=1), None),
    ("bn64 w16 s2", dict(block_n=64, num_warps=16, num_stages=2), None),
    ("fp8dot bn64 w8 s3", dict(block_n=64, num_warps=8, num_stages=3, fp8_dot=True), None),
    ("desc bn64 w8 s3", dict(block_n=64, num_warps=8, num_stages=3, desc=True), None),
    ("bn32 w8 s4", dict(block_n=32, num_warps=8, num_stages=4), None),
    ("desc bn32 w8 s4", dict(block_n=32, num_warps=8, num_stages=4, desc=True), None),
    ("desc bn64 w16 s2", dict(block_n=64, num_warps=16, num_stages=2, desc=True), None),
    ("bh32 bn32 w4 s3", dict(block_h=32, block_n=32, num_warps=4, num_stages=3, ctas_per_sm=2), None),
    ("bn64 w8 s1", dict(block_n=64, num_warps=8, num_stages=1), None),
    ("bn32 w8 s2", dict(block_n=32, num_warps=8, num_stages=2), None),
    ("bn64 w8 s2 split4", dict(block_n=64, num_warps=8, num_stages=2), 4),
    ("bn64 w8 s2 split33", dict(block_n=64, num_warps=8, num_stages=2), 33),
    # issue 16 item 3 follow-up: peeled tail block (unmasked main loop), fp16 dots for the FP8 cache
    ("peel bn64 w8 s2", dict(block_n=64, num_warps=8, num_stages=2, peel=True), None),
    ("peel bn32 w8 s3", dict(block_n=32, num_warps=8, num_stages=3, peel=True), None),
    ("desc peel bn64 w8 s2", dict(block_n=64, num_warps=8, num_stages=2, desc=True, peel=True), None),
    ("f16 bn64 w8 s2", dict(block_n=64, num_warps=8, num_stages=2, f16=True), None),
    ("f16 bn64 w8 s1", dict(block_n=64, num_warps=8, num_stages=1, f16=True), None),
    ("f16 peel bn64 w8 s2", dict(block_n=64, num_warps=8, num_stages=2, f16=True, peel=True), None),
    ("f16 peel bn64 w8 s1", dict(block_n=64, num_warps=8, num_stages=1, f16=True, peel=True), None),
    ("f16 peel bn32 w8 s3", dict(block_n=32, num_warps=8, num_stages=3, f16=True, peel=True), None),
    ("f16 peel bn32 w8 s4", dict(block_n=32, num_warps=8, num_stages=4, f16=True, peel=True), None),
    ("f16 desc bn64 w8 s2", dict(block_n=64, num_warps=8, num_stages=2, f16=True, desc=True), None),
    ("peel bn64 w8 s1", dict(block_n=64, num_warps=8, num_stages=1, peel=True), None),
    ("peel bn128 w8 s1", dict(block_n=128, num_warps=8, num_stages=1, peel=True), None),
    ("f16 peel bn128 w8 s1", dict(block_n=128, num_warps=8, num_stages=1, f16=True, peel=True), None),
    ("bn64 w4 s2", dict(block_n=64, num_warps=4, num_stages=2), None),
    ("peel bn64 w4 s2", dict(block_n=64, num_warps=4, num_stages=2, peel=True), None),
    ("f16 peel bn64 w4 s2", dict(block_n=64, num_warps=4, num_stages=2, f16=True, peel=True), None),
    ("f16 desc peel bn64 w8 s2", dict(block_n=64, num_warps=8, num_stages=2, f16=True, desc=True, peel=True),
     None),
    # scores once per head group: P through a global scratch (gs; run 10: 0.6% faster bf16, 22% slower FP8)
    # (issue 16 item 3, run 10)
    ("gs peel bn64 w8 s2", dict(block_n=64, num_warps=8, num_stages=2, peel=True, gs=True), None),
    ("gs peel bn128 w8 s1", dict(block_n=128, num_warps=8, num_stages=1, peel=True, gs=True), None),
    ("f16 gs peel bn128 w8 s1", dict(block_n=128, num_warps=8, num_stages=1, peel=True, gs=True, f16=True), None),
    ("f16 gs peel bn64 w8 s2", dict(block_n=64, num_warps=8, num_stages=2, peel=True, gs=True, f16=True), None),
]


def rel(a, b) -> float:
    return ((a.double() - b).norm() / b.norm()).item()


def small_check(fn, kvd, g) -> float:
    b, H, Ls = 3, 128, (2000, 37, 1500)
    N = 6000
    ql = torch.randn((b, H, 512), generator=g, device="cuda").bfloat16()
    qp = torch.randn((b, H, 64), generator=g, device="cuda").bfloat16()
    kv = torch.randn((N, 576), generator=g, device="cuda").to(kvd)
    start = torch.tensor([0, 2000, 4000], device="cuda", dtype=torch.int32)
    ln = torch.tensor(Ls, device="cuda", dtype=torch.int32)
    o = torch.full((b, H, 512), float("nan"), device="cuda", dtype=torch.bfloat16)
    fn(ql, qp, kv, o, start, ln, max(Ls), 0.5)
    torch.cuda.synchronize()
    if torch.isnan(o).any():
        return float("nan")
    return rel(o, ATT.mla_attention_ref(ql, qp, kv, sm_scale=SM_SCALE, kv_scale=0.5, start=start, length=ln))


def big_inputs(b, L, H, kvd, g):
    ql = torch.randn((b, H, 512), generator=g, device="cuda").bfloat16()
    qp = torch.randn((b, H, 64), generator=g, device="cuda").bfloat16()
    kv = torch.randn((b * L, 576), generator=g, device="cuda").to(kvd)
    start = (torch.arange(b, device="cuda", dtype=torch.int32) * L)
    ln = torch.full((b,), L, device="cuda", dtype=torch.int32)
    o = torch.empty((b, H, 512), device="cuda", dtype=torch.bfloat16)
    return ql, qp, kv, start, ln, o


def full_check(fn, inp, L) -> float:
    """Whole problem against the float64 reference, token by token (on the GPU)."""
    ql, qp, kv, start, ln, o = inp
    o.fill_(float("nan"))
    fn(ql, qp, kv, o, start, ln, L, 0.5)
    torch.cuda.synchronize()
    num = den = 0.0
    for t in range(ql.shape[0]):
        ref = ATT.mla_attention_ref(ql[t:t + 1], qp[t:t + 1], kv, sm_scale=SM_SCALE, kv_scale=0.5,
                                    start=start[t:t + 1], length=ln[t:t + 1])
        num += (o[t:t + 1].double() - ref).norm().item() ** 2
        den += ref.norm().item() ** 2
    return (num / den) ** 0.5


def new_fn(cfg, splits):
    def f(ql, qp, kv, o, start, ln, n, kv_scale, ws={}):
        DEC.mla_decode(ql, qp, kv, out=o, start=start, length=ln, n_slots=n, sm_scale=SM_SCALE,
                       kv_scale=kv_scale, splits=splits, workspace=ws, config=cfg,
                       n_sm=torch.cuda.get_device_properties(0).multi_processor_count)
    return f


def old_fn(ql, qp, kv, o, start, ln, n, kv_scale, ws={}):
    ATT.DENSE_IMPL = "legacy"
    try:
        _old(ql, qp, kv, o, start, ln, n, kv_scale, ws)
    finally:
        ATT.DENSE_IMPL = "decode"


def _old(ql, qp, kv, o, start, ln, n, kv_scale, ws):
    ATT.mla_attention(ql, qp, kv, out=o, sm_scale=SM_SCALE, kv_scale=kv_scale, start=start, length=ln,
                      n_slots=n, workspace=ws, n_sm=torch.cuda.get_device_properties(0).multi_processor_count)


# TensorRT-LLM 1.3.0rc20 MLA generation module, H=128 b=64 kv_len=32768 (aiconfigurator-core tables)
TRT_MODULE_MS = {("h100", "bfloat16", "bfloat16"): 1.083, ("h100", "fp8_block", "fp8"): 0.909,
                 ("h200", "bfloat16", "bfloat16"): 1.035}


def module_rows(a, bench, rows, t0) -> None:
    """The whole MLA generation module (one layer, CUDA graph, L2 flushed) with the 0.1 and 0.2 decode."""
    from collector.modules import AttentionModule
    card = "h200" if "H200" in torch.cuda.get_device_name() else "h100"
    DEC.CONFIG.clear()
    DEC.CONFIG.update(DEFAULT_CONFIG)
    if a.write_config and a.write_config.exists():  # the config chosen by the sweep
        DEC.CONFIG.update(json.loads(a.write_config.read_text()).get("decode_config", {}))
    print(f"module timing with decode_config {DEC.CONFIG}", flush=True)
    for gemm, kvd in (("bfloat16", "bfloat16"), ("fp8_block", "fp8")):
        m = AttentionModule("mla", a.heads, gemm, kvd)
        step = m.prepare_generation(a.batch, a.kv_len)
        for impl in ("decode", "legacy"):
            if time.time() - t0 > a.deadline + 60:
                break
            ATT.DENSE_IMPL = impl
            ms = bench.time(step.run, target_ms=30, min_samples=10, max_samples=20).median_ms
            trt = TRT_MODULE_MS.get((card, gemm, kvd))
            rows.append(dict(kind="module", gemm=gemm, kv=kvd, impl=impl, ms=ms, trt_ms=trt))
            print(f"module MLA gen H={a.heads} b={a.batch} kv_len={a.kv_len} {gemm}/{kvd} decode={impl}: {ms:.3f} ms"
                  + (f" vs TRT-LLM {trt:.3f} ms ({card}) = {ms / trt:.2f}x" if trt else ""), flush=True)
        ATT.DENSE_IMPL = "decode"
        del step, m
        torch.cuda.empty_cache()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--kv-len", type=int, default=32768)
    ap.add_argument("--heads", type=int, default=128)
    ap.add_argument("--deadline", type=float, default=240.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", default="", help="comma-separated config names (default: all)")
    ap.add_argument("--kv", default="bf16,fp8")
    ap.add_argument("--full-check", action="store_true", help="float64 check of the whole problem, best config")
    ap.add_argument("--module", action="store_true",
                    help="also time the whole MLA generation module at b x kv_len, 0.1 vs 0.2 decode path")
    ap.add_argument("--write-config", type=Path, default=None,
                    help="merge the fastest correct bf16 config as decode_config into this collector configs JSON")
    a = ap.parse_args(argv)
    t0 = time.time()
    DEC.CONFIG.clear()
    DEC.CONFIG.update(NEUTRAL)
    dev = torch.cuda.get_device_name()
    print(f"device {dev}, torch {torch.__version__}", flush=True)
    b, L, H = a.batch, a.kv_len, a.heads
    bench = Bencher()
    g = torch.Generator(device="cuda").manual_seed(0)
    # ceiling: device-to-device copy of 2 GiB (bytes read + written)
    x = torch.empty(1 << 29, device="cuda")
    y = torch.empty_like(x)
    tc = bench.time(lambda: y.copy_(x), target_ms=20).median_ms
    copy_tbs = 2 * x.numel() * 4 / tc / 1e6  # bytes / ms / 1e6 = GB/s
    print(f"copy 2 GiB: {tc:.3f} ms = {copy_tbs:.0f} GB/s (read + write)", flush=True)
    del x, y
    rows = []
    sweep = [s for s in SWEEP if not a.only or s[0] in a.only.split(",")]
    for kvname in a.kv.split(","):
        kvd = torch.bfloat16 if kvname == "bf16" else FP8
        inp = big_inputs(b, L, H, kvd, g)
        esz = inp[2].element_size()
        nbytes = b * L * 576 * esz + b * H * (576 + 512) * 2
        flops = 2 * H * (576 + 512) * b * L
        best = None
        for name, cfg, splits in [("old kernel (0.1)", None, None)] + sweep:
            if time.time() - t0 > a.deadline:
                print(f"deadline: skipping {name} {kvname}", flush=True)
                continue
            if cfg is not None and cfg.get("fp8_dot") and kvd != FP8:
                continue
            fn = old_fn if cfg is None else new_fn(cfg, splits)
            row = dict(kv=kvname, name=name, config=cfg, splits_arg=splits, batch=b, kv_len=L, heads=H)
            try:
                row["rel_err"] = small_check(fn, kvd, g)
                ql, qp, kv, start, ln, o = inp
                tm = bench.time(lambda: fn(ql, qp, kv, o, start, ln, L, 0.5), target_ms=40, min_samples=10,
                                max_samples=30)
                row.update(ms=tm.median_ms, tbs=nbytes / tm.median_ms / 1e6, tflops=flops / tm.median_ms / 1e9)
                if cfg is not None:
                    row.update({k: DEC.LAST.get(k) for k in ("splits", "n_regs", "n_spills", "programs")})
            except Exception as e:  # noqa: BLE001 - a config that does not compile / fit is recorded
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
                torch.cuda.synchronize()
            rows.append(row)
            if "ms" in row:
                print(f"{kvname:4s} {name:22s} {row['ms']:.4f} ms {row['tbs']:7.0f} GB/s {row['tflops']:5.0f} TFLOP/s "
                      f"err {row['rel_err']:.2e} splits {row.get('splits')} regs {row.get('n_regs')} "
                      f"spills {row.get('n_spills')}", flush=True)
                if cfg is not None and row["rel_err"] < 2e-2 and (best is None or row["ms"] < best["ms"]):
                    best = row
            else:
                print(f"{kvname:4s} {name:22s} FAILED {row['error']}", flush=True)
        if a.full_check and best is not None and time.time() - t0 < a.deadline:
            err = full_check(new_fn(best["config"], best["splits_arg"]), inp, L)
            best["full_rel_err"] = err
            print(f"{kvname} best {best['name']}: float64 check of the whole b={b} kv_len={L} problem: "
                  f"rel err {err:.2e}", flush=True)
        if a.write_config and best is not None:
            src = a.write_config if a.write_config.exists() else Path(__file__).parents[1] / "collector/configs/h200.json"
            cj = json.loads(src.read_text())
            if kvname == "bf16":
                cj["decode_config"] = dict(NEUTRAL, **best["config"])
            else:  # the FP8 cache's overrides of the (bf16) decode config
                base = cj.setdefault("decode_config", dict(NEUTRAL))
                base["fp8"] = {k: v for k, v in best["config"].items() if base.get(k) != v}
            a.write_config.write_text(json.dumps(cj, indent=1) + "\n")
            print(f"wrote decode_config {cj['decode_config']} to {a.write_config}", flush=True)
        del inp
        torch.cuda.empty_cache()
    if a.module:
        module_rows(a, bench, rows, t0)
    print("\nsummary (GB/s = cache + q + out bytes / time)")
    for r in rows:
        if "ms" in r and r.get("kind") != "module":
            print(f"  {r['kv']:4s} {r['name']:22s} {r['ms']:.4f} ms {r['tbs']:6.0f} GB/s {r['tflops']:4.0f} TFLOP/s "
                  f"err {r['rel_err']:.1e}")
    if a.json:
        a.json.write_text(json.dumps(dict(device=dev, torch=torch.__version__, copy_gbs=copy_tbs, rows=rows),
                                     indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
