"""Assets and checks called directly with a fixture settings resource."""

from __future__ import annotations

import dagster as dg
import pytest

from assets.grids import below_roofline, latency_monotonic, perf_points, repeat_spread, unique_keys
from assets.ingest import latency_valid, ledger_balanced, measurements, quarantine_share, raw_log_files
from assets.metadata import markdown_table
from assets.resources import WarehouseSettings
from tests.pipelines.fixtures import BATCHES, DIRTY_ROWS, SEQS, write_dirty, write_dsa_context

KEY = "h200_sxm/trtllm/1.0/mla_context_module_perf.txt"


@pytest.fixture
def settings(tmp_path) -> WarehouseSettings:
    write_dirty(tmp_path / "landing")
    write_dsa_context(tmp_path / "landing", repeats=2)
    return WarehouseSettings(home=str(tmp_path / "wh"), landing=str(tmp_path / "landing"))


def _ingest(settings, key):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("raw_log_file", [key])
        with dg.build_asset_context(partition_key=key, instance=instance) as context:
            return measurements(context, settings=settings)


def test_raw_log_files_lists_and_hashes(settings):
    result = raw_log_files(settings=settings)
    assert result.metadata["files_seen"].value == 2
    assert result.metadata["files_not_ingested"].value == 2
    assert KEY in result.metadata["preview"].value


def test_measurements_partition_and_checks(settings):
    result = _ingest(settings, KEY)
    meta = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
    assert meta["status"] == "ingested" and meta["files"] == 1
    assert meta["rows_quarantined"] == DIRTY_ROWS
    assert meta["rows_read"] == meta["rows_accepted"] + meta["rows_quarantined"]
    assert ledger_balanced(settings=settings).passed
    assert latency_valid(settings=settings).passed
    warn = quarantine_share(settings=settings)
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
    again = _ingest(settings, KEY)
    assert again.metadata["status"] == "skipped-unchanged"
    assert again.metadata["files_ingested"].value == 0


def test_missing_partition_file_fails_clearly(settings):
    with pytest.raises(dg.Failure, match="no raw log left"):
        _ingest(settings, "h200_sxm/trtllm/1.0/gone.txt")


def test_perf_points_and_its_checks(settings):
    _ingest(settings, "h200_sxm/trtllm/1.0/dsa_context_module_perf.txt")
    key = "h200_sxm|trtllm|1.0"  # the one derived_slice partition
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("derived_slice", [key])
        run = dg.materialize([perf_points, unique_keys, latency_monotonic, repeat_spread, below_roofline],
                             partition_key=key, instance=instance, resources={"settings": settings})
    meta = {k: v.value for k, v in run.asset_materializations_for_node("perf_points")[0].metadata.items()}
    assert meta["dagster/row_count"] == len(BATCHES) * len(SEQS)
    assert meta["measurements"] == 2 * len(BATCHES) * len(SEQS)
    assert meta["partitions_rebuilt"] == 1
    checks = {e.check_name: e for e in run.get_asset_check_evaluations()}
    assert all(e.partition == key for e in checks.values())
    assert checks["unique_keys"].passed and checks["latency_monotonic"].passed
    spread = checks["repeat_spread"]
    assert spread.passed and spread.metadata["repeated_points"].value == len(BATCHES) * len(SEQS)
    roof = checks["below_roofline"]
    assert roof.passed and roof.metadata["impossible_points"].value == 0


def test_markdown_table_notes_rows_left_out():
    import polars as pl

    text = markdown_table(pl.DataFrame({"a": [1, 2, 3], "b": ["x|y", None, "z"]}), 2)
    assert text.splitlines()[:4] == ["| a | b |", "|---|---|", "| 1 | x\\|y |", "| 2 |  |"]
    assert "1 more rows not shown" in text
    assert markdown_table(pl.DataFrame({"a": []}), 5) == "_none_"
