"""80% intervals of transferred answers at run time: the `transfer_intervals` table and its lookup.

A transferred answer's error is not the source's interpolation error: it is
the part of the target's latency the physics does not move (kernels tuned for
one chip, host launch costs, the source's noise). So its interval comes from
the leave-one-system-out protocol itself (fitted in
`estimator.accuracy.transfer_intervals`): quantiles of log2(measured /
transferred) per (backend, op, relation), relation = whether target and
source are of one GPU generation and whether one CPU kind launches their
kernels (`relation`). The table is written by
`perfwh accuracy --fit-transfer-intervals` (or `benchmarks/transfer_protocol.py
--intervals --write-intervals`, the same code) to
derived/transfer_intervals.parquet (a DuckDB view of the same name); it is not
part of the per-partition derived build because it needs several systems.
"""

from __future__ import annotations

import math

import polars as pl

from estimator.lookup.intervals import containing
from estimator.physics.specs import SystemSpec

TABLE = "transfer_intervals"
METHOD = "transfer-intervals-2"
ANY = "*"  # pooled rows: every backend (framework), or every relation
SCHEMA = {"framework": pl.String, "op": pl.String, "relation": pl.String, "n": pl.Int64, "q_lo": pl.Float64,
          "q_hi": pl.Float64, "expected_error_pct": pl.Float64, "pairs": pl.String, "method": pl.String}


def relation(target: SystemSpec, source: SystemSpec) -> str:
    """`same_generation` or `across_generations`, with `_other_host` when one is launched from a Grace
    CPU and the other from x86: the datasheet moves one generation well, not two, and it says nothing
    of host launch costs (GB200 from B200 is 0.9 log2 off at p80, H100 from H200 and B300 from B200 0.1-0.25)."""
    rel = "same_generation" if target.family == source.family else "across_generations"
    return rel if target.host == source.host else f"{rel}_other_host"


class TransferIntervals:
    """(q_lo, q_hi, expected_error_pct) of transferred answers per op, for one backend and relation;
    the most specific row of the table: (backend, op, relation), else (*, op, relation), else
    (*, op, *). An op without any row (or no table) gives NaN bounds, and PerfDatabase's answer
    carries no interval (`interval_note` says why), never the source's own interval model."""

    def __init__(self, table: pl.DataFrame | None, framework: str, rel: str):
        self.by_op: dict[str, tuple[float, float, float]] = {}
        if table is None or table.height == 0:
            return
        rank = {(framework, rel): 0, (ANY, rel): 1, (ANY, ANY): 2}
        rows = sorted((rank[(r["framework"], r["relation"])], r["op"], r) for r in table.iter_rows(named=True)
                      if (r["framework"], r["relation"]) in rank)
        for _, op, r in rows:  # bounds contain the estimate itself (intervals.containing)
            self.by_op.setdefault(op, (*containing(r["q_lo"], r["q_hi"]), r["expected_error_pct"]))

    def covers(self, op: str) -> bool:
        """Whether the table has a row for `op` (else a transferred answer has no interval: interval_note)."""
        return op in self.by_op

    def quantiles(self, op: str) -> tuple[float, float, float]:
        return self.by_op.get(op, (math.nan, math.nan, math.nan))

    def bounds(self, op: str, latency_ms: float) -> tuple[float, float, float]:
        """(low_ms, high_ms, expected_error_pct) of a transferred answer of `latency_ms`."""
        lo, hi, err = self.quantiles(op)
        return latency_ms * 2.0**lo, latency_ms * 2.0**hi, err
