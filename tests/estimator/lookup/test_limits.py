"""Limits on extrapolation (docs/limits.md): refusals, SOL past 4x the measured range, no negative
weights, the `nearest` label, and physically impossible points left out of the grids.

The synthetic fixture measures batch 1..8, seq 16..1024, heads 32..128 (conftest)."""

import polars as pl
import pytest

from estimator.common import Source
from estimator.lookup.limits import MAX_INT, OutOfRangeError, drop_impossible, impossible_points

from ..conftest import ratio_pattern, sol_of


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=2**31, s=64, num_heads=32), "batch_size=2147483648 is above the largest supported value"),
    (dict(batch_size=1, s=10**26, num_heads=32), "s=100000000000000000000000000 is above the largest"),
    (dict(batch_size=1, s=1e30, num_heads=32), "above the largest supported value 2147483647"),
    (dict(batch_size=1, s=64, num_heads=129), "num_heads=129 per GPU exceeds the 128 attention heads"),
    (dict(batch_size=1, s=163841, num_heads=32), "isl=163841 exceeds the context length 163840"),
    (dict(batch_size=1, s=163000, num_heads=32, prefix=1000), "prefix + isl = 1000 + 163000 exceeds"),
])
def test_refusals_name_the_limit(db, kwargs, message):
    with pytest.raises(OutOfRangeError, match=message.replace("+", r"\+")) as info:
        db.estimate("dsa_context", **kwargs)
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


def test_generation_context_length_and_max_int():
    from estimator.lookup.limits import check_int_max

    assert check_int_max("x", MAX_INT) == MAX_INT
    with pytest.raises(OutOfRangeError, match="x=2147483648"):
        check_int_max("x", MAX_INT + 1)


def test_generation_kv_len_beyond_context_length_is_refused(db):
    assert db.estimate("mla_generation", batch_size=1, s=163840, num_heads=32).source is Source.sol
    with pytest.raises(OutOfRangeError, match="kv_len=163841 exceeds the context length 163840 of deepseek-v3"):
        db.estimate("mla_generation", batch_size=1, s=163841, num_heads=32)


@pytest.mark.parametrize("shape, axis", [
    (dict(batch_size=33, s=64, num_heads=32), "batch_size=33 is more than 4x outside the measured 1..8"),
    (dict(batch_size=2, s=4097, num_heads=32), "seq=4097 is more than 4x outside the measured 16..1024"),
    (dict(batch_size=2, s=3, num_heads=32), "seq=3 is more than 4x outside the measured 16..1024"),
    (dict(batch_size=2, s=64, num_heads=7), "num_heads=7 is more than 4x outside the measured 32..128"),
])
def test_past_4x_the_measured_range_the_calibrated_sol_answers(db, shape, axis):
    est = db.estimate("dsa_context", **shape)
    assert est.source is Source.sol and est.limit == axis
    assert est.latency_ms == est.sol_ms and est.log2_ratio == 0.0 and est.neighbours == ()
    # the same point in batch mode
    frame = pl.DataFrame({"batch_size": [shape["batch_size"]], "isl": [shape["s"]], "num_heads": [shape["num_heads"]]})
    out = db.estimate_many("dsa_context", frame)
    assert out["source"].to_list() == ["sol"] and out["latency_ms"][0] == pytest.approx(est.sol_ms, rel=1e-5)
    assert out["sol_ms"][0] == pytest.approx(est.sol_ms, rel=1e-5)


def test_at_4x_it_still_extrapolates_with_non_negative_weights(db):
    est = db.estimate("dsa_context", batch_size=2, s=4096, num_heads=128)
    assert est.source is Source.extrapolated and est.limit is None
    # the fixture's ratio is linear in log2 seq: the continued trend is exact
    assert est.latency_ms == pytest.approx(sol_of("dsa_context", 2, 4096, 128) * 2 ** ratio_pattern(2, 4096, 128),
                                           rel=1e-9)
    weights = [n.weight for n in est.neighbours]
    assert all(0.0 <= w <= 1.0 for w in weights) and sum(weights) == pytest.approx(1.0)
    assert {n.seq_len for n in est.neighbours} == {1024}  # the boundary cells the slope continues from


def test_nearest_is_labelled_nearest(db):
    est = db.estimate("dsa_context", batch_size=3, s=100, num_heads=32, method="nearest")
    assert est.source is Source.nearest and len(est.neighbours) == 1
    exact = db.estimate("dsa_context", batch_size=2, s=64, num_heads=32, method="nearest")
    assert exact.source is Source.measured
    far = db.estimate("dsa_context", batch_size=2, s=100000, num_heads=32, method="nearest")
    assert far.source is Source.sol  # limits apply before the method


def test_impossible_points_are_left_out_of_calibration_and_grids(points):
    from estimator.grids.build import build_grids

    from ..conftest import fixed_calibration

    row = points.filter((pl.col("op") == "mla_context") & (pl.col("batch_size") == 8) & (pl.col("isl") == 1024)
                        & (pl.col("num_heads") == 128))
    bad = pl.concat([points.filter(~((pl.col("op") == "mla_context") & (pl.col("batch_size") == 8)
                                     & (pl.col("isl") == 1024) & (pl.col("num_heads") == 128))),
                     row.with_columns(pl.col("latency_ms") * 1e-3)])
    mask = impossible_points(bad)
    assert mask.sum() == 1 and not impossible_points(points).any()
    kept = drop_impossible(bad)
    assert kept.height == points.height - 1
    grids = build_grids(kept, fixed_calibration(kept))
    cell = grids.filter((pl.col("op") == "mla_context") & (pl.col("batch_size") == 8) & (pl.col("seq_len") == 1024)
                        & (pl.col("num_heads") == 128))
    assert cell["source"].to_list() != ["measured"]  # filled from its neighbours, not the impossible value


def test_model_rollup_refuses_past_the_context_length_in_one_line(db):
    from estimator.models.config import ModelConfig
    from estimator.models.model import get_model

    m = get_model("deepseek-ai/DeepSeek-V3.2", "h200_sxm", "trtllm", ModelConfig(tp_size=4))
    assert m.estimate(isl=1000, osl=2, batch_size=1, db=db).context_ms > 0
    with pytest.raises(OutOfRangeError, match=r"^prefix \+ isl \+ osl - 1 = 163841 \(the last decode step's kv_len\) exceeds the context length 163840 "):
        m.estimate(isl=160000, osl=3842, batch_size=1, db=db)
