"""How much of the transfer error is the source's measurement noise (issue 11).

Per pair, backend and op of the leave-one-system-out protocol
(estimator/accuracy/transfer.py):

* transfer error (median / p90 %) with the source grid as measured and with
  its slow spikes cleaned (estimator/grids/anchors.py, what PerfDatabase serves);
* each system's own roughness: |measured - median of its four grid neighbours|
  (median / p90 %) over its interior measured cells. A cell's repeat noise is
  not in the tables, so this local scatter stands in for it: the target's is a
  floor no transfer can beat, the source's is copied by every transfer;
* the share of the source's measured cells cleaned as spikes.

    python benchmarks/transfer_noise.py --home /tmp/transfer-wh [--pair h100_sxm:h200_sxm] [--backend trtllm]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from estimator.accuracy.transfer import MODULE_OPS, modelled, transfer_protocol  # noqa: E402
from estimator.grids.anchors import local_deviation, spike_count  # noqa: E402
from estimator.grids.build import build_grids  # noqa: E402
from estimator.physics.calibrate import calibrate, single_blas_thread  # noqa: E402
from warehouse.read import perf_points_from, scan_measurements  # noqa: E402

PAIRS = (("h100_sxm", "h200_sxm"), ("h200_sxm", "h100_sxm"), ("b200_sxm", "h200_sxm"), ("gb200", "b200_sxm"))
KEYS = ["framework", "version", "op"]


def _pct(expr: pl.Expr) -> pl.Expr:
    return (2.0 ** expr.abs() - 1.0) * 100.0


def roughness(points: pl.DataFrame, system: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(median / p90 % local scatter per backend / version / op, the system's grids)."""
    pts = points.filter(pl.col("system") == system)
    with single_blas_thread():
        grids = build_grids(pts, calibrate(pts))
    dev = local_deviation(grids).group_by(KEYS).agg(
        _pct(pl.col("dev_log2")).median().alias("med"), _pct(pl.col("dev_log2")).quantile(0.9).alias("p90"))
    return dev, grids


def errors(rows: pl.DataFrame, name: str) -> pl.DataFrame:
    err = ((pl.col("pred_ms") / pl.col("measured_ms") - 1).abs() * 100)
    return rows.group_by(KEYS).agg(err.median().alias(f"{name}_med"), err.quantile(0.9).alias(f"{name}_p90"))


def pair_table(points: pl.DataFrame, target: str, source: str) -> pl.DataFrame:
    raw = errors(transfer_protocol(points, target, source, spike_log2=None), "raw")
    clean = errors(transfer_protocol(points, target, source), "clean")
    src, src_grids = roughness(points, source)
    tgt, _ = roughness(points, target)
    spikes = pl.DataFrame([(*k, spike_count(g), g["measured_log2_ratio"].is_not_null().sum())
                           for k, g in src_grids.group_by(KEYS)],
                          schema={"framework": pl.String, "version": pl.String, "op": pl.String,
                                  "spikes": pl.Int64, "measured": pl.Int64}, orient="row")
    return (raw.join(clean, on=KEYS).join(src.rename({"med": "src_med", "p90": "src_p90"}), on=KEYS, how="left")
            .join(tgt.rename({"med": "tgt_med", "p90": "tgt_p90"}), on=KEYS, how="left")
            .join(spikes, on=KEYS, how="left")
            .with_columns(pl.lit(f"{target} <- {source}").alias("pair")).sort(KEYS))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--pair", action="append", help="TARGET:SOURCE (repeatable); default the four of issue 11")
    ap.add_argument("--backend", help="only this framework")
    args = ap.parse_args(argv)
    pairs = [tuple(p.split(":")) for p in args.pair] if args.pair else PAIRS
    systems = sorted({s for p in pairs for s in p})
    scan = scan_measurements(args.home).filter(pl.col("system").is_in(systems) & pl.col("op").is_in(list(MODULE_OPS)))
    if args.backend:
        scan = scan.filter(pl.col("framework") == args.backend)
    points = modelled(perf_points_from(scan))
    print("| target <- source | backend | version | op | transfer raw med / p90 % | cleaned med / p90 % | "
          "source scatter med / p90 % | target scatter med / p90 % | source cells cleaned |")
    print("|---|---|---|---|---|---|---|---|---:|")
    for target, source in pairs:
        for r in pair_table(points, target, source).iter_rows(named=True):
            cells = "-" if r["spikes"] is None else f"{r['spikes']}/{r['measured']}"
            sc = "-" if r["src_med"] is None else f"{r['src_med']:.1f} / {r['src_p90']:.1f}"
            tc = "-" if r["tgt_med"] is None else f"{r['tgt_med']:.1f} / {r['tgt_p90']:.1f}"
            print(f"| {r['pair']} | {r['framework']} | {r['version']} | {r['op']} | {r['raw_med']:.1f} / "
                  f"{r['raw_p90']:.1f} | {r['clean_med']:.1f} / {r['clean_p90']:.1f} | {sc} | {tc} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
