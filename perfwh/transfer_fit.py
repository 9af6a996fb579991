"""`perfwh accuracy --fit-transfer-intervals`: the tables a transferred answer needs, built from a warehouse.

A transferred answer carries an 80% interval only from the `transfer_intervals` table, whose residuals
come from the leave-one-system-out protocol run on every ordered pair of systems that share a backend
and version; `transfer_overheads` moves a transfer's launch overhead between launch classes. Neither
is part of the per-partition derived build (each needs several systems and minutes of refits), so this
command builds them on demand (`benchmarks/transfer_protocol.py --write-intervals` calls the same code).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def all_pairs(home) -> list[tuple[str, str]]:
    """Every ordered (target, source) of systems with a spec whose module points share a (backend, version)."""
    import polars as pl

    from warehouse.read import scan_measurements

    from estimator.accuracy.transfer import MODULE_OPS
    from estimator.physics.specs import load_system

    have = (scan_measurements(home).filter(pl.col("op").is_in(list(MODULE_OPS)))
            .select("system", "framework", "version").unique().collect())
    known = []
    for s in have["system"].unique().sort():
        try:
            load_system(s)
            known.append(s)
        except (KeyError, ValueError, FileNotFoundError):
            print(f"{s}: no system spec, left out", file=sys.stderr)
    have = have.filter(pl.col("system").is_in(known))
    both = have.join(have, on=["framework", "version"], suffix="_src").filter(pl.col("system") != pl.col("system_src"))
    return sorted(both.select("system", "system_src").unique().iter_rows())


def protocol_rows(home, pairs, overheads: bool = True):
    """(summary per pair / backend / version / op, every protocol row) of `pairs`, with a progress line
    per pair on stderr. Every system with a spec is loaded: other systems of a pair's launch classes
    measure how its overhead moves."""
    import polars as pl

    from warehouse.read import perf_points_from, scan_measurements

    from estimator.accuracy.transfer import MODULE_OPS, summarize_transfer, transfer_protocol
    from estimator.physics.transfer import proxy_pairs

    have = scan_measurements(home).select("system").unique().collect()["system"].to_list()
    systems = sorted({x for t, s in pairs for x in (t, s, *[y for p in proxy_pairs(t, s, have) for y in p])})
    points = perf_points_from(scan_measurements(home).filter(pl.col("system").is_in(systems)
                                                             & pl.col("op").is_in(list(MODULE_OPS))))
    out, rows = [], []
    for i, (target, source) in enumerate(pairs, 1):
        t0 = time.perf_counter()
        rows.append(transfer_protocol(points, target, source, overheads=overheads))
        out.append(summarize_transfer(rows[-1]))
        print(f"[{i}/{len(pairs)}] {target} <- {source}: {rows[-1].height:,} points, "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return pl.concat(out), pl.concat(rows, how="vertical_relaxed")


def write_transfer_tables(home, errors) -> tuple[Path, int, Path, int]:
    """Fit `transfer_intervals` on the protocol rows `errors` and `transfer_overheads` on every system's
    module points; write both as derived tables. Returns (path, rows) of each."""
    import polars as pl

    from warehouse.derived import write_derived
    from warehouse.read import perf_points_from, scan_measurements

    from estimator.accuracy.transfer import MODULE_OPS, modelled
    from estimator.accuracy.transfer_intervals import fit_transfer_intervals, transfer_residuals
    from estimator.lookup.transfer_intervals import TABLE as TRANSFER_INTERVALS
    from estimator.physics.transfer import OVERHEAD_TABLE, class_overhead_ratios

    fitted = fit_transfer_intervals(transfer_residuals(errors))
    p_int = write_derived(home, TRANSFER_INTERVALS, fitted)
    points = modelled(perf_points_from(scan_measurements(home).filter(pl.col("op").is_in(list(MODULE_OPS)))))
    overheads = class_overhead_ratios(points)
    p_ovh = write_derived(home, OVERHEAD_TABLE, overheads)
    return p_int, fitted.height, p_ovh, overheads.height


def run_fit(args) -> int:
    """The CLI: every pair of the warehouse (or those of --transfer / --from), then both tables."""
    pairs = all_pairs(args.home)
    if args.transfer:
        pairs = [p for p in pairs if p[0] == args.transfer]
    if args.from_system:
        pairs = [p for p in pairs if p[1] == args.from_system]
    if not pairs:
        raise ValueError("no pair of systems with a spec shares a backend and version with module points"
                         + (" for the --transfer / --from given" if args.transfer or args.from_system else "")
                         + ": a transfer table needs at least two such systems (`perfwh coverage` lists them)")
    print(f"fitting transfer intervals on {len(pairs)} ordered pair(s) of systems", file=sys.stderr, flush=True)
    _, errors = protocol_rows(args.home, pairs)
    p_int, n_int, p_ovh, n_ovh = write_transfer_tables(args.home, errors)
    print(f"wrote {p_int} ({n_int} rows) and {p_ovh} ({n_ovh} rows) from {errors.height:,} protocol points; "
          "transferred answers now carry an 80% interval")
    return 0
