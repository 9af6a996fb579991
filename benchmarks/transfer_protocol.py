"""Leave-one-system-out transfer table for the pairs of issue 11, and the cost of a transferred estimate.

Drives the library (estimator/accuracy/transfer.py, the same code `perfwh accuracy --transfer` runs): per
pair, every TARGET row is removed before calibration and grids, and TARGET's measured module
points are predicted from SOURCE's data beside (a) copying SOURCE's latency of the same shape and
(b) scaling it by the raw roofline ratio. Then times PerfDatabase(TARGET, from_system=SOURCE)
scalar estimates against native ones (needs a warehouse whose derived build succeeds).

    perfwh ingest --from-aiconfigurator --system h100_sxm --system h200_sxm --system b200_sxm \\
        --system gb200 --home /tmp/transfer-wh
    python benchmarks/transfer_protocol.py --home /tmp/transfer-wh [--csv table.csv]
    python benchmarks/transfer_protocol.py --speed-home /tmp/transfer-wh-h   # h100+h200 only
    python benchmarks/transfer_protocol.py --home /tmp/transfer-wh --intervals --write-intervals
    python benchmarks/transfer_protocol.py --home /tmp/transfer-wh --all-pairs --intervals --write-intervals

--all-pairs runs the protocol for every ordered pair of systems in the warehouse that share a
(backend, version) with module points (30 pairs for the six systems ingested as below), so that the
leave-one-system-out interval fit of any target still has pairs of its own GPU generation and across:

    perfwh ingest --from-aiconfigurator --system h100_sxm --system h200_sxm --system b200_sxm \\
        --system b300_sxm --system gb200 --system gb300 --home /tmp/transfer-wh

--intervals scores the 80% intervals of transferred answers leave-one-system-out
(estimator/accuracy/transfer_intervals.py); --write-intervals fits them on every pair and writes
derived/transfer_intervals.parquet (the DuckDB view `transfer_intervals`), which PerfDatabase
serves for transferred answers, and derived/transfer_overheads.parquet (launch overhead ratios
between launch classes, estimator/physics/transfer.py `class_overhead_ratios`), which moves a
transferred answer's overhead between GPU generations and host CPUs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from estimator.accuracy.transfer import format_transfer_table
from estimator.accuracy.transfer_intervals import loso_coverage, transfer_residuals
from estimator.derived import transfer_tables as transfer_fit  # noqa: E402

PAIRS = (("h100_sxm", "h200_sxm"), ("h200_sxm", "h100_sxm"), ("b200_sxm", "h200_sxm"), ("gb200", "b200_sxm"))


def all_pairs(home) -> list[tuple[str, str]]:
    """estimator.derived.transfer_tables.all_pairs (the CLI's `perfwh accuracy --fit-transfer-intervals` runs it too)."""
    return transfer_fit.all_pairs(home)


def table(home, pairs, overheads: bool = True) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(summary per pair / backend / version / op, every protocol row): estimator.derived.transfer_tables.protocol_rows."""
    return transfer_fit.protocol_rows(home, pairs, overheads=overheads)


def intervals(home, errors: pl.DataFrame, write: bool) -> None:
    """Leave-one-system-out coverage of transferred 80% intervals; with `write`, the table fitted on
    every pair goes to derived/transfer_intervals.parquet."""
    resid = transfer_residuals(errors)
    cov = loso_coverage(resid)
    pairs = sorted(set(resid.select("target", "from_system").iter_rows()))
    print(f"\nintervals fitted leave-one-system-out on {len(pairs)} pairs: "
          + ", ".join(f"{t}<-{s}" for t, s in pairs))
    print("\n| target <- source | backend | op | n | 80% interval coverage % | median width % |\n"
          "|---|---|---|---:|---:|---:|")
    for r in cov.iter_rows(named=True):
        print(f"| {r['target']} <- {r['from_system']} | {r['framework']} | {r['op']} | {r['n']} | "
              f"{r['coverage_pct']:.1f} | {r['median_width_pct']:.1f} |")
    if write:
        for path, n in transfer_fit.write_transfer_tables(home, errors).values():
            print(f"wrote {path} ({n} rows)")


def speed(home, target="h100_sxm", source="h200_sxm", backend="trtllm", version="1.3.0rc20", n=20000) -> None:
    """µs per scalar estimate, native vs transferred, over the same varied shapes: rounds alternate
    between the two (so a shared machine's load drift hits both), best of 5."""
    from estimator.lookup.database import PerfDatabase

    make = {"native": lambda: PerfDatabase(source, backend, version, home=home),
            "transferred": lambda: PerfDatabase(target, backend, version, home=home, from_system=source)}
    dbs = {name: f() for name, f in make.items()}  # builds stale partitions once
    load = {name: float("inf") for name in make}
    for _ in range(5):  # construction (partition load, transfer's grid cleaning, intervals), alternating
        for name, f in make.items():
            t0 = time.perf_counter()
            f()
            load[name] = min(load[name], time.perf_counter() - t0)
    for name, t in load.items():
        print(f"{name:12s} PerfDatabase load {t:.3f} s (best of 5)")
    shapes = [(1 + i % 64, 128 * (1 + i % 500), (16, 32, 64, 128)[i % 4]) for i in range(n)]
    for op in ("mla_generation", "dsa_context"):
        best = {name: float("inf") for name in dbs}
        for name, db in dbs.items():
            db.estimate(op, batch_size=1, s=128, num_heads=16)  # resolve once
        for _ in range(5):
            for name, db in dbs.items():
                t0 = time.perf_counter()
                for b, s, h in shapes:
                    db.estimate(op, batch_size=b, s=s, num_heads=h)
                best[name] = min(best[name], time.perf_counter() - t0)
        for name, t in best.items():
            print(f"{name:12s} {op:15s} {t / n * 1e6:6.2f} µs per estimate ({n} shapes, best of 5)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", help="warehouse with the pairs' systems (the protocol)")
    ap.add_argument("--pair", action="append", help="TARGET:SOURCE (repeatable); default the four of issue 11")
    ap.add_argument("--all-pairs", action="store_true", help="every ordered pair of systems in the warehouse "
                    "that share a (backend, version)")
    ap.add_argument("--errors-in", help="score the intervals on these protocol rows (an --errors-out file) "
                    "instead of running the protocol; --pair restricts them")
    ap.add_argument("--csv", help="write the table here")
    ap.add_argument("--errors-out", help="write every protocol row (Parquet) here")
    ap.add_argument("--intervals", action="store_true", help="leave-one-system-out coverage of transferred "
                    "80%% intervals")
    ap.add_argument("--write-intervals", action="store_true", help="with --intervals: write the "
                    "transfer_intervals table (fitted on every pair) to the warehouse")
    ap.add_argument("--keep-overheads", action="store_true", help="keep the source's launch overhead "
                    "across launch classes too (the rule before transfer_overheads)")
    ap.add_argument("--speed-home", help="warehouse for the µs-per-estimate timing")
    args = ap.parse_args(argv)
    if args.errors_in:
        errors = pl.read_parquet(args.errors_in)
        if args.pair:
            keep = pl.DataFrame([p.split(":") for p in args.pair], schema=["target", "from_system"], orient="row")
            errors = errors.join(keep, on=["target", "from_system"])
        intervals(args.home, errors, args.write_intervals)
    elif args.home:
        pairs = ([tuple(p.split(":")) for p in args.pair] if args.pair else
                 all_pairs(args.home) if args.all_pairs else PAIRS)
        tab, errors = table(args.home, pairs, overheads=not args.keep_overheads)
        print(format_transfer_table(tab))
        wins = tab.group_by("target", "from_system").agg(pl.col("beats_both").sum().alias("beats_both"),
                                                         pl.col("n").is_not_null().sum().alias("rows"))
        for r in wins.sort("target").iter_rows(named=True):
            print(f"{r['target']} <- {r['from_system']}: beats both baselines in {r['beats_both']}/{r['rows']}")
        if args.csv:
            tab.write_csv(args.csv)
        if args.errors_out:
            errors.write_parquet(args.errors_out)
        if args.intervals:
            intervals(args.home, errors, args.write_intervals)
    if args.speed_home:
        speed(args.speed_home)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
