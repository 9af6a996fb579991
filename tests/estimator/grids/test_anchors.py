"""Transfer-only cleaning of a source grid's slow spikes (estimator/grids/anchors.py)."""

from __future__ import annotations

import polars as pl
import pytest

from estimator.grids.anchors import clean_anchors, spike_count
from estimator.grids.build import build_grids
from estimator.lookup.database import PerfDatabase

from ..conftest import fixed_calibration, synthetic_points

OP = "mla_generation"
CELL = dict(num_heads=64, batch_size=2, kv_len=256)  # an interior cell of BATCHES x SEQS
EDGE = dict(num_heads=64, batch_size=8, kv_len=256)  # the largest batch: an edge cell


def _slow(points: pl.DataFrame, cell: dict, factor: float) -> pl.DataFrame:
    hit = pl.all_horizontal(*[pl.col(k) == v for k, v in cell.items()])
    return points.with_columns(pl.when(hit).then(pl.col("latency_ms") * factor).otherwise("latency_ms"))


def _cell(grids: pl.DataFrame, cell: dict) -> dict:
    return grids.filter(pl.col("num_heads") == cell["num_heads"], pl.col("batch_size") == cell["batch_size"],
                        pl.col("seq_len") == cell["kv_len"]).row(0, named=True)


@pytest.fixture(scope="module")
def clean_and_spiked():
    pts = synthetic_points(ops=(OP,))
    cal = fixed_calibration(pts)
    return build_grids(pts, cal), build_grids(_slow(_slow(pts, CELL, 1.3), EDGE, 1.3), cal), cal


def test_a_slow_interior_spike_is_replaced_by_its_neighbours_and_nothing_else_moves(clean_and_spiked):
    smooth, spiked, _ = clean_and_spiked
    assert spike_count(smooth) == 0
    assert clean_anchors(smooth).equals(smooth)  # a smooth grid is left as it is
    cleaned = clean_anchors(spiked)
    assert spike_count(spiked) == 1
    got, want = _cell(cleaned, CELL), _cell(smooth, CELL)
    assert got["measured_log2_ratio"] is None and got["source"] == "interpolated"
    # the synthetic ratio is linear in log2 batch and log2 seq: the neighbours' median is the true value
    assert got["latency_ms"] == pytest.approx(want["latency_ms"], rel=1e-6)
    assert _cell(cleaned, EDGE) == _cell(spiked, EDGE)  # an edge cell is kept: a ramp there may be real
    others = pl.all_horizontal(*[pl.col(k) != v for k, v in (("batch_size", 2), ("seq_len", 256))])
    assert cleaned.filter(others).equals(spiked.filter(others))
    assert cleaned.columns == spiked.columns and cleaned.height == spiked.height


def test_a_fast_cell_is_kept(clean_and_spiked):
    smooth, _, cal = clean_and_spiked
    fast = build_grids(_slow(synthetic_points(ops=(OP,)), CELL, 0.7), cal)
    assert spike_count(fast) == 0


def test_only_transferred_answers_use_the_cleaned_grid(clean_and_spiked):
    smooth, spiked, cal = clean_and_spiked
    pts = synthetic_points(ops=(OP,))
    q = dict(batch_size=CELL["batch_size"], s=CELL["kv_len"], num_heads=CELL["num_heads"])
    native = PerfDatabase("h200_sxm", calibration=cal, grids=spiked).estimate(OP, **q)
    assert native.latency_ms == pytest.approx(_slow(pts, CELL, 1.3).filter(
        pl.col("num_heads") == 64, pl.col("batch_size") == 2, pl.col("kv_len") == 256)["latency_ms"][0])
    moved = PerfDatabase("h100_sxm", calibration=cal, grids=spiked, from_system="h200_sxm").estimate(OP, **q)
    moved_smooth = PerfDatabase("h100_sxm", calibration=cal, grids=smooth, from_system="h200_sxm").estimate(OP, **q)
    assert moved.latency_ms == pytest.approx(moved_smooth.latency_ms, rel=1e-6)


# ---- skip-indexer rows no slower than their with-indexer sibling ---------------------------------
def test_skip_indexer_sibling_names():
    from estimator.grids.anchors import skip_indexer_sibling

    ks = pl.DataFrame({"kernel_source": ["sglang_dsa_dense_mha_fa3+skip_indexer", "sglang_dsa_skip_indexer_flashmla_kv",
                                         "sglang_dsa_indexer_flashmla_kv", "default"]})
    assert ks.select(skip_indexer_sibling())["kernel_source"].to_list() == [
        "sglang_dsa_dense_mha_fa3", "sglang_dsa_indexer_flashmla_kv", None, None]


def test_a_skip_indexer_cell_slower_than_its_sibling_is_capped_at_it():
    from estimator.grids.anchors import cap_skip_indexer

    pts = synthetic_points(ops=("dsa_context",))
    with_ix = pts.with_columns(pl.lit("sglang_dsa_dense_mha_fa3").alias("kernel_source"))
    # skipping is faster everywhere but one shape, where it is 1.5x slower than with the indexer
    skip = _slow(with_ix.with_columns(pl.lit("sglang_dsa_dense_mha_fa3+skip_indexer").alias("kernel_source"),
                                      pl.col("latency_ms") * 0.9), dict(num_heads=64, batch_size=2, isl=256), 1.5 / 0.9)
    both = pl.concat([with_ix, skip])
    grids = build_grids(both, fixed_calibration(both))
    capped = cap_skip_indexer(grids)
    assert capped.columns == grids.columns and capped.height == grids.height
    changed = capped.filter(capped["latency_ms"] != grids["latency_ms"])
    assert changed.height == 1 and changed["kernel_source"][0].endswith("+skip_indexer")
    row = changed.row(0, named=True)
    assert (row["num_heads"], row["batch_size"], row["seq_len"]) == (64, 2, 256)
    sibling = grids.filter((pl.col("kernel_source") == "sglang_dsa_dense_mha_fa3") & (pl.col("num_heads") == 64)
                           & (pl.col("batch_size") == 2) & (pl.col("seq_len") == 256)).row(0, named=True)
    assert row["latency_ms"] == pytest.approx(sibling["latency_ms"])
    # the shape was measured: it stays measured (with the capped value), so the measured range is unchanged
    assert row["source"] == "measured" and row["measured_log2_ratio"] == pytest.approx(row["log2_ratio"])
    assert (capped["source"] == "measured").sum() == (grids["source"] == "measured").sum()
    assert cap_skip_indexer(build_grids(with_ix, fixed_calibration(with_ix))).equals(
        build_grids(with_ix, fixed_calibration(with_ix)))  # nothing to cap without skip-indexer slices
