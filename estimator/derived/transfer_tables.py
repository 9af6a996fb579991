"""The tables a transferred answer needs, built from a warehouse: `transfer_intervals`, `transfer_overheads`
and `transfer_terms`.

A transferred answer carries an 80% interval only from the `transfer_intervals` table, whose residuals
come from the leave-one-system-out protocol run on every ordered pair of systems that share a backend
and version; `transfer_overheads` moves a transfer's launch overhead between launch classes and
`transfer_terms` holds the proxy shapes its compute / bandwidth / overhead multipliers are fitted on
(estimator.physics.transfer_terms). None is part of the per-partition derived build (each needs several
systems and minutes of refits): they are built on demand by `perfwh accuracy --fit-transfer-intervals`, the Dagster asset `transfer_tables` and
`benchmarks/transfer_protocol.py --write-intervals`, all through this module.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import polars as pl

from estimator.accuracy.transfer import MODULE_OPS, modelled, summarize_transfer, transfer_protocol
from estimator.accuracy.transfer_intervals import fit_transfer_intervals, transfer_residuals
from estimator.lookup.transfer_intervals import TABLE as TRANSFER_INTERVALS
from estimator.physics.specs import load_system
from estimator.physics.transfer import OVERHEAD_TABLE, class_overhead_ratios, proxy_pairs
from estimator.physics.transfer_terms import TERM_TABLE, class_term_shapes
from warehouse.derived import write_derived
from warehouse.read import perf_points_from, scan_measurements


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def all_pairs(home, say=None) -> list[tuple[str, str]]:
    """Every ordered (target, source) of systems with a spec whose module points share a (backend, version);
    a system without a spec is left out with a line through `say` (default: stderr)."""
    have = (scan_measurements(home).filter(pl.col("op").is_in(list(MODULE_OPS)))
            .select("system", "framework", "version").unique().collect())
    known = []
    for s in have["system"].unique().sort():
        try:
            load_system(s)
            known.append(s)
        except (KeyError, ValueError, FileNotFoundError):
            (say or _stderr)(f"{s}: no system spec, left out")
    have = have.filter(pl.col("system").is_in(known))
    both = have.join(have, on=["framework", "version"], suffix="_src").filter(pl.col("system") != pl.col("system_src"))
    return sorted(both.select("system", "system_src").unique().iter_rows())


def protocol_rows(home, pairs, overheads: bool = True, say=None):
    """(summary per pair / backend / version / op, every protocol row) of `pairs`, with a progress line
    per pair through `say` (default: stderr). Every system with a spec is loaded: other systems of a
    pair's launch classes measure how its overhead moves."""
    have = scan_measurements(home).select("system").unique().collect()["system"].to_list()
    systems = sorted({x for t, s in pairs for x in (t, s, *[y for p in proxy_pairs(t, s, have) for y in p])})
    points = perf_points_from(scan_measurements(home).filter(pl.col("system").is_in(systems)
                                                             & pl.col("op").is_in(list(MODULE_OPS))))
    say = say or _stderr
    out, rows = [], []
    for i, (target, source) in enumerate(pairs, 1):
        t0 = time.perf_counter()
        rows.append(transfer_protocol(points, target, source, overheads=overheads))
        out.append(summarize_transfer(rows[-1]))
        say(f"[{i}/{len(pairs)}] {target} <- {source}: {rows[-1].height:,} points, "
            f"{time.perf_counter() - t0:.1f} s")
    return pl.concat(out), pl.concat(rows, how="vertical_relaxed")


def write_transfer_tables(home, errors) -> dict[str, tuple[Path, int]]:
    """Fit `transfer_intervals` on the protocol rows `errors`, and `transfer_overheads` and
    `transfer_terms` on every system's module points; write the three as derived tables.
    Returns table name -> (path, rows)."""
    fitted = fit_transfer_intervals(transfer_residuals(errors))
    points = modelled(perf_points_from(scan_measurements(home).filter(pl.col("op").is_in(list(MODULE_OPS)))))
    tables = {TRANSFER_INTERVALS: fitted, OVERHEAD_TABLE: class_overhead_ratios(points),
              TERM_TABLE: class_term_shapes(points)}
    return {name: (write_derived(home, name, frame), frame.height) for name, frame in tables.items()}
