"""The grid build (estimator.grids.build): pure frames in, the grid table out, every cell labelled."""

import numpy as np
import pytest


def test_pooled_grid_still_answers_exact_hits_with_the_measurement():
    import polars as pl
    import pytest

    from estimator.lookup.database import PerfDatabase
    from estimator.grids.build import build_grids

    from ..conftest import fixed_calibration, synthetic_points

    pts = synthetic_points(ops=("mla_context",), gemm_types=("bfloat16", "fp8_block"), kv_dtypes=("bfloat16", "fp8"))
    rng = np.random.default_rng(0)
    pts = pts.with_columns(pl.col("latency_ms") * (1.0 + 0.05 * rng.standard_normal(pts.height)))
    cal = fixed_calibration(pts)
    grids = build_grids(pts, cal)
    assert grids["measured_log2_ratio"].null_count() == 0  # fully measured fixture
    db = PerfDatabase(calibration=cal, grids=grids)
    for row in pts.sample(20, seed=1).iter_rows(named=True):
        est = db.estimate("mla_context", batch_size=row["batch_size"], s=row["isl"], num_heads=row["num_heads"],
                          gemm_type=row["gemm_type"], kv_cache_dtype=row["kv_cache_dtype"])
        assert est.source.value == "measured"
        assert est.latency_ms == pytest.approx(row["latency_ms"], rel=1e-9)
        many = db.estimate_many("mla_context", pl.DataFrame([{k: row[k] for k in (
            "batch_size", "isl", "num_heads", "gemm_type", "kv_cache_dtype")}]))
        assert many["latency_ms"][0] == pytest.approx(row["latency_ms"], rel=1e-5)


def test_build_grids_keeps_measurements_and_labels_the_hole_it_fills():
    import math

    from estimator.grids.build import build_grids
    from estimator.grids.schema import GRID_SCHEMA

    from ..conftest import fixed_calibration, ratio_pattern, synthetic_points

    hole = ("mla_context", 64, 2, 64)  # (op, heads, batch, seq): interior, measured on all four sides
    pts = synthetic_points(ops=("mla_context",), drop=(hole,))
    grids = build_grids(pts, fixed_calibration(pts))
    assert list(grids.columns) == list(GRID_SCHEMA)
    assert grids.height == pts.height + 1  # dense 4 x 4 per (heads) slice: the measured cells and the hole
    measured = grids.filter(grids["source"] == "measured")
    assert measured.height == pts.height
    # the fixed calibration is the one that made the data: measured log2(latency / SOL) is the pattern itself
    for r in measured.sample(10, seed=0).iter_rows(named=True):
        assert r["measured_log2_ratio"] == pytest.approx(ratio_pattern(r["batch_size"], r["seq_len"], r["num_heads"]),
                                                         abs=1e-12)
    filled = grids.filter((grids["num_heads"] == 64) & (grids["batch_size"] == 2) & (grids["seq_len"] == 64)).row(
        0, named=True)
    assert filled["source"] == "interpolated" and filled["measured_log2_ratio"] is None
    # the pattern is linear in log2 batch and log2 seq, so any of the rules recovers it closely
    assert filled["log2_ratio"] == pytest.approx(ratio_pattern(2, 64, 64), abs=0.01)
    assert math.isclose(filled["latency_ms"], filled["sol_ms"] * 2 ** filled["log2_ratio"], rel_tol=1e-12)
