"""perfwh generation modules vs TensorRT-LLM's published tables, same card, shared shapes.

Reads the collector's raw CSV logs (<root>/<system>/perfwh/<version>/<table>*.txt)
and aiconfigurator-core's TensorRT-LLM module tables for the same system, joins
them on (heads, batch, kv_len, gemm_type, kv_cache_dtype) and prints the median
(p10-p90) of perfwh / TensorRT-LLM per op, plus the b=64 kv_len=32768 H=128 rows.

    python benchmarks/generation_vs_trtllm.py ROOT --system h100_sxm --version 0.2
    python benchmarks/generation_vs_trtllm.py ROOT --ops mla_generation_kernel,mla_context_kernel

Kernel tables (attention alone): no GEMM precision in the key; the published
generation_mla_perf steps are 2^k - 1, joined to the collector's kv_len 2^k
(one row apart); context rows on (heads, batch, isl) at prefix 0.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

TABLES = {"mla_generation": ("mla", "mla_generation_module_perf"),
          "dsa_generation": ("sparse_attention", "dsa_generation_module_perf"),
          "mla_generation_kernel": ("mla", "generation_mla_perf"),
          "mla_context_kernel": ("mla", "context_mla_perf")}
MODULE_KEYS = ["num_heads", "batch_size", "step", "gemm_type", "kv_cache_dtype"]
KERNEL_KEYS = ["num_heads", "batch_size", "isl", "step", "kv_cache_dtype"]


def keys_of(op: str) -> list[str]:
    return KERNEL_KEYS if op.endswith("_kernel") else MODULE_KEYS


def trtllm_table(system: str, op: str) -> pl.DataFrame | None:
    try:
        import aiconfigurator_core
    except ImportError:
        return None
    sub, name = TABLES[op]
    base = Path(aiconfigurator_core.__file__).parent / "systems" / "data" / system / sub / "trtllm"
    files = sorted(base.glob(f"1.3.0rc20/{name}.parquet"))
    if not files:
        return None
    d = pl.read_parquet(files[0])
    if "model" in d.columns and op == "dsa_generation":
        d = d.filter(pl.col("model") == "deepseek-ai/DeepSeek-V3.2")
    if op == "mla_generation_kernel":
        d = d.with_columns(pl.col("step") + 1)
    return d.group_by(keys_of(op)).agg(pl.col("latency").median().alias("trt_ms"))


def perfwh_table(root: Path, system: str, version: str, op: str) -> pl.DataFrame:
    files = sorted((root / system / "perfwh" / version).glob(f"{TABLES[op][1]}*.txt"))
    if not files:
        return pl.DataFrame()
    d = pl.concat([pl.read_csv(f) for f in files], how="vertical_relaxed")
    return d.group_by(keys_of(op)).agg(pl.col("latency").median().alias("perfwh_ms"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="raw-log root (holds <system>/perfwh/<version>/)")
    ap.add_argument("--system", default="h100_sxm")
    ap.add_argument("--version", default="0.2")
    ap.add_argument("--ops", default="mla_generation,dsa_generation")
    a = ap.parse_args(argv)
    for op in a.ops.split(","):
        trt = trtllm_table(a.system, op)
        if trt is None:
            print(f"{op}: no TensorRT-LLM table for {a.system} (aiconfigurator-core not installed?)")
            continue
        ours = perfwh_table(a.root, a.system, a.version, op)
        if ours.is_empty():
            print(f"{op}: no perfwh rows under {a.root}/{a.system}/perfwh/{a.version}")
            continue
        KEYS = keys_of(op)
        j = ours.join(trt, on=KEYS).with_columns(ratio=pl.col("perfwh_ms") / pl.col("trt_ms"))
        q = j["ratio"].quantile
        print(f"{op} {a.system} v{a.version}: median perfwh/TRT-LLM {j['ratio'].median():.2f} "
              f"(p10-p90 {q(0.1):.2f}-{q(0.9):.2f}, {j.height} shared shapes)")
        for kv in j["kv_cache_dtype"].unique().sort():
            s = j.filter(pl.col("kv_cache_dtype") == kv)["ratio"]
            print(f"  kv {kv}: median {s.median():.2f} ({s.len()} shapes)")
        if op == "mla_context_kernel":
            big = j.filter((pl.col("num_heads") == 128) & (pl.col("batch_size") == 1) & (pl.col("isl") == 16384))
            for r in big.iter_rows(named=True):
                print(f"  H=128 b=1 isl=16384: perfwh {r['perfwh_ms']:.3f} ms, TRT-LLM {r['trt_ms']:.3f} ms, "
                      f"ratio {r['ratio']:.2f}")
            continue
        big = j.filter((pl.col("num_heads") == 128) & (pl.col("batch_size") == 64) & (pl.col("step") == 32768))
        for r in big.sort(KEYS).iter_rows(named=True):
            print(f"  H=128 b=64 kv_len=32768 {r.get('gemm_type', 'kernel')}/{r['kv_cache_dtype']}: "
                  f"perfwh {r['perfwh_ms']:.3f} ms, "
                  f"TRT-LLM {r['trt_ms']:.3f} ms, ratio {r['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
