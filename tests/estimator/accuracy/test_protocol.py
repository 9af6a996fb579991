"""The cross-validation protocol (estimator.accuracy.protocol) on synthetic tables with known answers."""

import numpy as np
import polars as pl
import pytest

from estimator.accuracy import protocol
from estimator.accuracy.protocol import _nearest
from estimator.slices import SLICE_KEYS
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


def _frame(rows):
    """rows: (num_heads, kv_cache_dtype, batch, seq, latency); other slice keys fixed (gemm_type null)."""
    base = {k: "x" for k in SLICE_KEYS}
    base.update(num_heads=None, prefix=0, gemm_type=None)
    out = [{**base, "num_heads": h, "kv_cache_dtype": kv, "batch_size": b, "seq_len": s, "latency_ms": lat}
           for h, kv, b, s, lat in rows]
    schema = {k: pl.String for k in SLICE_KEYS} | {"num_heads": pl.Int64, "prefix": pl.Int64, "batch_size": pl.Int64,
                                                    "seq_len": pl.Int64, "latency_ms": pl.Float64}
    return pl.DataFrame(out, schema=schema)


def test_nearest_is_same_slice_log2_nearest_first_on_tie():
    train = _frame([
        (16, "fp8", 1, 1024, 1.0), (16, "fp8", 4, 1024, 4.0), (16, "fp8", 1, 4096, 2.0),
        (16, "bf16", 2, 2048, 7.0), (32, "fp8", 2, 2048, 9.0),
    ])
    test = _frame([
        (16, "fp8", 2, 1024, 0.0),   # batch 2 halfway (log2) between 1 and 4: the first (1.0)
        (16, "fp8", 1, 2048, 0.0),   # seq 2048 halfway between 1024 and 4096: the first (1.0)
        (16, "fp8", 4, 4096, 0.0),   # (4, 1024) and (1, 4096) both 2 away in log2: the first (4.0)
        (16, "fp8", 8, 1024, 0.0),   # nearest (4, 1024)
        (16, "bf16", 64, 64, 0.0),   # the only bf16 point, however far
        (64, "fp8", 2, 2048, 0.0),   # no training slice: NaN
    ]).with_row_index("_row")
    got = _nearest(train, test)
    assert np.array_equal(got["pred_ms"].to_numpy(), [1.0, 1.0, 4.0, 4.0, 7.0, np.nan], equal_nan=True)
    assert got.columns == [*test.drop("_row").columns, "pred_ms", "source", "sol_ms"]
    assert got["source"].to_list() == ["nearest"] * 6
