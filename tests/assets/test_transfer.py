"""The on-demand transfer_tables asset: fits the tables a transferred answer's interval comes from."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from assets.resources import WarehouseSettings
from assets.transfer import transfer_tables
from estimator.lookup.transfer_intervals import TABLE as TRANSFER_INTERVALS
from estimator.physics.transfer import OVERHEAD_TABLE
from estimator.physics.transfer_terms import TERM_TABLE
from tests.estimator.conftest import synthetic_points, write_collector_csv
from warehouse.derived import derived_tables, read_derived
from warehouse.ingest import ingest_paths


def _settings(tmp_path) -> WarehouseSettings:
    return WarehouseSettings(home=str(tmp_path / "wh"), landing=str(tmp_path / "raw"))


def _run(settings):
    with dg.build_asset_context() as context:
        return transfer_tables(context, settings=settings)


def test_writes_both_tables_from_every_pair(tmp_path):
    pts = synthetic_points(ops=("dsa_context", "mla_generation"))
    files = write_collector_csv(pts, tmp_path / "raw" / "h200")
    files += write_collector_csv(pts.with_columns(pl.col("latency_ms") * 1.08), tmp_path / "raw" / "h100",
                                 device="NVIDIA H100 80GB HBM3")
    settings = _settings(tmp_path)
    ingest_paths(files, settings.home_path())
    assert TRANSFER_INTERVALS not in derived_tables(settings.home_path())
    result = _run(settings)
    meta = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
    assert meta["pairs"] == 2 and meta["protocol_points"] > 0
    intervals = read_derived(settings.home_path(), TRANSFER_INTERVALS)
    assert intervals.height == meta["transfer_intervals_rows"] > 0
    # Both directions were scored, for both ops of the one backend the two systems share.
    assert set(intervals["op"]) == {"dsa_context", "mla_generation"}
    assert OVERHEAD_TABLE in derived_tables(settings.home_path())
    # H100 and H200 are one launch class: no proxy shapes to move their terms by, an empty table
    assert TERM_TABLE in derived_tables(settings.home_path()) and meta[f"{TERM_TABLE}_rows"] == 0
    assert "h100_sxm <- h200_sxm" in meta["protocol"] and "h200_sxm <- h100_sxm" in meta["protocol"]


def test_one_system_fails_with_the_reason(tmp_path):
    settings = _settings(tmp_path)
    ingest_paths(write_collector_csv(synthetic_points(ops=("dsa_context",)), tmp_path / "raw" / "h200"),
                 settings.home_path())
    with pytest.raises(dg.Failure, match="a transfer table needs at least two"):
        _run(settings)
