"""The result type of every estimator answer: a latency plus how it was obtained."""

from __future__ import annotations

from typing import NamedTuple

from estimator.common import Source

_SOURCES = tuple(Source)  # provenance codes are indices in this order


class Neighbour(NamedTuple):
    """One grid cell an estimate used, with its weight and the cell's own provenance.

    Weights lie in [0, 1] and sum to 1. Past the last sequence value the answer
    continues the last segment's log-ratio slope from the boundary cells, which
    are listed with their weights at the boundary (docs/limits.md).
    """

    num_heads: int
    prefix: int
    batch_size: int
    seq_len: int
    weight: float
    source: Source


class Estimate(NamedTuple):
    """A latency in milliseconds and its provenance.

    source: measured | interpolated | extrapolated | transferred | sol (the
    fallback chain's step), or nearest (method="nearest" off a measured cell).
    `version` is the data version that answered (per op: docs/limits.md);
    `limit` names the rule that made the calibrated SOL answer past the measured
    range (None otherwise). low_ms / high_ms: the 80% interval, learned from
    cross-validation residuals of answers of the same op, provenance and
    distance to measured data (`estimator.lookup.intervals`); NaN without an interval model,
    and then `interval_note` says why where it is known (a transfer to another system without its
    `transfer_intervals` row). sol_ms is the calibrated SOL at the query's own
    shape; the estimate is sol_ms * 2**log2_ratio where the ratio comes from
    the neighbours (0 for `sol`). `slice` names the data the answer came from;
    `transferred_from` says what differed from the query when a related slice,
    system or index_topk answered. Immutable (a NamedTuple: cheap to build, which
    matters for a few-microsecond lookup); `est._replace(...)` derives a changed copy.
    """

    latency_ms: float
    source: Source
    op: str
    system: str
    framework: str
    version: str
    sol_ms: float
    raw_sol_ms: float
    log2_ratio: float
    neighbour_cells: object = ()  # lookup corners; see `neighbours`
    slice: tuple[tuple[str, object], ...] = ()
    transferred_from: str | None = None
    method: str = "interp"
    limit: str | None = None
    low_ms: float = float("nan")  # 80% interval (estimator.lookup.intervals); NaN without an interval model
    high_ms: float = float("nan")
    expected_error_pct: float = float("nan")  # mean absolute % error of held-out answers like this one
    interval_note: str | None = None  # why low_ms / high_ms are NaN, where a reason is known

    def __repr__(self) -> str:
        # The raw lookup corners are arrays: show what a person wants instead.
        where = f", transferred_from={self.transferred_from!r}" if self.transferred_from else ""
        return (
            f"Estimate(latency_ms={self.latency_ms:.6g}, source={self.source.value}, op={self.op!r}, "
            f"system={self.system!r}, framework={self.framework!r}, version={self.version!r}, "
            f"low_ms={self.low_ms:.6g}, high_ms={self.high_ms:.6g}, "
            f"sol_ms={self.sol_ms:.6g}{where}, method={self.method!r}, neighbours={len(self.neighbours)})"
        )

    @property
    def neighbours(self) -> tuple[Neighbour, ...]:
        """The grid cells used, with weights and their own provenance."""
        from estimator.lookup.interpolate import expand_cells

        return tuple(Neighbour(h, p, int(b), int(s), w, _SOURCES[c])
                     for h, p, b, s, w, c in expand_cells(self.neighbour_cells))

    def as_dict(self) -> dict:
        return {
            "latency_ms": self.latency_ms,
            "low_ms": self.low_ms,
            "high_ms": self.high_ms,
            "expected_error_pct": self.expected_error_pct,
            "interval_note": self.interval_note,
            "source": self.source.value,
            "op": self.op,
            "system": self.system,
            "framework": self.framework,
            "version": self.version,
            "sol_ms": self.sol_ms,
            "raw_sol_ms": self.raw_sol_ms,
            "log2_ratio": self.log2_ratio,
            "method": self.method,
            "slice": dict(self.slice),
            "transferred_from": self.transferred_from,
            "limit": self.limit,
            "neighbours": [
                {"num_heads": n.num_heads, "prefix": n.prefix, "batch_size": n.batch_size,
                 "seq_len": n.seq_len, "weight": n.weight, "source": n.source.value}
                for n in self.neighbours
            ],
        }
