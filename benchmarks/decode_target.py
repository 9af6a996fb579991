"""What issue 16's decode-kernel target asks of the tensor cores, beside TensorRT-LLM's own kernel.

The target is an effective bandwidth (cache + q + out bytes / time) at b=64, kv_len 32768, 128 heads.
At 128 heads each cache row feeds 2 * 128 * (576 + 512) FLOP, so a bandwidth target is also a compute
target: this prints, per cache dtype, the time and TFLOP/s the target implies, the share of the
system's dense tensor peak (BF16, and FP8 for the FP8 cache) that needs, and what TensorRT-LLM
1.3.0rc20's attention kernel (aiconfigurator-core's ``generation_mla_perf`` table) reaches on the
same shape. Byte accounting as ``benchmarks/collector_runs/run11/flashinfer_mla.py`` (q and out bf16).

    python benchmarks/decode_target.py [--systems h100_sxm,h200_sxm] [--target-gbs 2500]

Needs aiconfigurator-core 0.12 importable (``pip install aiconfigurator-core==0.12.0``); exits 2 without.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.generation_vs_trtllm import trtllm_table  # noqa: E402
from estimator.physics.specs import load_system  # noqa: E402

B, L, H, D_LAT, D_PE = 64, 32768, 128, 512, 64
KV_BYTES = {"bfloat16": 2, "fp8": 1}


def shape_cost(kv_dtype: str) -> tuple[int, int]:
    """(bytes moved, FLOP) of one decode step of the target shape."""
    cache = B * L * (D_LAT + D_PE) * KV_BYTES[kv_dtype]
    q, out = B * H * (D_LAT + D_PE) * 2, B * H * D_LAT * 2
    flop = B * L * H * 2 * ((D_LAT + D_PE) + D_LAT)
    return cache + q + out, flop


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default="h100_sxm,h200_sxm")
    ap.add_argument("--target-gbs", type=float, default=2500.0, help="effective GB/s asked for (default 2500)")
    a = ap.parse_args(argv)
    if a.target_gbs <= 0:
        ap.error("--target-gbs must be > 0")
    try:
        specs = {system: load_system(system) for system in a.systems.split(",")}
    except ValueError as e:
        ap.error(str(e))
    for system, spec in specs.items():
        t = trtllm_table(system, "mla_generation_kernel")
        if t is None:
            print("decode_target: aiconfigurator-core 0.12 is not importable (pip install aiconfigurator-core==0.12.0)",
                  file=sys.stderr)
            return 2
        print(f"{system}: dense BF16 {spec.peak_bf16_flops_per_s / 1e12:.0f} TFLOP/s, "
              f"FP8 {spec.peak_fp8_flops_per_s / 1e12:.0f} TFLOP/s, HBM {spec.hbm_bytes_per_s / 1e12:.2f} TB/s")
        for kv in ("bfloat16", "fp8"):
            nbytes, flop = shape_cost(kv)
            need_ms = nbytes / (a.target_gbs * 1e9) * 1e3
            need_tf = flop / (need_ms * 1e-3) / 1e12
            row = t.filter((pl.col("num_heads") == H) & (pl.col("batch_size") == B) & (pl.col("step") == L)
                           & (pl.col("kv_cache_dtype") == kv))
            trt = (f"TensorRT-LLM {row['trt_ms'][0]:.3f} ms = {nbytes / row['trt_ms'][0] / 1e6:,.0f} GB/s, "
                   f"{flop / row['trt_ms'][0] / 1e9:,.0f} TFLOP/s" if row.height else "TensorRT-LLM: no row")
            print(f"  {kv:8s} {nbytes / 1e9:.3f} GB, {flop / 1e12:.1f} TFLOP ({flop / nbytes:.0f} FLOP/byte): "
                  f"{a.target_gbs:,.0f} GB/s needs <= {need_ms:.3f} ms = {need_tf:,.0f} TFLOP/s = "
                  f"{need_tf * 1e12 / spec.peak_bf16_flops_per_s:.0%} of dense BF16, "
                  f"{need_tf * 1e12 / spec.peak_fp8_flops_per_s:.0%} of dense FP8; {trt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
