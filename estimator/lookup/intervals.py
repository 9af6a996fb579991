"""80% intervals at run time: the interval table's schema and `IntervalLookup`, the
microsecond lookup of (op, provenance, distance) bounds (fitted in `estimator.accuracy.interval_fit`).
"""

from __future__ import annotations

import math
from bisect import bisect_left

import numpy as np
import polars as pl

from estimator.grids.schema import SOURCES


TABLE = "interval_model"
METHOD = "intervals-6"  # bump when the residual folds, buckets or quantile rule change (5: warm-started fold fits, scored prefixes capped; 6: intervals contain the estimate)
LEVEL = 0.8
BUCKETS = (0.0, 0.5, 1.0, 2.0, math.inf)  # distance buckets (octaves): [0, 0.5], (0.5, 1], (1, 2], (2, inf)
MIN_CELL = 30
POOLED = "*"  # op row used when an op has no cell of its own
FOLDS = ("R", "GEB", "E2")  # intervals-4: 3 refits (intervals-3: R, G, E, E2, B)
CLASSES = ("measured", "interpolated", "extrapolated", "transferred", "sol", "nearest")
SCHEMA = {"op": pl.String, "provenance": pl.String, "bucket": pl.Int8, "d_lo": pl.Float64, "d_hi": pl.Float64,
          "n": pl.Int64, "q_lo": pl.Float64, "q_hi": pl.Float64, "expected_error_pct": pl.Float64,
          "coverage_pct": pl.Float64, "n_heldout": pl.Int64, "borrowed_from": pl.String,
          "grow_from": pl.Float64}
_LOG2 = math.log2
MAX_GROWTH = 4.0  # cap on the distance widening of cells above the data


# ---- lookups --------------------------------------------------------------------------------

def containing(q_lo: float, q_hi: float) -> tuple[float, float]:
    """Log2 quantiles widened to contain 0, i.e. the estimate itself.

    Why: where held-out answers of a class err to one side (extrapolated DSA context past the data
    overshoots: both of its (1, 2]-octave quantiles are below 0 on the published H200 and B200 tables),
    the bare quantiles gave '346.6 ms, 80% in 330-339 ms'. The fit (`interval_fit._conformal`) now
    writes containing quantiles at the 80% level; this guards tables fitted before it or passed in.
    Widening only ever adds coverage; the estimate is not moved. NaN (no interval) stays NaN."""
    if math.isnan(q_lo) or math.isnan(q_hi):
        return math.nan, math.nan
    return min(q_lo, 0.0), max(q_hi, 0.0)


class IntervalLookup:
    """The interval table as plain lists per (op, provenance code), for microsecond lookups.

    bounds(...) -> (low_ms, high_ms, expected_error_pct), with low_ms <= latency_ms <= high_ms
    (`containing`). Unknown ops use the pooled `*` rows; a provenance without rows (e.g. an empty
    table) gives NaN bounds.
    """

    classes = CLASSES

    def __init__(self, table: pl.DataFrame | None):
        self.cells: dict[tuple[str, int], tuple] = {}
        self._by_op: dict[str, tuple] = {}
        if table is None or table.height == 0:
            return
        codes = {p: i for i, p in enumerate(self.classes)}
        for (op, prov), sub in table.sort("bucket").group_by("op", "provenance", maintain_order=True):
            if prov not in codes:
                continue
            q = [containing(lo, hi) for lo, hi in zip(sub["q_lo"].to_list(), sub["q_hi"].to_list())]
            self.cells[(op, codes[prov])] = (sub["d_lo"].to_list()[1:], [lo for lo, _ in q], [hi for _, hi in q],
                                             sub["expected_error_pct"].to_list(),
                                             sub["grow_from"].fill_null(0.0).to_list())

    def _cell(self, op: str, code: int):
        c = self.cells.get((op, code))
        return self.cells.get((POOLED, code)) if c is None else c

    def bounds(self, op: str, code: int, distance: float, latency_ms: float) -> tuple[float, float, float]:
        c = self._cell(op, code)
        if c is None:
            return math.nan, math.nan, math.nan
        i = bisect_left(c[0], distance)
        g = c[4][i]
        if g and distance > g:  # past the farthest held-out data: log-width grows with distance
            f = min(distance / g, MAX_GROWTH)
            return latency_ms * 2.0 ** (c[1][i] * f), latency_ms * 2.0 ** (c[2][i] * f), c[3][i] * f
        return latency_ms * 2.0 ** c[1][i], latency_ms * 2.0 ** c[2][i], c[3][i]

    def _arrays(self, op: str):
        """(q_lo, q_hi, err) arrays of shape (classes, buckets) for one op (pooled rows where the op
        has none; NaN where neither has a class)."""
        got = self._by_op.get(op)
        if got is None:
            nb = len(BUCKETS) - 1
            got = tuple(np.full((len(self.classes) + 1, nb), np.nan) for _ in range(4))
            got[3][:] = 0.0
            for code in range(len(self.classes)):
                cell = self._cell(op, code)
                if cell is not None:
                    for arr, k in zip(got, (1, 2, 3, 4)):
                        arr[code, :] = cell[k]
            self._by_op[op] = got
        return got

    def quantiles_many(self, op: str, code, distance: np.ndarray):
        """(q_lo, q_hi, expected_error_pct) arrays for one op; `code` a scalar or an array
        (-1: no class, NaN)."""
        distance = np.asarray(distance)
        bucket = np.zeros(distance.shape, dtype=np.int64)
        for edge in BUCKETS[1:-1]:  # (lo, hi] buckets: count the edges below
            bucket += distance > edge
        codes = np.asarray(code, dtype=np.int64)
        if codes.ndim == 0 or codes.min() < 0:
            codes = np.broadcast_to(codes, distance.shape)
            codes = np.where(codes < 0, len(self.classes), codes)
        flat = codes * (len(BUCKETS) - 1) + bucket
        lo, hi, err, grow = (a.reshape(-1).take(flat) for a in self._arrays(op))
        far = (grow > 0) & (distance > grow)
        if far.any():
            f = np.minimum(distance[far] / grow[far], MAX_GROWTH)
            lo[far], hi[far], err[far] = lo[far] * f, hi[far] * f, err[far] * f
        return lo, hi, err


def class_code(source: str, method: str = "interp") -> int:
    """Interval class of an answer: its provenance, or `nearest` for method='nearest'."""
    if method == "nearest" or source == "nearest":
        return CLASSES.index("nearest")
    try:
        return CLASSES.index(source)
    except ValueError:  # a provenance this table does not know: the widest (transferred) class
        return CLASSES.index("transferred")


def interval_for(lookup: IntervalLookup, op: str, source: str, distance: float, latency_ms: float,
                 method: str = "interp") -> tuple[float, float, float]:
    """(low_ms, high_ms, expected_error_pct) of one answer."""
    return lookup.bounds(op, class_code(source, method), distance, latency_ms)


def rollup_bounds(low, high) -> tuple[float, float]:
    """Interval of a sum of layer latencies: the sum of the layers' bounds.

    Why a plain sum and not a root-sum-of-squares: the layers of one model hit the
    same grid cells, the same calibration and the same interpolation bias, so their
    errors are strongly correlated; independent combination would understate the
    model's interval by about sqrt(layers)."""
    return float(np.sum(low)), float(np.sum(high))


SOURCE_CODES = {s: class_code(s) for s in SOURCES}
