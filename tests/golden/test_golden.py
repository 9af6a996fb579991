"""The estimator reproduces its recorded golden predictions and accuracy table.

Rebuilds a warehouse from ../shared/data/aiconfigurator (skipped when absent),
answers the shapes stored in `predictions.parquet` and runs the accuracy
protocol, then compares with the recorded outputs: scalar estimates, their SOL
and the accuracy figures within 1e-9 relative (refactors may reorder float
operations, nothing more), sources exactly, and `estimate_many` (float32
arithmetic) within 1e-6 relative.
"""

import json

import numpy as np
import polars as pl
import pytest

from .golden import ACCURACY, KEY_COLUMNS, PREDICTIONS, SHARED_DATA, accuracy_tables, build_warehouse, predict

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"{SHARED_DATA} not present")]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("golden")
    build_warehouse(home)
    return home


def _close(got: np.ndarray, want: np.ndarray, rel: float) -> np.ndarray:
    return (np.abs(got - want) <= rel * np.abs(want)) | (np.isnan(got) & np.isnan(want))  # refused: both NaN


def test_predictions_match_golden(home):
    golden = pl.read_parquet(PREDICTIONS)
    assert golden.height >= 2000 and golden["op"].n_unique() == 6
    got = predict(home, golden.select(KEY_COLUMNS))
    for col in ("latency_ms", "sol_ms", "raw_sol_ms"):
        ok = _close(got[col].to_numpy(), golden[col].to_numpy(), 1e-9)
        assert ok.all(), (col, golden.filter(~pl.Series(ok)).head(3))
    assert (got["source"] == golden["source"]).all()
    many = golden["many_latency_ms"].is_not_null().to_numpy()
    assert many.sum() > 2000
    ok = _close(got["many_latency_ms"].to_numpy()[many], golden["many_latency_ms"].to_numpy()[many], 1e-6)
    assert ok.all(), golden.filter(pl.Series(many)).filter(~pl.Series(ok)).head(3)
    assert (got["many_source"].fill_null("") == golden["many_source"].fill_null("")).all()


def test_accuracy_matches_golden(home):
    want = json.loads(ACCURACY.read_text())
    got = accuracy_tables(home)
    assert sorted(got) == sorted(want)
    for key, rows in want.items():
        assert len(got[key]) == len(rows), key
        for g, w in zip(got[key], rows):
            assert {k: g[k] for k in ("table", "class", "method", "n")} == \
                   {k: w[k] for k in ("table", "class", "method", "n")}, key
            for k in ("median_pct", "p90_pct"):
                assert g[k] == pytest.approx(w[k], rel=1e-9), (key, w)
