"""Transferred answers carry the leave-one-system-out interval (estimator/lookup/transfer_intervals.py)."""

from __future__ import annotations

import math

import polars as pl
import pytest

from estimator.grids.build import build_grids
from estimator.lookup.database import PerfDatabase
from estimator.lookup.transfer_intervals import SCHEMA, TransferIntervals, relation
from estimator.physics.specs import load_system

from ..conftest import fixed_calibration, synthetic_points


def _table(rows):
    return pl.DataFrame([(fw, op, rel, 10, lo, hi, 1.0, "", "t") for fw, op, rel, lo, hi in rows], schema=SCHEMA,
                        orient="row")


def test_the_most_specific_row_answers():
    table = _table([("trtllm", "mla_context", "same_generation", -0.1, 0.2),
                    ("*", "mla_context", "same_generation", -0.3, 0.4),
                    ("*", "mla_context", "*", -0.5, 0.6), ("*", "dsa_context", "*", -0.7, 0.8)])
    assert TransferIntervals(table, "trtllm", "same_generation").quantiles("mla_context")[:2] == (-0.1, 0.2)
    assert TransferIntervals(table, "vllm", "same_generation").quantiles("mla_context")[:2] == (-0.3, 0.4)
    assert TransferIntervals(table, "trtllm", "across_generations").quantiles("mla_context")[:2] == (-0.5, 0.6)
    assert TransferIntervals(table, "trtllm", "same_generation").quantiles("dsa_context")[:2] == (-0.7, 0.8)
    assert all(math.isnan(q) for q in TransferIntervals(None, "trtllm", "*").quantiles("mla_context"))


def test_relation_is_the_gpu_generation():
    assert relation(load_system("h100_sxm"), load_system("h200_sxm")) == "same_generation"
    assert relation(load_system("b200_sxm"), load_system("h200_sxm")) == "across_generations"


def test_transferred_estimates_carry_the_table_interval_and_native_ones_do_not():
    pts = synthetic_points(ops=("mla_generation",))
    cal = fixed_calibration(pts)
    grids = build_grids(pts, cal)
    table = _table([("trtllm", "mla_generation", "same_generation", -0.25, 0.5)])
    moved = PerfDatabase("h100_sxm", calibration=cal, grids=grids, from_system="h200_sxm", transfer_intervals=table)
    native = PerfDatabase("h200_sxm", calibration=cal, grids=grids, transfer_intervals=table)
    q = dict(batch_size=8, s=1024, num_heads=128)
    est = moved.estimate("mla_generation", **q)
    assert (est.low_ms, est.high_ms) == pytest.approx((est.latency_ms * 2**-0.25, est.latency_ms * 2**0.5))
    assert est.expected_error_pct == 1.0
    many = moved.estimate_many("mla_generation", pl.DataFrame({"batch_size": [8], "kv_len": [1024],
                                                                "num_heads": [128]}))
    assert many["low_ms"][0] == pytest.approx(est.low_ms, rel=1e-5)
    assert many["high_ms"][0] == pytest.approx(est.high_ms, rel=1e-5)
    assert math.isnan(native.estimate("mla_generation", **q).low_ms)  # no interval model given


def test_without_a_row_for_the_op_no_interval_and_the_note_says_why():
    """The source's own interval model measures the source's grids on the source: a transfer used it
    when the table lacked the op (or was never written), a claim of the source's native precision."""
    pts = synthetic_points(ops=("mla_generation",))
    cal = fixed_calibration(pts)
    grids = build_grids(pts, cal)
    iv = pl.DataFrame({"op": ["*"] * 4, "provenance": ["transferred"] * 4, "bucket": [0, 1, 2, 3],
                       "d_lo": [0.0, 0.5, 1.0, 2.0], "d_hi": [0.5, 1.0, 2.0, math.inf], "n": [50] * 4,
                       "q_lo": [-0.1] * 4, "q_hi": [0.3] * 4, "expected_error_pct": [12.0] * 4,
                       "coverage_pct": [None] * 4, "n_heldout": [None] * 4, "borrowed_from": [None] * 4,
                       "grow_from": [None] * 4}, schema_overrides={"bucket": pl.Int8})
    other_op = _table([("trtllm", "dsa_context", "same_generation", -0.25, 0.5)])
    q = dict(batch_size=8, s=1024, num_heads=128)
    frame = pl.DataFrame({"batch_size": [8], "kv_len": [1024], "num_heads": [128]})
    for table, why in ((other_op, "the transfer_intervals table has no mla_generation row for trtllm"),
                       (None, "the warehouse has no transfer_intervals table")):
        moved = PerfDatabase("h100_sxm", calibration=cal, grids=grids, from_system="h200_sxm", intervals=iv,
                             transfer_intervals=table)
        est = moved.estimate("mla_generation", **q)
        assert est.latency_ms > 0 and est.source.value == "transferred"
        assert math.isnan(est.low_ms) and math.isnan(est.high_ms) and math.isnan(est.expected_error_pct)
        assert est.interval_note == moved.interval_note("mla_generation")
        assert est.interval_note.startswith(f"no 80% interval: h100_sxm is answered from h200_sxm's data and {why};")
        assert "perfwh accuracy --fit-transfer-intervals" in est.interval_note and est.as_dict()["interval_note"] == est.interval_note
        many = moved.estimate_many("mla_generation", frame)
        assert many["low_ms"].is_nan().all() and many["high_ms"].is_nan().all()
    native = PerfDatabase("h200_sxm", calibration=cal, grids=grids, intervals=iv)
    assert native.interval_note("mla_generation") is None
    covered = PerfDatabase("h100_sxm", calibration=cal, grids=grids, from_system="h200_sxm", intervals=iv,
                           transfer_intervals=_table([("trtllm", "mla_generation", "same_generation", -0.25, 0.5)]))
    assert covered.interval_note("mla_generation") is None
    assert covered.estimate("mla_generation", **q).interval_note is None


def test_transfer_table_bounds_contain_the_estimate():
    """A one-sided row (every held-out transfer of the op above the answer) still contains the answer."""
    ti = TransferIntervals(_table([("trtllm", "mla_context", "same_generation", 0.1, 0.4)]), "trtllm",
                           "same_generation")
    lo, hi, _ = ti.bounds("mla_context", 2.0)
    assert (lo, hi) == pytest.approx((2.0, 2.0 * 2**0.4))
