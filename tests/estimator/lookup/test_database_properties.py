"""Property tests: the scalar and vectorised paths agree; answers are positive and labelled."""

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from estimator.common import Source

OPS = ("dsa_context", "dsa_generation", "mla_context", "mla_generation")


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(OPS), b=st.integers(1, 4096), s=st.integers(1, 150_000), h=st.integers(1, 128),
       prefix=st.integers(0, 4096), kv=st.sampled_from(["bfloat16", "fp8"]))
def test_scalar_and_vector_paths_agree(db, op, b, s, h, prefix, kv):
    pre = prefix if "context" in op else 0
    est = db.estimate(op, batch_size=b, s=s, num_heads=h, prefix=pre, kv_cache_dtype=kv)
    assert est.latency_ms > 0 and est.sol_ms > 0 and isinstance(est.source, Source)
    assert est.latency_ms == pytest.approx(est.sol_ms * 2 ** est.log2_ratio, rel=1e-12)
    seq = "isl" if "context" in op else "kv_len"
    frame = pl.DataFrame({"batch_size": [b], seq: [s], "num_heads": [h], "prefix": [pre], "kv_cache_dtype": [kv]})
    row = db.estimate_many(op, frame).row(0, named=True)
    assert row["latency_ms"] == pytest.approx(est.latency_ms, rel=1e-5)
    assert row["source"] == est.source.value


def test_lazy_package_exports():
    import estimator

    assert estimator.PerfDatabase.__name__ == "PerfDatabase"
    assert estimator.Source.measured.value == "measured"


def _one_sided_intervals() -> pl.DataFrame:
    """An interval table whose extrapolated class errs to one side, as the published H200 TensorRT-LLM
    1.3.0rc23 dsa_context fit does ((1, 2] octaves: q_lo -0.0706, q_hi -0.0304: past the data the
    estimate overshoots every held-out point), and whose nearest class errs to the other."""
    from estimator.lookup.intervals import BUCKETS, CLASSES, SCHEMA

    q = {"extrapolated": (-0.0706, -0.0304), "nearest": (0.0035, 1.0)}
    rows = [dict(op="*", provenance=prov, bucket=b, d_lo=BUCKETS[b], d_hi=BUCKETS[b + 1], n=100,
                 q_lo=q.get(prov, (-0.05, 0.05))[0], q_hi=q.get(prov, (-0.05, 0.05))[1], expected_error_pct=3.0,
                 coverage_pct=80.0, n_heldout=100, borrowed_from=None, grow_from=2.0 if b == 3 else None)
            for prov in CLASSES for b in range(len(BUCKETS) - 1)]
    return pl.DataFrame(rows, schema=SCHEMA)


@pytest.fixture(scope="module")
def db_one_sided(points):
    from estimator.grids.build import build_grids
    from estimator.lookup.database import PerfDatabase
    from tests.estimator.conftest import fixed_calibration

    cal = fixed_calibration(points)
    return PerfDatabase(calibration=cal, grids=build_grids(points, cal), intervals=_one_sided_intervals())


@settings(max_examples=80, deadline=None)
@given(op=st.sampled_from(OPS), b=st.integers(1, 32), s=st.integers(1025, 4096), h=st.sampled_from([32, 64, 128]),
       method=st.sampled_from(["interp", "nearest"]))
def test_interval_contains_the_estimate(db_one_sided, op, b, s, h, method):
    """low <= estimate <= high for every answer, also where the class's held-out errors all lie on one
    side (484 of 5,400 random extrapolated dsa_context answers of the published corpus read
    '346.6 ms, 80% in 330-339 ms'); the side the errors fall on still sets the far bound."""
    est = db_one_sided.estimate(op, batch_size=b, s=s, num_heads=h, method=method)
    assert est.low_ms <= est.latency_ms <= est.high_ms, est
    if est.source == Source.extrapolated:  # widened up to the estimate only, the low side kept
        assert est.high_ms == est.latency_ms and est.low_ms < est.latency_ms * 2 ** -0.0304
    if method == "interp":
        seq = "isl" if "context" in op else "kv_len"
        row = db_one_sided.estimate_many(op, pl.DataFrame({"batch_size": [b], seq: [s], "num_heads": [h]})).row(
            0, named=True)
        assert row["low_ms"] <= row["latency_ms"] <= row["high_ms"], row


def test_extrapolated_answers_are_drawn(db_one_sided):
    """The property above runs over extrapolated answers (seq past the grid's 1024, within 4x)."""
    assert db_one_sided.estimate("dsa_context", batch_size=4, s=3000, num_heads=64).source == Source.extrapolated
