"""Intervals of transferred answers, fitted and scored leave-one-system-out.

Residuals are log2(measured / transferred) over every target point of the
transfer protocol (`estimator.accuracy.transfer.transfer_protocol`), so they
include all the protocol sees: the physics the rule misses, kernels that differ
between systems, host launch costs and the source's noise. `fit_transfer_intervals`
takes the split-conformal 80% order statistic of |residual| per (backend, op,
relation: one GPU generation or two, one host CPU kind or two; see
`estimator.lookup.transfer_intervals.relation`) and the pooled (*, op, relation) and (*, op, *) rows the lookup falls
back to (`estimator.lookup.transfer_intervals`). Symmetric, because the sign of
a transfer's error belongs to its pair (H100 from H200 errs one way, H200 from
H100 the other), and the intervals of a target come from other pairs. `loso_coverage` scores them honestly:
the intervals for target T are fitted on the pairs that hold no T, and
each T point counts as covered when its measurement lies inside. It needs many
pairs (`benchmarks/transfer_protocol.py --all-pairs`: every ordered pair of six
systems), so that every target keeps pairs of each relation to learn from.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from estimator.accuracy.interval_fit import _expected_pct
from estimator.lookup.intervals import LEVEL
from estimator.lookup.transfer_intervals import ANY, METHOD, SCHEMA, TransferIntervals, relation
from estimator.physics.specs import load_system


def transfer_residuals(errors: pl.DataFrame) -> pl.DataFrame:
    """One residual per protocol row: target, from_system, framework, version, op, relation, resid."""
    pairs = errors.select("target", "from_system").unique()
    rel = pl.DataFrame([(t, s, relation(load_system(t), load_system(s))) for t, s in pairs.iter_rows()],
                       schema={"target": pl.String, "from_system": pl.String, "relation": pl.String}, orient="row")
    return errors.join(rel, on=["target", "from_system"]).select(
        "target", "from_system", "framework", "version", "op", "relation",
        (pl.col("measured_ms") / pl.col("pred_ms")).log(2).alias("resid"))


def _symmetric(r: np.ndarray) -> tuple[float, float]:
    """(-q, q), q the ceil((n+1) x LEVEL)-th smallest |residual| (split-conformal)."""
    a = np.sort(np.abs(r))
    q = float(a[min(math.ceil((a.size + 1) * LEVEL), a.size) - 1])
    return -q, q


def fit_transfer_intervals(resid: pl.DataFrame) -> pl.DataFrame:
    """The `transfer_intervals` table (SCHEMA) from `transfer_residuals` rows."""
    rows = []
    for level in [(), ("framework",), ("framework", "relation")]:  # columns pooled ('*') at each level
        sub = resid.with_columns(*[pl.lit(ANY).alias(c) for c in level])
        for (fw, op, rel), g in sub.group_by("framework", "op", "relation", maintain_order=True):
            r = g["resid"].to_numpy()
            lo, hi = _symmetric(r)
            pairs = ", ".join(sorted({f"{t}<-{s}" for t, s in g.select("target", "from_system").iter_rows()}))
            rows.append((fw, op, rel, r.size, lo, hi, _expected_pct(r), pairs, METHOD))
    return pl.DataFrame(rows, schema=SCHEMA, orient="row").sort("framework", "op", "relation")


def covered(table: pl.DataFrame, resid: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per residual row: does the 80% interval of `table` hold the measurement, and the interval's
    width in % of the transferred answer ((2^q_hi - 2^q_lo) x 100; NaN where no row answers)."""
    out = np.zeros(resid.height, dtype=bool)
    width = np.full(resid.height, np.nan)
    idx = resid.with_row_index("_row")
    for (fw, rel, op), g in idx.group_by("framework", "relation", "op"):
        lo, hi, _ = TransferIntervals(table, fw, rel).quantiles(op)
        r = g["resid"].to_numpy()
        rows = g["_row"].to_numpy()
        out[rows] = (r >= lo) & (r <= hi)
        width[rows] = (2.0**hi - 2.0**lo) * 100
    return out, width


def loso_coverage(resid: pl.DataFrame) -> pl.DataFrame:
    """Coverage and median interval width (% of the transferred answer) per (target, from_system,
    framework, op) of intervals fitted without any pair that holds the target (as target or as
    source: its data must not inform its own interval), and per pair over all its points (op = '*')."""
    parts = []
    for target in resid["target"].unique().sort():
        held = resid.filter(pl.col("target") == target)
        table = fit_transfer_intervals(resid.filter((pl.col("target") != target) & (pl.col("from_system") != target)))
        hit, width = covered(table, held)
        parts.append(held.with_columns(pl.Series("covered", hit), pl.Series("width_pct", width)))
    cov = pl.concat(parts)
    keys = ["target", "from_system", "framework", "op"]
    agg = [pl.len().alias("n"), (pl.col("covered").mean() * 100).alias("coverage_pct"),
           pl.col("width_pct").median().alias("median_width_pct")]
    per_op = cov.group_by(keys).agg(*agg)
    per_pair = cov.group_by("target", "from_system").agg(*agg).with_columns(
        pl.lit(ANY).alias("framework"), pl.lit(ANY).alias("op"))
    return pl.concat([per_op, per_pair.select(per_op.columns)]).sort(keys)
