"""Leave-one-system-out transfer protocol (issue 11, item 5), prototype.

For TARGET from SOURCE, per (framework, version) present on both and per module op:
every TARGET row is removed, the calibrated SOL is fitted on SOURCE only, and every
TARGET module point whose shape key (all key columns but `system`) was measured on
SOURCE too is predicted by
  model     the physics transfer of benchmarks/transfer_model.py,
  copy      SOURCE's latency of the same shape (baseline a),
  roofline  SOURCE's latency * raw SOL(target) / raw SOL(source) (baseline b).
Reports median / p90 absolute % error per op, and the coverage of an 80% interval
whose width is fitted on the residuals of the *other* pairs (leave-one-pair-out).

    .venv/bin/perfwh ingest --from-aiconfigurator --system h100_sxm --system h200_sxm \
        --system b200_sxm --system gb200 --home /tmp/transfer-wh
    .venv/bin/python benchmarks/transfer_protocol.py --home /tmp/transfer-wh
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from transfer_model import fit_interval, fit_source, interval, system_spec, transfer_frame  # noqa: E402

from estimator.calibrate import single_blas_thread  # noqa: E402
from estimator.common import DTYPE_BYTES  # noqa: E402
from warehouse.read import perf_points_from, scan_measurements  # noqa: E402
from warehouse.schema import KEY_COLUMNS  # noqa: E402

MODULE_OPS = ("dsa_context", "dsa_generation", "mla_context", "mla_generation")
PAIRS = (("h100_sxm", "h200_sxm"), ("h200_sxm", "h100_sxm"), ("b200_sxm", "h200_sxm"), ("gb200", "b200_sxm"))
SHAPE_KEYS = [c for c in KEY_COLUMNS if c != "system"]


def load_points(home, systems) -> pl.DataFrame:
    """Module points of `systems`; rows whose dtype the SOL model has no byte width for (nvfp4) are left out."""
    known = list(DTYPE_BYTES)
    lf = scan_measurements(home).filter(pl.col("system").is_in(list(systems)) & pl.col("op").is_in(MODULE_OPS))
    pts = perf_points_from(lf)
    ok = pl.col("gemm_type").fill_null("bfloat16").is_in(known) & pl.col("kv_cache_dtype").is_in(known)
    skipped = pts.filter(~ok).group_by("system", "gemm_type", "kv_cache_dtype").len()
    for row in skipped.iter_rows(named=True):
        print(f"skipped {row['len']} {row['system']} points: gemm {row['gemm_type']}, kv {row['kv_cache_dtype']} "
              "(no SOL byte width)", file=sys.stderr)
    return pts.filter(ok)


def run_pair(points: pl.DataFrame, target: str, source: str, overhead_scale: float = 1.0) -> pl.DataFrame:
    """Per-point predictions of every module point of `target` that `source` measured too."""
    src_spec, tgt_spec = system_spec(source), system_spec(target)
    src_all = points.filter(pl.col("system") == source)
    tgt_all = points.filter(pl.col("system") == target)
    common = (src_all.select("framework", "version").unique()
              .join(tgt_all.select("framework", "version").unique(), on=["framework", "version"]))
    out = []
    for fw, ver in common.sort("framework", "version").iter_rows():
        for op in MODULE_OPS:
            for ks in src_all.filter((pl.col("framework") == fw) & (pl.col("version") == ver) & (pl.col("op") == op))[
                    "kernel_source"].unique().to_list():
                src = src_all.filter((pl.col("framework") == fw) & (pl.col("version") == ver) & (pl.col("op") == op)
                                     & (pl.col("kernel_source") == ks))
                # TARGET rows are never seen by the fit: only their shape keys and (for scoring) latency.
                tgt = tgt_all.filter((pl.col("framework") == fw) & (pl.col("version") == ver) & (pl.col("op") == op)
                                     & (pl.col("kernel_source") == ks))
                if src.height < 10 or tgt.height == 0:
                    continue
                t0 = time.perf_counter()
                params = fit_source(src, src_spec)
                print(f"{target}<-{source} {fw} {ver} {op} {ks}: fit {src.height} pts {time.perf_counter()-t0:.1f} s",
                      file=sys.stderr)
                pairs = tgt.select(*SHAPE_KEYS, pl.col("latency_ms").alias("latency_tgt")).join(
                    src.select(*SHAPE_KEYS, pl.col("latency_ms").alias("latency_src")), on=SHAPE_KEYS,
                    nulls_equal=True)
                if pairs.height == 0:
                    continue
                res = transfer_frame(pairs, params, src_spec, tgt_spec, overhead_scale)
                out.append(res.with_columns(pl.lit(target).alias("target"), pl.lit(source).alias("source"),
                                            pl.lit(params.overhead_ms).alias("src_overhead_ms")))
    return pl.concat(out, how="diagonal") if out else pl.DataFrame()


def add_intervals(res: pl.DataFrame) -> pl.DataFrame:
    """80% interval per point, its width fitted on the other pairs' residuals of the same op."""
    res = res.with_columns((pl.col("pred_model") / pl.col("latency_tgt")).log().abs().alias("abs_log_err"))
    parts = []
    for (tgt, src, op), sub in res.group_by("target", "source", "op", maintain_order=True):
        others = res.filter((pl.col("op") == op) & ~((pl.col("target") == tgt) & (pl.col("source") == src)))
        if others.height == 0:
            others = sub  # only one pair for this op: in-sample (flagged in the report)
        a, b = fit_interval(others["moved"].to_numpy(), others["abs_log_err"].to_numpy())
        lo, hi = interval(sub["pred_model"].to_numpy(), sub["moved"].to_numpy(), a, b)
        y = sub["latency_tgt"].to_numpy()
        parts.append(sub.with_columns(pl.Series("lo", lo), pl.Series("hi", hi),
                                      pl.Series("covered", (y >= lo) & (y <= hi)),
                                      pl.lit(a).alias("w_a"), pl.lit(b).alias("w_b")))
    return pl.concat(parts)


def summarize(res: pl.DataFrame) -> pl.DataFrame:
    def err(col):
        return ((pl.col(col) / pl.col("latency_tgt") - 1).abs() * 100)

    return (res.group_by("target", "source", "framework", "version", "op", maintain_order=True)
            .agg(pl.len().alias("n"),
                 err("pred_model").median().alias("model_med"), err("pred_model").quantile(0.9).alias("model_p90"),
                 err("pred_copy").median().alias("copy_med"), err("pred_copy").quantile(0.9).alias("copy_p90"),
                 err("pred_roofline").median().alias("roof_med"), err("pred_roofline").quantile(0.9).alias("roof_p90"),
                 (pl.col("covered").mean() * 100).alias("cover80"),
                 pl.col("frac_bandwidth").median().alias("bw_share"))
            .with_columns(((pl.col("model_med") < pl.col("copy_med")) & (pl.col("model_med") < pl.col("roof_med"))
                           & (pl.col("model_p90") < pl.col("copy_p90")) & (pl.col("model_p90") < pl.col("roof_p90")))
                          .alias("beats_both"))
            .sort("target", "source", "framework", "version", "op"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default="/tmp/transfer-wh")
    ap.add_argument("--overhead-scale", type=float, default=1.0,
                    help="target overhead = source fitted overhead * this (default 1: host-side, does not move)")
    ap.add_argument("--pair", action="append", help="TARGET:SOURCE (repeatable); default the four of issue 11")
    ap.add_argument("--csv", help="write the summary table here")
    args = ap.parse_args(argv)
    pairs = [tuple(p.split(":")) for p in args.pair] if args.pair else PAIRS
    systems = {s for p in pairs for s in p}
    try:
        for s in systems:
            system_spec(s)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    points = load_points(args.home, systems)
    with single_blas_thread():
        res = pl.concat([r for t, s in pairs if (r := run_pair(points, t, s, args.overhead_scale)).height],
                        how="diagonal")
    table = summarize(add_intervals(res))
    with pl.Config(tbl_rows=200, tbl_cols=20, float_precision=1, tbl_width_chars=250):
        print(table)
    if args.csv:
        table.write_csv(args.csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
