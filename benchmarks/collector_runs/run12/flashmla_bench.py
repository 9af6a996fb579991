"""Run 12 (issue 16): DeepSeek's FlashMLA dense bf16 decode (collector/kernels/flashmla.py over the C shim)
next to FlashInfer's fa3 paged decode and the card's 2 GiB copy.

Method of run 11's ``flashinfer_mla.py`` (whose helpers it reuses), in one process on the device:

- ``--smoke``: the small check only (b=3, H=128, lengths 2000 / 37 / 1500, output poisoned with NaN), exit
  status 0 if it passes: flashmla.sh runs it in a child first, because FlashMLA's host code calls
  exit(1) on a CUDA error (a library built for another card would end the bench itself);
- otherwise, per kernel: that small check against the float64 reference, then the time at b x kv_len x H
  (default 64 x 32768 x 128, bf16 cache), L2 flushed before every sample, CUDA-graph replays, median
  (``collector.timing.Bencher``), then the whole problem checked token by token. GB/s = (cache + q + out
  bytes) / time (issue 16's measure, target 2500), TFLOP/s = 2 H (576 + 512) per cache row.

Kernels: FlashMLA with q_lat / q_pe as views of one [b, H, 576] buffer (the kernel alone), with separate
q_lat / q_pe (the collector's case: one q copy more), with its scheduler-metadata kernel in every call
(a serving engine runs it once per step for all layers); FlashInfer fa3 at ``--pages`` when importable.
``--module`` also times the MLA generation module (one layer, bf16) with either decode.

    python benchmarks/collector_runs/run12/flashmla_bench.py [--smoke] [--lib SO] --json OUT.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks/collector_runs/run11"))

import flashinfer_mla as R11  # noqa: E402  run 11's bytes / FLOPs / checks

SM_SCALE = 576 ** -0.5
PASS_ERR = 2e-2


def small_inputs(H, g, fused_q: bool):
    """Run 11's uneven small case: b=3, lengths 2000 / 37 / 1500 at page-aligned starts, NaN output."""
    import torch
    sb = len(R11.SMALL_LENGTHS)
    q = torch.randn((sb, H, 576), generator=g, device="cuda").bfloat16()
    ql, qp = (q[..., :512], q[..., 512:]) if fused_q else (q[..., :512].clone(), q[..., 512:].clone())
    kv = torch.randn((R11.SMALL_STARTS[-1] + 2048, 576), generator=g, device="cuda").bfloat16()
    st = torch.tensor(R11.SMALL_STARTS, device="cuda", dtype=torch.int32)
    ln = torch.tensor(R11.SMALL_LENGTHS, device="cuda", dtype=torch.int32)
    o = torch.full((sb, H, 512), float("nan"), device="cuda", dtype=torch.bfloat16)
    return ql, qp, kv, st, ln, o


def small_check(maker, H, g, fused_q: bool) -> tuple[float, float]:
    """(relative error against float64, seconds of the first call: library load + plan + launch)."""
    import torch
    from collector.kernels import mla_attn as ATT
    ql, qp, kv, st, ln, o = small_inputs(H, g, fused_q)
    t0 = time.time()
    fn = maker(st, ln)
    fn(ql, qp, kv, o)
    torch.cuda.synchronize()
    first = time.time() - t0
    if torch.isnan(o).any():
        return float("nan"), first
    ref = ATT.mla_attention_ref(ql, qp, kv, sm_scale=SM_SCALE, start=st, length=ln)
    return ((o.double() - ref).norm() / ref.norm()).item(), first


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--kv-len", type=int, default=32768)
    ap.add_argument("--heads", type=int, default=128)
    ap.add_argument("--pages", default="64", help="FlashInfer fa3 page sizes ('' = no FlashInfer)")
    ap.add_argument("--lib", help="libflashmla_shim.so (default $FLASHMLA_SHIM)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--no-full-check", action="store_true")
    ap.add_argument("--module", action="store_true", help="also the MLA generation module (bf16) with either decode")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    import torch
    from collector.kernels import flashmla as FM
    from collector.kernels import mla_attn as ATT
    from collector.timing import Bencher, env_info

    b, L, H = a.batch, a.kv_len, a.heads
    g = torch.Generator(device="cuda").manual_seed(12)

    def fmla_maker(fused_q: bool, sched_each_call: bool = False):
        def make(start, ln):
            m = FM.FlashMLA("cuda", a.lib).plan(start, ln, H, SM_SCALE)
            if sched_each_call:
                return lambda ql, qp, kv, o: m.schedule().run(ql, qp, kv, o)
            return lambda ql, qp, kv, o: m.run(ql, qp, kv, o)
        return make

    if a.smoke:
        err, first = small_check(fmla_maker(True), H, g, True)
        print(f"smoke: FlashMLA small check err {err:.3e} (first call {first:.2f} s) on "
              f"{torch.cuda.get_device_name()}", flush=True)
        return 0 if err < PASS_ERR else 1

    env = env_info()
    env["device"] = torch.cuda.get_device_name()
    env["flashmla_shim"] = str(Path(FM.lib_path(a.lib)).resolve())
    try:
        env["flashinfer"] = __import__("flashinfer").__version__
    except Exception as e:  # noqa: BLE001
        env["flashinfer"] = f"not importable: {type(e).__name__}: {e}"
    print(json.dumps(env), flush=True)

    bench = Bencher()
    x = torch.empty(1 << 29, device="cuda")
    y = torch.empty_like(x)
    tc = bench.time(lambda: y.copy_(x), target_ms=20).median_ms
    copy_gbs = 2 * x.numel() * 4 / tc / 1e6
    print(f"copy 2 GiB: {tc:.4f} ms = {copy_gbs:.0f} GB/s (read + write)", flush=True)
    del x, y
    out = dict(env=env, batch=b, kv_len=L, heads=H, copy_ms=tc, copy_gbs=copy_gbs, rows=[])

    kernels = [("flashmla (q one buffer)", fmla_maker(True), True),
               ("flashmla (q_lat, q_pe apart)", fmla_maker(False), False),
               ("flashmla + sched meta", fmla_maker(True, True), True)]
    if a.pages and not env["flashinfer"].startswith("not importable"):
        from collector.kernels import fi_mla

        def fi_maker(page):
            def make(start, ln):
                m = fi_mla.FlashInferMLA("cuda", "fa3", page).plan(start, ln, H, torch.bfloat16, SM_SCALE)
                return lambda ql, qp, kv, o: m.run(ql, qp, kv, o)
            return make
        kernels += [(f"flashinfer fa3 page {p}", fi_maker(int(p)), False) for p in a.pages.split(",")]

    nbytes, flops = R11.traffic_bytes(b, L, H, 2), R11.tensor_flops(b, L, H)
    ql, qp, kv, start, ln, o = big_inputs(b, L, H, g)
    q_one = torch.cat([ql, qp], dim=-1)
    for name, maker, fused_q in kernels:
        row = dict(kernel=name, batch=b, kv_len=L, heads=H, bytes=nbytes)
        try:
            row["small_err"], row["first_call_s"] = small_check(maker, H, g, fused_q)
            qa, qb = (q_one[..., :512], q_one[..., 512:]) if fused_q else (ql, qp)
            fn = maker(start, ln)
            tm = bench.time(lambda: fn(qa, qb, kv, o), target_ms=40, min_samples=10, max_samples=30)
            row.update(ms=tm.median_ms, gbs=nbytes / tm.median_ms / 1e6, tflops=flops / tm.median_ms / 1e9,
                       method=tm.method, samples_ms=[round(s, 5) for s in tm.samples_ms])
            if not a.no_full_check:
                row["full_err"] = R11.full_check(lambda q1, q2, k, oo, _scale: fn(q1, q2, k, oo),
                                                 (qa, qb, kv, start, ln, o), 1.0, ATT.mla_attention_ref, SM_SCALE)
            row["pass"] = bool(row["small_err"] < PASS_ERR and row.get("full_err", 0.0) < PASS_ERR)
        except Exception as e:  # noqa: BLE001 - a kernel that fails is recorded
            row["error"] = R11.error_lines(e)
        out["rows"].append(row)
        R11.dump(a.json, out)
        if "ms" in row:
            print(f"{name:30s} {row['ms']:.4f} ms {row['gbs']:6.0f} GB/s {row['tflops']:4.0f} TFLOP/s "
                  f"({row['method']}) err small {row['small_err']:.2e} full {row.get('full_err')} "
                  f"pass {row.get('pass')} first call {row['first_call_s']:.2f} s", flush=True)
        if "error" in row:
            print(f"{name:30s} FAILED\n{row['error']}", flush=True)
    del ql, qp, kv, start, ln, o, q_one
    torch.cuda.empty_cache()
    out["module"] = module_rows(a, bench, out) if a.module else []
    print("\nsummary (GB/s = cache + q + out bytes / time, target 2500; copy = read + write)")
    for r in out["rows"]:
        if "ms" in r:
            print(f"  {r['kernel']:30s} {r['ms']:.4f} ms {r['gbs']:6.0f} GB/s {r['tflops']:4.0f} TFLOP/s "
                  f"= {r['gbs'] / copy_gbs:.2f} of the copy, pass {r.get('pass')}")
    for m in out["module"]:
        print("  module", json.dumps(m))
    R11.dump(a.json, out)
    return 0


def module_rows(a, bench, out) -> list:
    """The whole MLA generation module (one layer, bf16 GEMMs and cache, CUDA graph, L2 flushed) with the
    FlashInfer fa3 page-64 decode and with FlashMLA (collector wiring: DENSE_IMPL, page padding,
    transposed out), and their outputs compared."""
    import torch
    from collector.kernels import fi_mla
    from collector.kernels import mla_attn as ATT
    from collector.modules import AttentionModule
    rows, outs = [], {}
    fi_mla.CONFIG.update(backend="fa3", page=64)
    impls = ["flashmla"] + (["flashinfer"] if not out["env"]["flashinfer"].startswith("not importable") else [])
    m = AttentionModule("mla", a.heads, "bfloat16", "bfloat16")
    for impl in impls:
        step = None
        try:
            ATT.DENSE_IMPL = impl
            step = m.prepare_generation(a.batch, a.kv_len)
            outs[impl] = step.run().float()
            ms = bench.time(step.run, target_ms=30, min_samples=10, max_samples=20).median_ms
            row = dict(decode=impl, batch=a.batch, kv_len=a.kv_len, heads=a.heads, ms=ms)
        except Exception as e:  # noqa: BLE001
            row = dict(decode=impl, error=R11.error_lines(e))
        rows.append(row)
        print("module", json.dumps(row), flush=True)
        del step
        torch.cuda.empty_cache()
    ATT.DENSE_IMPL = "decode"
    if len(outs) == 2:
        d = ((outs["flashmla"] - outs["flashinfer"]).norm() / outs["flashinfer"].norm()).item()
        rows.append(dict(rel_diff_flashmla_vs_flashinfer=d))
        print(f"module: output rel diff FlashMLA vs FlashInfer {d:.2e}", flush=True)
    return rows


def big_inputs(b, L, H, g):
    """decode_bench.big_inputs for a bf16 cache: request t reads rows t L .. (t + 1) L (page-aligned)."""
    import decode_bench as DB
    import torch
    return DB.big_inputs(b, L, H, torch.bfloat16, g)


if __name__ == "__main__":
    sys.exit(main())
