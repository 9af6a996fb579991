"""Bias of extrapolated DSA decode answers, per backend, kernel source and axis, on a warehouse.

    python benchmarks/decode_extrapolation_bias.py --home WAREHOUSE
        [--systems h200_sxm h100_sxm b200_sxm] [--backends sglang trtllm vllm] [--op dsa_generation]

Two tables:

* held-out errors: the interval fit's own folds (`interval_fit.cv_residuals`: GEB holds out
  the largest batch row with the middle and largest sequence lines, E2 the two largest sequence
  lines), the answers whose provenance is `extrapolated`, split by the axis they extrapolate
  along (batch: the held-out point sits on the op's largest batch row; sequence: otherwise).
  Signed error = estimate / measured - 1, so > 0 is an overestimate.
* batch steps (`--below-step` drops the rows from the first step above STEP_BOUND on and
  measures the held-out errors again, within one timing regime), and the rows past the first
  step against the estimate of a model fitted on the rows below it (`past_step`): per kernel source, the median over kv_len <= 1024 and slices of the measured
  latency at each batch over that at the previous (halved) batch. Physics bounds such a step by
  about 2 (double the rows, at most double the work; weights are read once); a step far above 2
  followed by one near 1 is a change of timing regime, not of the kernels' work.

Why: SGLang's decode tables are timed from CUDA-graph replays up to SGLang's CUDA-graph
capture limit (cuda_graph_max_bs: 256 on the H100 / H200 runs, 512 on B200) and eagerly past
it, where the host's launch of each kernel sets the latency. The largest batch row is then a
different regime from the rows the grid extrapolates from (README, "Extrapolated SGLang
decode answers").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


STEP_BOUND = 2.5  # a doubled batch at most doubles the work: a larger latency step is a change of regime


def latest(slices: pl.DataFrame, system: str, backend: str) -> str | None:
    from estimator.lookup.query import _version_key

    mine = slices.filter((pl.col("system") == system) & (pl.col("framework") == backend))
    return sorted(mine["version"].unique().to_list(), key=_version_key)[-1] if mine.height else None


def modelled(points: pl.DataFrame) -> pl.DataFrame:
    """Rows the SOL model can price (nvfp4 GEMMs are not modelled)."""
    return points.filter(~pl.col("gemm_type").fill_null("").str.contains("nvfp4"))


def held_out(points: pl.DataFrame, op: str) -> pl.DataFrame:
    from estimator.accuracy.interval_fit import cv_residuals

    r = cv_residuals(points, tables=(op,), seed=0).filter(
        (pl.col("method") == "interp") & (pl.col("provenance") == "extrapolated"))
    top = points.filter(pl.col("op") == op)["batch_size"].max()
    return r.with_columns(pl.when(pl.col("batch_size") == top).then(pl.lit("batch")).otherwise(pl.lit("sequence"))
                          .alias("axis"), ((2.0 ** -pl.col("resid") - 1.0) * 100.0).alias("signed_pct"))


def batch_steps(points: pl.DataFrame, op: str) -> pl.DataFrame:
    short = points.filter((pl.col("op") == op) & (pl.col("kv_len") <= 1024))
    keys = ["kernel_source", "architecture", "kv_cache_dtype", "gemm_type", "num_heads", "kv_len"]
    steps = short.sort([*keys, "batch_size"]).with_columns(
        (pl.col("latency_ms") / pl.col("latency_ms").shift(1).over(keys)).alias("step"),
        (pl.col("batch_size") / pl.col("batch_size").shift(1).over(keys)).alias("bratio"))
    steps = steps.filter(pl.col("bratio") == 2.0)
    return steps.group_by("kernel_source", "batch_size").agg(pl.col("step").median().round(2)).pivot(
        on="batch_size", index="kernel_source", values="step", sort_columns=True).sort("kernel_source")


def first_step(points: pl.DataFrame, op: str, bound: float = STEP_BOUND) -> int | None:
    """The smallest batch whose median step (`batch_steps`, over every kernel source) exceeds
    `bound`: the first row of another timing regime; None where no step does."""
    steps = batch_steps(points, op).drop("kernel_source")
    over = [int(c) for c in steps.columns if (steps[c].drop_nulls() > bound).any()]
    return min(over) if over else None


def past_step(points: pl.DataFrame, op: str, step: int) -> pl.DataFrame:
    """The rows from batch `step` on against the estimate of a model fitted on the rows below it
    (one timing regime): per kernel source and batch, the measured latency (smallest, median)
    and measured / estimate. A host-bound floor reads as a latency flat in batch that the
    estimate rises towards; where the estimate is above the floor, measured / estimate near 1."""
    from estimator.accuracy.protocol import _with_seq, predict

    pts = _with_seq(points.filter(pl.col("op") == op))
    r = predict(pts.filter(pl.col("batch_size") < step), pts.filter(pl.col("batch_size") >= step))
    r = r.with_columns((pl.col("latency_ms") / pl.col("pred_ms")).alias("ratio"),
                       (pl.col("pred_ms") > 1.5 * pl.col("latency_ms").min().over("kernel_source", "batch_size"))
                       .alias("above_floor"))
    return r.group_by("kernel_source", "batch_size").agg(
        pl.len().alias("n"), pl.col("latency_ms").min().round(3).alias("measured min ms"),
        pl.col("latency_ms").median().round(3).alias("measured median ms"),
        pl.col("pred_ms").median().round(3).alias("below-step estimate ms"),
        pl.col("ratio").median().round(2).alias("measured / estimate"),
        pl.col("above_floor").sum().alias("n estimate > 1.5 floor"),
        pl.col("ratio").filter(pl.col("above_floor")).median().round(2).alias("their measured / estimate"),
    ).sort("kernel_source", "batch_size")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", required=True)
    p.add_argument("--systems", nargs="+", default=["h200_sxm", "h100_sxm", "b200_sxm"])
    p.add_argument("--backends", nargs="+", default=["sglang", "trtllm", "vllm"])
    p.add_argument("--op", default="dsa_generation")
    p.add_argument("--below-step", action="store_true",
                   help=f"drop the rows from the first batch step above {STEP_BOUND} on (`first_step`): "
                        "the held-out folds then extrapolate within one timing regime")
    args = p.parse_args()
    from warehouse.read import available_slices, read_perf_points

    pl.Config.set_tbl_rows(200), pl.Config.set_tbl_width_chars(200), pl.Config.set_fmt_str_lengths(40)
    pl.Config.set_tbl_cols(20), pl.Config.set_tbl_hide_dataframe_shape(True)
    slices = available_slices(args.home).filter(pl.col("op") == args.op)
    frames = []
    for system in args.systems:
        for backend in args.backends:
            version = latest(slices, system, backend)
            if version is None:
                continue
            points = modelled(read_perf_points(args.home, system=system, framework=backend, version=version))
            step = first_step(points, args.op)
            if backend == "sglang" and step is not None:
                print(f"\n{system} / {backend} {version}: rows at batch >= {step} against a model fitted below it")
                print(past_step(points, args.op, step))
            if args.below_step and step is not None:
                print(f"{system} / {backend} {version}: rows at batch >= {step} dropped (first step above {STEP_BOUND})")
                points = points.filter(~((pl.col("op") == args.op) & (pl.col("batch_size") >= step)))
            frames.append(held_out(points, args.op).with_columns(
                pl.lit(system).alias("system"), pl.lit(f"{backend} {version}").alias("backend")))
            if backend == "sglang":
                print(f"\n{system} / {backend} {version}: {args.op} latency at batch b over batch b/2 "
                      f"(median over kv_len <= 1024 and slices)")
                print(batch_steps(points, args.op))
    r = pl.concat(frames, how="diagonal_relaxed")
    print(f"\nheld-out extrapolated {args.op} answers (folds GEB and E2, seed 0): signed % = estimate / measured - 1")
    print(r.group_by("system", "backend", "axis").agg(
        pl.len().alias("n"), pl.col("signed_pct").median().round(1).alias("median signed %"),
        pl.col("signed_pct").abs().median().round(1).alias("median |%|"),
        pl.col("signed_pct").abs().quantile(0.9).round(1).alias("p90 |%|")).sort("system", "backend", "axis"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
