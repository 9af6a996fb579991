"""accuracy_report's slice choice and the targets rule."""

from __future__ import annotations

import polars as pl
import pytest

from assets.reports import AccuracyConfig, accuracy_slice
from estimator.accuracy.protocol import missed_targets
from tests.pipelines.fixtures import write_dsa_context, write_dsa_generation
from warehouse.ingest import ingest_paths


def _own_collector_log(landing):
    f = write_dsa_generation(landing / "own")
    f.write_text(f.read_text().replace("TRTLLM,1.0,", "perfwh,0.1,"))
    return f


def test_protocol_slice_when_present_else_largest(tmp_path):
    home = tmp_path / "wh"
    ingest_paths([_own_collector_log(tmp_path)], home)
    assert accuracy_slice(home, AccuracyConfig()) == ("h200_sxm", "perfwh", "0.1")
    ingest_paths([write_dsa_context(tmp_path / "aic")], home)
    assert accuracy_slice(home, AccuracyConfig()) == ("h200_sxm", "trtllm", "1.0")
    assert accuracy_slice(home, AccuracyConfig(backend="perfwh")) == ("h200_sxm", "perfwh", "0.1")
    with pytest.raises(ValueError, match="h100_sxm"):
        accuracy_slice(home, AccuracyConfig(system="h100_sxm"))


def test_missed_targets_ignores_the_nearest_baseline():
    summary = pl.DataFrame({
        "table": ["dsa_generation"] * 3, "class": ["R", "R", "E"], "method": ["interp", "nearest", "interp"],
        "n": [10, 10, 5], "median_pct": [0.4, 30.0, 2.5], "p90_pct": [1.0, 50.0, 4.0],
    })  # fmt: skip
    missed = missed_targets(summary)
    assert missed.select("class", "method").rows() == [("E", "interp")]  # median 2.5 > target 2
