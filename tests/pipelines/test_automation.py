"""After a sensor-launched ingest, Dagster itself brings the derived assets up to date.

The landing sensor's runs ingest `measurements` only; the derived_slices sensor
then requests a derived_job run for each stale (system, framework, version)
partition, and the reports' automation condition (assets.constants.DERIVED_AUTOMATION,
evaluated by the `derived_automation` sensor) requests the accuracy report and the
views once those runs are done, and nothing more once they are current.
"""

from __future__ import annotations

import dagster as dg
import pytest

from assets.resources import WarehouseSettings
from tests.pipelines.conftest import make_dagster_home
from tests.pipelines.fixtures import write_dsa_generation, write_landing

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
]
DERIVED = {"perf_points", "sol_calibration", "interpolation_grids", "accuracy_report", "warehouse_views"}
REPORTS = {"accuracy_report", "warehouse_views"}


def _requested(result) -> set[str]:
    return {name for name in DERIVED | {"measurements", "raw_log_files"}
            if result.get_num_requested(dg.AssetKey(name))}


def _sensor_ingest(defs, instance, settings, cursor=None) -> str | None:
    """One landing-sensor tick, its partitions added and its run requests executed as the daemon would."""
    sensor = defs.resolve_sensor_def("landing_sensor")
    tick = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"settings": settings}))
    for req in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    job = defs.resolve_job_def("ingest_job")
    for rr in tick.run_requests:
        assert job.execute_in_process(instance=instance, partition_key=rr.partition_key, tags=rr.tags,
                                      asset_selection=rr.asset_selection).success
    return tick.cursor


def _slice_runs(defs, instance, settings) -> list[str]:
    """One derived_slices tick, its partitions added and its runs executed; the partitions run."""
    sensor = defs.resolve_sensor_def("derived_slices")
    tick = sensor(dg.build_sensor_context(instance=instance, resources={"settings": settings}))
    if isinstance(tick, dg.SkipReason):
        return []
    for req in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    job = defs.resolve_job_def("derived_job")
    for rr in tick.run_requests:
        assert job.execute_in_process(instance=instance, partition_key=rr.partition_key, tags=rr.tags).success
    return [rr.partition_key for rr in tick.run_requests]


def test_sensor_ingest_triggers_the_derived_assets_once(tmp_path):
    from pipelines.definitions import build_defs

    landing = tmp_path / "landing"
    write_landing(landing)
    settings = WarehouseSettings(home=str(tmp_path / "wh"), landing=str(landing))
    defs = build_defs(settings)
    with dg.instance_for_test(temp_dir=str(make_dagster_home(tmp_path / "dagster_home"))) as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=dg.AssetSelection.all())
        assert _requested(first) == set()  # nothing landed yet
        sensor_cursor = _sensor_ingest(defs, instance, settings)
        assert _slice_runs(defs, instance, settings) == ["h200_sxm|trtllm|1.0"]
        after_slices = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=dg.AssetSelection.all(), cursor=first.cursor)
        assert _requested(after_slices) == REPORTS
        assert defs.resolve_job_def("reports_job").execute_in_process(instance=instance).success
        settled = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=dg.AssetSelection.all(), cursor=after_slices.cursor)
        assert _requested(settled) == set()  # current: the UI shows nothing stale, nothing runs again
        assert _slice_runs(defs, instance, settings) == []
        # a changed raw log: one more sensor run, its slice and then the reports are requested again
        write_dsa_generation(landing, scale=1.1)
        _sensor_ingest(defs, instance, settings, sensor_cursor)
        assert _slice_runs(defs, instance, settings) == ["h200_sxm|trtllm|1.0"]
        again = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=dg.AssetSelection.all(), cursor=settled.cursor)
        assert _requested(again) == REPORTS
