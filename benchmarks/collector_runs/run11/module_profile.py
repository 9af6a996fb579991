"""Where the MLA generation module's time goes at small shapes (issue 16 item 3: the module ratio).

For each (heads, batch, kv_len, gemm, cache): the CUDA-graph replay time the collector measures, and a
torch.profiler breakdown of one eager call (kernel name, count, GPU us per call), so the fixed cost of
the launches around the decode can be told from the decode itself. ``--prologue both`` profiles every
shape with the eager generation prologue and with the fused one (kernels/prologue.py), side by side.

    python benchmarks/collector_runs/run11/module_profile.py --configs CONFIGS.json --json out.json \
        [--prologue eager|fused|both]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

SHAPES = [(128, 1, 1024), (16, 1, 1024), (128, 8, 4096), (128, 64, 32768)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=Path, required=True)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--prologue", choices=("eager", "fused", "both"), default=None,
                    help="generation prologue (default: the configs' own, else eager)")
    a = ap.parse_args(argv)
    import torch
    from torch.profiler import ProfilerActivity, profile

    from collector import modules as MOD
    from collector.measure import apply_configs
    from collector.modules import AttentionModule
    from collector.timing import Bencher

    apply_configs(json.loads(a.configs.read_text()))
    prologues = ("eager", "fused") if a.prologue == "both" else (a.prologue or MOD.PROLOGUE,)
    bench, rows = Bencher(), []
    for gemm, cache in (("bfloat16", "bfloat16"), ("fp8_block", "fp8")):
        for (H, b, kv), prologue in ((s, p) for s in SHAPES for p in prologues):
            MOD.PROLOGUE = prologue
            mod = AttentionModule("mla", H, gemm, cache)
            st = mod.prepare_generation(b, kv)
            graph_ms = bench.time(st.run, target_ms=20).median_ms
            for _ in range(3):
                st.run()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(a.reps):
                    st.run()
                torch.cuda.synchronize()
            k = defaultdict(lambda: [0, 0.0])
            for ev in prof.events():
                if ev.device_type.name == "CUDA":
                    k[ev.name][0] += 1
                    k[ev.name][1] += ev.device_time_total if hasattr(ev, "device_time_total") else ev.cuda_time_total
            kernels = sorted(([n[:90], c / a.reps, us / a.reps] for n, (c, us) in k.items()), key=lambda r: -r[2])
            row = dict(heads=H, batch=b, kv_len=kv, gemm=gemm, cache=cache, prologue=prologue,
                       graph_ms=graph_ms, launches=sum(r[1] for r in kernels), kernel_us=sum(r[2] for r in kernels), kernels=kernels)
            rows.append(row)
            print(f"H={H} b={b} kv={kv} {gemm}/{cache} {prologue}: graph {graph_ms * 1e3:.1f} us, "
                  f"{row['launches']:.0f} launches, kernels {row['kernel_us']:.1f} us", flush=True)
            for n, c, us in kernels[:30]:
                print(f"    {us:8.1f} us  x{c:4.1f}  {n}", flush=True)
            del mod, st
            torch.cuda.empty_cache()
            a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
