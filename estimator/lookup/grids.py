"""Run-time grids: the stored grid table as numpy arrays per categorical key
(`GridSet` -> `GroupGrids` -> `StackedGrid`), read by the lookups.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from estimator.slices import GROUP_KEYS, SLICE_KEYS
from estimator.grids.schema import SOURCES
from estimator.grids.build import SliceGrid


@dataclass
class GroupGrids:
    """All slices of one categorical key, indexed by (num_heads, prefix)."""

    key: tuple
    heads: np.ndarray  # sorted num_heads values
    prefixes: np.ndarray  # sorted prefix values
    slices: dict[tuple[int, int], SliceGrid]
    stacked: "StackedGrid | None" = None  # when every slice shares one batch x seq axis pair
    # Values derived once per group by the lookup modules (plain-Python axes, limits, distance
    # fields), keyed by name; declared here so the run-time caches have one visible home.
    cache: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass
class StackedGrid:
    """All slices of a group on common axes: (heads, prefix, batch, seq) arrays for one-pass lookups."""

    xh: np.ndarray  # log2 heads
    xp: np.ndarray  # prefix values
    xb: np.ndarray
    xs: np.ndarray
    ratio: np.ndarray  # (nh, np, nb, ns)
    source: np.ndarray
    trend: float
    measured: np.ndarray  # (nh, np, nb, ns), NaN where not measured
    batch_power: float = 0.0
    seq_power: float = 0.0


def stack_group(grp: "GroupGrids") -> "StackedGrid | None":
    """A StackedGrid when all (heads, prefix) slices exist and share axes, else None."""
    first = next(iter(grp.slices.values()))
    if len(grp.slices) != grp.heads.size * grp.prefixes.size:
        return None
    if any(not (np.array_equal(sg.batch, first.batch) and np.array_equal(sg.seq, first.seq)
                and sg.trend == first.trend and sg.batch_power == first.batch_power
                and sg.seq_power == first.seq_power) for sg in grp.slices.values()):
        return None
    ratio = np.stack([np.stack([grp.slices[(int(h), int(p))].ratio for p in grp.prefixes]) for h in grp.heads])
    source = np.stack([np.stack([grp.slices[(int(h), int(p))].source for p in grp.prefixes]) for h in grp.heads])
    measured = np.stack([np.stack([grp.slices[(int(h), int(p))].measured for p in grp.prefixes])
                         for h in grp.heads])
    return StackedGrid(np.log2(grp.heads.astype(np.float64)), grp.prefixes.astype(np.float64), first.xb, first.xs,
                       ratio, source, first.trend, measured, first.batch_power, first.seq_power)


def _slice_cells(g: pl.DataFrame):
    """(slice key, {column: numpy array}) per slice of a grids frame sorted by slice keys.

    Columns go to numpy once and are cut at the slice boundaries; source names
    become int8 codes in one pass (an unknown name fails). A polars frame per slice
    (thousands) made loading a grid cost more than a second.
    """
    bounds = g.group_by(list(SLICE_KEYS), maintain_order=True).len()
    ends = np.cumsum(bounds["len"].to_numpy().astype(np.int64))
    starts = ends - np.diff(ends, prepend=0)
    cols = {c: g[c].to_numpy() for c in ("batch_size", "seq_len", "log2_ratio", "latency_ms", "seq_trend")}
    for c in ("batch_power", "seq_power"):  # grids written before grid-logratio-v6 interpolate in log2
        cols[c] = g[c].to_numpy() if c in g.columns else np.zeros(g.height)
    cols["measured_log2_ratio"] = g["measured_log2_ratio"].fill_null(np.nan).to_numpy()
    cols["source"] = g["source"].replace_strict(list(SOURCES), list(range(len(SOURCES))),
                                                return_dtype=pl.Int8).to_numpy()
    for key, a, b in zip(bounds.select(SLICE_KEYS).iter_rows(), starts, ends):
        yield key, {c: v[a:b] for c, v in cols.items()}


class GridSet:
    """Grids by group key (GROUP_KEYS order) for lookups."""

    def __init__(self, groups: dict[tuple, GroupGrids]):
        self.groups = groups

    @classmethod
    def from_frame(cls, grids: pl.DataFrame) -> "GridSet":
        groups: dict[tuple, GroupGrids] = {}
        g = grids.sort(list(SLICE_KEYS) + ["batch_size", "seq_len"], nulls_last=True)
        for key, cells in _slice_cells(g):
            batch = np.unique(cells["batch_size"])
            seq = np.unique(cells["seq_len"])
            shape = (batch.size, seq.size)
            n = cells["batch_size"].size
            if n != batch.size * seq.size:
                raise ValueError(f"grid slice {key} is not dense ({n} cells for {shape})")
            sg = SliceGrid(batch, seq, np.log2(batch), np.log2(seq), cells["log2_ratio"].reshape(shape),
                           cells["source"].reshape(shape), cells["latency_ms"].reshape(shape),
                           float(cells["seq_trend"][0]), cells["measured_log2_ratio"].reshape(shape),
                           float(cells["batch_power"][0]), float(cells["seq_power"][0]))
            gkey = tuple(key[: len(GROUP_KEYS)])
            heads, prefix = int(key[-2]), int(key[-1])
            grp = groups.setdefault(gkey, GroupGrids(gkey, np.array([], dtype=np.int64), np.array([], dtype=np.int64), {}))
            grp.slices[(heads, prefix)] = sg
        for grp in groups.values():
            grp.heads = np.array(sorted({h for h, _ in grp.slices}), dtype=np.int64)
            grp.prefixes = np.array(sorted({p for _, p in grp.slices}), dtype=np.int64)
            grp.stacked = stack_group(grp)
        return cls(groups)
