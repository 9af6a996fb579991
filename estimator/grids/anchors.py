"""Source grids cleaned for transfer: one-sided slow noise removed before a grid anchors another system.

A transferred answer is the source's answer x a physics ratio, so whatever
noise the source measured is copied to the target. In the published tables
that noise is one-sided: in H200 TensorRT-LLM MLA context, about 10% of the
shapes came out 10-30% slower than the same shape on H100 (same tensor peaks,
less bandwidth), in short runs of one to three cells, while their neighbours
agree within a few %. `clean_anchors` replaces a measured interior cell whose
log2(latency/SOL) exceeds the median of its four neighbours (batch and
sequence, each side) by more than `SPIKE_LOG2` with that median. Only interior cells: at a
grid edge a real ramp (e.g. the launch-bound low end) cannot be told from
noise. Measured on the leave-one-system-out protocol (benchmarks/transfer_protocol.py):
H100 from H200 TensorRT-LLM MLA context p90 20% -> 14%; GB200 from B200,
whose spikes are real kernel structure GB200 shares, loses least with this
rule of the ones tried (edge cells or a rule per axis cost it 2-4 points of p90).

A native answer keeps the measurement (it is what that system did); only the
transfer uses the cleaned grid (PerfDatabase with another data system, and the
protocol).
"""

from __future__ import annotations

import math

import polars as pl

from estimator.slices import SLICE_KEYS

SPIKE_LOG2 = math.log2(1.08)  # a cell > 8% slower than the median of its four neighbours is noise
_NEIGHBOURS = ("_s0", "_s1", "_b0", "_b1")


def _with_neighbours(grids: pl.DataFrame) -> pl.DataFrame:
    """Sorted grid cells with `_v` (the cell's value: its measurement, else the surface) and the
    values of its neighbours along sequence (`_s0`, `_s1`) and batch (`_b0`, `_b1`); null at edges."""
    keys = list(SLICE_KEYS)
    g = grids.with_row_index("_row").sort([*keys, "batch_size", "seq_len"], nulls_last=True).with_columns(
        pl.struct(keys).rle_id().alias("_slice"),  # one integer per slice: windows over 11 keys cost 2-3x more
        pl.coalesce("measured_log2_ratio", "log2_ratio").alias("_v"))
    along_seq, along_batch = ["_slice", "batch_size"], ["_slice", "seq_len"]
    return g.with_columns(
        pl.col("_v").shift(1).over(along_seq).alias("_s0"), pl.col("_v").shift(-1).over(along_seq).alias("_s1"),
        pl.col("_v").shift(1).over(along_batch).alias("_b0"), pl.col("_v").shift(-1).over(along_batch).alias("_b1"))


def _neighbour_median() -> pl.Expr:
    """The median of the four neighbours (one fast neighbour does not make a cell look slow): the
    mean of the middle two, (sum - max - min) / 2; null unless all four exist. A list median costs
    5x more."""
    return (pl.sum_horizontal(_NEIGHBOURS, ignore_nulls=False) - pl.max_horizontal(_NEIGHBOURS)
            - pl.min_horizontal(_NEIGHBOURS)) / 2


def spikes(grids: pl.DataFrame, spike_log2: float = SPIKE_LOG2) -> pl.Expr:
    """True for a measured interior cell more than `spike_log2` above its neighbours' median
    (on a frame from `_with_neighbours`)."""
    interior = pl.all_horizontal(*[pl.col(c).is_not_null() for c in _NEIGHBOURS])
    return (pl.col("measured_log2_ratio").is_not_null() & interior
            & (pl.col("_v") - _neighbour_median() > spike_log2))


def skip_indexer_sibling() -> pl.Expr:
    """The kernel_source that runs the same kernels with the DSA indexer, for one that skips it
    (SGLang: `X+skip_indexer` -> `X`, `sglang_dsa_skip_indexer_Y` -> `sglang_dsa_indexer_Y`); null
    for every other kernel_source."""
    ks = pl.col("kernel_source")
    return (pl.when(ks.str.ends_with("+skip_indexer")).then(ks.str.strip_suffix("+skip_indexer"))
            .when(ks.str.contains("_skip_indexer_")).then(ks.str.replace("_skip_indexer_", "_indexer_", literal=True))
            .otherwise(None))


def cap_skip_indexer(grids: pl.DataFrame) -> pl.DataFrame:
    """`grids` with every measured cell of a skip-indexer slice that is slower than the same shape of
    its with-indexer sibling (`skip_indexer_sibling`, both measured) set to the sibling's latency;
    same rows, order and columns. A capped cell stays `measured` (with the capped value): the shape
    was measured, and the measured range that bounds answers (estimator/lookup/limits.py) must not
    shrink (it did: 45 transferred golden answers fell back to the SOL when the cap dropped them).

    Skipping the indexer does strictly less work with the same kernels, and on every system of the
    published tables but one the skip-indexer rows are at most as slow as their siblings; H200's
    SGLang `fa3+skip_indexer` rows are 0.3 ms slower than its `fa3` rows at the fastest shapes
    (5th percentile 0.81 vs 0.51 ms; H100 0.51 vs 0.51), a measurement artefact a transfer would
    otherwise copy to the target."""
    keys = [k for k in SLICE_KEYS if k != "kernel_source"]
    cell = [*keys, "batch_size", "seq_len"]
    sib = grids.filter(pl.col("measured_log2_ratio").is_not_null()).select(
        *cell, pl.col("kernel_source").alias("_sib"), pl.col("latency_ms").alias("_sib_ms"))
    g = grids.with_row_index("_row").with_columns(skip_indexer_sibling().alias("_sib")).join(
        sib, on=[*cell, "_sib"], how="left", nulls_equal=True)
    slow = (pl.col("measured_log2_ratio").is_not_null() & pl.col("_sib_ms").is_not_null()
            & (pl.col("latency_ms") > pl.col("_sib_ms"))).fill_null(False)
    fill = (pl.col("_sib_ms") / pl.col("sol_ms")).log(2)
    g = g.with_columns(
        pl.when(slow).then(fill).otherwise("log2_ratio").alias("log2_ratio"),
        pl.when(slow).then(fill).otherwise("measured_log2_ratio").alias("measured_log2_ratio"),
        pl.when(slow).then(pl.col("_sib_ms")).otherwise("latency_ms").alias("latency_ms"))
    return g.sort("_row").select(grids.columns)


def clean_anchors(grids: pl.DataFrame, spike_log2: float = SPIKE_LOG2) -> pl.DataFrame:
    """`grids` (GRID_SCHEMA) with skip-indexer cells capped at their with-indexer sibling
    (`cap_skip_indexer`) and slow spikes of measured cells replaced by their neighbours' median
    (source `interpolated`, no measurement); same rows, same order, same columns."""
    grids = cap_skip_indexer(grids)
    g = _with_neighbours(grids)
    fill = _neighbour_median()
    g = g.with_columns(spikes(g, spike_log2).fill_null(False).alias("_spike")).with_columns(
        pl.when("_spike").then(fill).otherwise("log2_ratio").alias("log2_ratio"),
        pl.when("_spike").then(None).otherwise("measured_log2_ratio").alias("measured_log2_ratio"),
        pl.when("_spike").then(pl.lit("interpolated")).otherwise("source").alias("source"),
        pl.when("_spike").then(pl.col("sol_ms") * 2.0**fill).otherwise("latency_ms").alias("latency_ms"))
    return g.sort("_row").select(grids.columns)


def spike_count(grids: pl.DataFrame, spike_log2: float = SPIKE_LOG2) -> int:
    """How many measured cells `clean_anchors` replaces."""
    g = _with_neighbours(grids)
    return int(g.select(spikes(g, spike_log2).fill_null(False).sum()).item())


def local_deviation(grids: pl.DataFrame) -> pl.DataFrame:
    """Slice keys, batch_size, seq_len and `dev_log2` (measured log2 ratio minus its four neighbours'
    median) of every measured interior cell: how rough a system's own measurements are."""
    g = _with_neighbours(grids)
    interior = pl.all_horizontal(*[pl.col(c).is_not_null() for c in _NEIGHBOURS])
    return g.filter(pl.col("measured_log2_ratio").is_not_null() & interior).select(
        *SLICE_KEYS, "batch_size", "seq_len", (pl.col("_v") - _neighbour_median()).alias("dev_log2"))
