"""Small synthetic perf tables for estimator tests (no shared data needed).

Latencies follow a known calibrated SOL times a known smooth ratio, so tests
can check interpolation and extrapolation by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from estimator.physics import sol
from estimator.physics.calibrate import CalibrationParams, calibrated_ms
from estimator.slices import model_for
from estimator.physics.specs import load_system

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "aiconfigurator"
TRTLLM_H200 = SHARED_DATA / "h200_sxm" / "trtllm"

PARAMS = CalibrationParams(eff={g: (0.5, 0.6) for g in sol.GROUPS}, overhead_ms=0.05, combine_p=1.0)
BATCHES = (1, 2, 4, 8)
SEQS = (16, 64, 256, 1024)
HEADS = (32, 64, 128)
ARCH = {"dsa": "DeepseekV32ForCausalLM", "mla": "DeepseekV3ForCausalLM"}
MODEL = {"dsa": "deepseek-ai/DeepSeek-V3.2", "mla": "deepseek-ai/DeepSeek-V3"}


def ratio_pattern(batch, seq, heads) -> float:
    """log2(measured / SOL) of the synthetic data: linear in log2 batch and log2 seq."""
    return 0.05 * math.log2(batch) + 0.02 * math.log2(seq) + 0.01 * math.log2(heads)


def synthetic_points(ops=("dsa_context", "dsa_generation", "mla_context", "mla_generation"),
                     gemm_types=("bfloat16",), kv_dtypes=("bfloat16",), drop=()) -> pl.DataFrame:
    """Perf points (PERF_POINT_SCHEMA-like) on the BATCHES x SEQS x HEADS grid; `drop` lists
    (op, heads, batch, seq) cells to leave out."""
    rows = []
    system = load_system("h200_sxm")
    for op in ops:
        fam = op.split("_")[0]
        ctx = "context" in op
        model = model_for(op, ARCH[fam])
        for gemm in gemm_types:
            for kv in kv_dtypes:
                for h in HEADS:
                    for b in BATCHES:
                        for s in SEQS:
                            if (op, h, b, s) in drop:
                                continue
                            ks = sol.kernels(op, model, batch=b, isl=s if ctx else 1, prefix=0,
                                             kv_len=0 if ctx else s, num_heads=h, gemm_type=gemm,
                                             kv_cache_dtype=kv)
                            lat = calibrated_ms(ks, system, PARAMS) * 2 ** ratio_pattern(b, s, h)
                            rows.append(dict(system="h200_sxm", framework="trtllm", version="1.0", op=op,
                                             kernel_source="default", model=MODEL[fam], architecture=ARCH[fam],
                                             attn_dtype="bfloat16", kv_cache_dtype=kv, gemm_type=gemm,
                                             num_heads=h, batch_size=b, isl=s if ctx else 1,
                                             prefix=0 if ctx else None, kv_len=None if ctx else s, tp_size=1,
                                             latency_ms=lat, n=1, latency_min_ms=lat, latency_max_ms=lat,
                                             spread_rel=0.0))
    ints = {c: pl.Int32 for c in ("num_heads", "batch_size", "isl", "prefix", "kv_len", "tp_size")}
    return pl.DataFrame(rows, schema_overrides={**ints, "n": pl.UInt32})


def fixed_calibration(points: pl.DataFrame) -> pl.DataFrame:
    """A calibration frame holding PARAMS for every (system, framework, version, op, kernel_source)."""
    from estimator.physics.calibrate import CALIBRATION_SCHEMA, METHOD

    rows = []
    for key in points.select("system", "framework", "version", "op", "kernel_source").unique().iter_rows():
        base = dict(zip(("system", "framework", "version", "op", "kernel_source"), key), n_points=1,
                    fit_median_pct=0.0, fit_p90_pct=0.0, method=METHOD)
        for g, (ef, eb) in PARAMS.eff.items():
            rows.append({**base, "param": "eff_compute", "group": g, "value": ef})
            rows.append({**base, "param": "eff_bandwidth", "group": g, "value": eb})
        rows.append({**base, "param": "overhead_ms", "group": "", "value": PARAMS.overhead_ms})
        rows.append({**base, "param": "combine_p", "group": "", "value": PARAMS.combine_p})
    return pl.DataFrame(rows, schema=CALIBRATION_SCHEMA)


def write_collector_csv(points: pl.DataFrame, folder: Path, device: str = "NVIDIA H200") -> list[Path]:
    """Write points as collector raw logs (<op>_module_perf.txt) for ingest tests; `device` names the GPU
    (the system column comes from it, not from the folder)."""
    stems = {"dsa_context": "dsa_context_module_perf", "dsa_generation": "dsa_generation_module_perf",
             "mla_context": "mla_context_module_perf", "mla_generation": "mla_generation_module_perf"}
    out = []
    folder.mkdir(parents=True, exist_ok=True)
    for op, sub in points.group_by("op", maintain_order=True):
        op = op[0]
        ctx = "context" in op
        frame = sub.select(
            pl.lit("TRTLLM").alias("framework"), pl.col("version"), pl.lit(device).alias("device"),
            pl.lit(f"{op}_module").alias("op_name"), "kernel_source", "model", "architecture",
            pl.col("attn_dtype").alias("mla_dtype"), "kv_cache_dtype", "gemm_type", "num_heads", "batch_size",
            "isl", "tp_size", (pl.col("prefix") if ctx else pl.col("kv_len")).alias("step"),
            pl.col("latency_ms").alias("latency"))
        path = folder / f"{stems[op]}.txt"
        frame.write_csv(path)
        out.append(path)
    return out


@pytest.fixture(scope="session")
def points() -> pl.DataFrame:
    return synthetic_points(drop={("dsa_context", 64, 4, 256)})


@pytest.fixture(scope="session")
def db(points):
    from estimator.lookup.database import PerfDatabase
    from estimator.grids.build import build_grids

    cal = fixed_calibration(points)
    return PerfDatabase(calibration=cal, grids=build_grids(points, cal))


def two_by_two_group():
    """A GroupGrids of one 2 x 2 slice at 64 heads, prefix 0: batch 2/4, seq 64/128, log2 ratios
    0, 0.2 / 1, 1.2, every cell measured, raw-batch interpolation (batch_power 1)."""
    from estimator.grids.build import SliceGrid
    from estimator.lookup.grids import GroupGrids, stack_group

    batch, seq = np.array([2, 4]), np.array([64, 128])
    ratio = np.array([[0.0, 0.2], [1.0, 1.2]])
    sg = SliceGrid(batch, seq, np.log2(batch), np.log2(seq), ratio, np.zeros((2, 2), np.int8), np.ones((2, 2)),
                   0.0, np.full((2, 2), np.nan), batch_power=1.0, seq_power=0.0)
    grp = GroupGrids(("k",), np.array([64]), np.array([0]), {(64, 0): sg})
    grp.stacked = stack_group(grp)
    return grp


def sol_of(op, b, s, h, system="h200_sxm", **kw) -> float:
    fam = op.split("_")[0]
    ctx = "context" in op
    ks = sol.kernels(op, model_for(op, ARCH[fam]), batch=b, isl=s if ctx else 1, prefix=kw.get("prefix", 0),
                     kv_len=0 if ctx else s, num_heads=h, gemm_type=kw.get("gemm_type", "bfloat16"),
                     kv_cache_dtype=kw.get("kv_cache_dtype", "bfloat16"), index_topk=kw.get("index_topk"))
    return calibrated_ms(ks, load_system(system), PARAMS)


__all__ = ["np"]
