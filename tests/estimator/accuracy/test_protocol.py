"""The cross-validation protocol (estimator.accuracy.protocol) on synthetic tables with known answers."""

import numpy as np
import polars as pl
import pytest

from estimator.accuracy import protocol
from tests.estimator.conftest import HEADS, fixed_calibration, synthetic_points


@pytest.fixture(scope="module")
def pts() -> pl.DataFrame:
    return protocol._with_seq(synthetic_points(ops=("dsa_context", "mla_generation")))


def test_holdout_classes_by_hand(pts):
    masks = protocol.holdout_masks(pts, seed=0)
    seq = pts["seq_len"].to_numpy()
    # seqs 16, 64, 256, 1024: G holds out the middle line ((4 - 1) // 2 -> 64), E the last (1024)
    assert np.array_equal(masks["G"], seq == 64) and np.array_equal(masks["E"], seq == 1024)
    # interior = batch in {2, 4} x seq in {64, 256}: 4 per slice; 2 ops x 3 heads slices -> 24; R is 10% of them
    held = pts.filter(pl.Series(masks["R"]))
    assert held.height == round(0.1 * 4 * 2 * len(HEADS))
    assert held["batch_size"].is_in([2, 4]).all() and held["seq_len"].is_in([64, 256]).all()


def test_holdout_depends_on_seed_only(pts):
    a, b = protocol.holdout_masks(pts, seed=3), protocol.holdout_masks(pts, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    others = [protocol.holdout_masks(pts, seed=s)["R"] for s in range(4, 9)]
    assert any(not np.array_equal(a["R"], o) for o in others)


def test_predicting_training_points_gives_the_measurements(pts):
    train = pts.drop("seq_len")
    out = protocol.predict(train, train.head(20), calibration=fixed_calibration(train))
    assert out["pred_ms"].to_numpy() == pytest.approx(out["latency_ms"].to_numpy(), rel=1e-9)
    assert set(out["source"]) == {"measured"}


def test_nearest_baseline_takes_the_nearest_training_point(pts):
    train = pts.filter(pl.col("seq_len") != 64).drop("seq_len")
    test = pts.filter((pl.col("seq_len") == 64) & (pl.col("batch_size") == 2)).drop("seq_len")
    out = protocol.predict(train, test, method="nearest")
    # seq 64 sits 2 octaves from 16 and 2 from 256: the tie goes to the first (16) in training order
    expect = pts.filter((pl.col("seq_len") == 16) & (pl.col("batch_size") == 2))
    key = ["op", "num_heads"]
    got = out.sort(key)["pred_ms"].to_numpy()
    assert got == pytest.approx(expect.sort(key)["latency_ms"].to_numpy(), rel=0)
    assert set(out["source"]) == {"nearest"}


def test_unknown_method_is_named(pts):
    with pytest.raises(ValueError, match="unknown method 'cubic'"):
        protocol.predict(pts.drop("seq_len"), pts.head(1).drop("seq_len"), method="cubic")


def test_summarize_and_targets_by_hand():
    errors = pl.DataFrame({"table": ["dsa_context"] * 5, "class": ["R"] * 5, "method": ["interp"] * 5,
                           "abs_err_pct": [0.0, 1.0, 2.0, 3.0, 10.0]})
    s = protocol.summarize(errors)
    # median 2.0; p90 by linear interpolation: position 0.9 * 4 = 3.6 -> 3 + 0.6 * (10 - 3) = 7.2
    assert s.row(0, named=True) == {"table": "dsa_context", "class": "R", "method": "interp", "n": 5,
                                    "median_pct": 2.0, "p90_pct": pytest.approx(7.2)}
    missed = protocol.missed_targets(s)  # target 1 / 6
    assert missed.height == 1 and missed["target_median_pct"][0] == 1.0
    assert "| dsa_context | R | interp | 5 | 2.00 | 7.20 | 1 / 6 | no |" in protocol.format_table(s)


def test_run_accuracy_reports_every_class(pts):
    errors = protocol.run_accuracy(pts.drop("seq_len"), tables=("dsa_context",), seed=0)
    masks = protocol.holdout_masks(pts.filter(pl.col("op") == "dsa_context"), seed=0)
    counts = {(c, m): n for c, m, n in errors.group_by("class", "method").len().iter_rows()}
    for cls in ("R", "G", "E"):
        assert counts[(cls, "interp")] == counts[(cls, "nearest")] == int(masks[cls].sum())
    assert counts[("SOL", "sol")] == int(masks["R"].sum())
    assert errors["abs_err_pct"].is_finite().all()


def test_no_points_for_the_tables_is_an_error(pts):
    with pytest.raises(ValueError, match="no points for tables mla_context"):
        protocol.run_accuracy(pts.drop("seq_len"), tables=("mla_context",))
