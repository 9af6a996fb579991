"""Landing sensor ticks with explicit cursors, and the daily schedule."""

from __future__ import annotations

import json
from hashlib import sha256
from datetime import datetime, timezone

import dagster as dg
import pytest

from pipelines.materialize import RANGE_END, RANGE_START
from tests.pipelines.fixtures import write_dsa_context, write_dsa_generation
from warehouse.ingest import ingest_paths

KEY = "h200_sxm/trtllm/1.0/dsa_context_module_perf.txt"


@pytest.fixture
def sensor_defs(tmp_path):
    from assets.resources import WarehouseSettings
    from pipelines.definitions import build_defs

    landing = tmp_path / "landing"
    landing.mkdir()
    settings = WarehouseSettings(home=str(tmp_path / "wh"), landing=str(landing))
    return landing, settings, build_defs(settings)


def tick(defs, instance, cursor):
    sensor = defs.resolve_sensor_def("landing_sensor")
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"settings": defs.resources["settings"]}
    )
    return sensor(context)


def test_new_same_changed(sensor_defs, instance):
    landing, _, defs = sensor_defs
    empty = tick(defs, instance, None)
    assert empty.run_requests == [] and json.loads(empty.cursor) == {}

    f = write_dsa_context(landing)
    first = tick(defs, instance, empty.cursor)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.partition_key == KEY
    assert json.loads(first.cursor)[KEY] == sha256(f.read_bytes()).hexdigest()
    assert request.tags["perfwh/batch"] == "new"
    assert request.job_name in (None, "ingest_job")
    assert [r.partitions_def_name for r in first.dynamic_partitions_requests] == ["raw_log_file"]
    assert list(first.dynamic_partitions_requests[0].partition_keys) == [KEY]

    instance.add_dynamic_partitions("raw_log_file", [KEY])
    same = tick(defs, instance, first.cursor)
    assert same.run_requests == [] and same.dynamic_partitions_requests == []
    assert same.cursor == first.cursor

    f.write_text(f.read_text() + f.read_text().splitlines()[-1] + "\n")  # new content (a repeat), same name
    changed = tick(defs, instance, same.cursor)
    assert [r.partition_key for r in changed.run_requests] == [KEY]
    assert changed.run_requests[0].run_key != request.run_key
    assert changed.dynamic_partitions_requests == []


GEN = "h200_sxm/trtllm/1.0/dsa_generation_module_perf.txt"


def test_new_files_of_one_slice_folder_are_one_run(sensor_defs, instance):
    landing, _, defs = sensor_defs
    write_dsa_context(landing)
    write_dsa_generation(landing)
    result = tick(defs, instance, None)
    (request,) = result.run_requests
    assert request.partition_key is None
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (KEY, GEN)
    assert list(result.dynamic_partitions_requests[0].partition_keys) == [KEY, GEN]


def _three_folders(landing) -> list[str]:
    text = write_dsa_context(landing).read_text()
    for version in ("1.1", "1.2"):
        (landing / "h200_sxm" / "trtllm" / version).mkdir(parents=True)
        (landing / "h200_sxm" / "trtllm" / version / "dsa_context_module_perf.txt").write_text(
            text.replace(",1.0,", f",{version},")
        )
    return [f"h200_sxm/trtllm/{v}/dsa_context_module_perf.txt" for v in ("1.0", "1.1", "1.2")]


def test_new_files_of_every_folder_are_one_run(sensor_defs, instance):
    landing, _, defs = sensor_defs
    keys = _three_folders(landing)
    result = tick(defs, instance, None)
    (request,) = result.run_requests
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (keys[0], keys[-1])
    assert request.tags["perfwh/batch"] == "new" and request.partition_key is None
    assert list(result.dynamic_partitions_requests[0].partition_keys) == keys
    assert set(json.loads(result.cursor)) == set(keys)


def test_the_tick_is_bounded_in_files_per_run_and_runs(sensor_defs, instance, monkeypatch):
    """Three new files, at most two a run and one run a tick: a run over the first two now,
    the third stays out of the cursor (and out of the partitions) and is requested next
    tick; then a changed known file is a run of its own beside the new files' run."""
    landing, _, defs = sensor_defs
    keys = _three_folders(landing)
    monkeypatch.setenv("PERFWH_SENSOR_MAX_FILES", "2")
    monkeypatch.setenv("PERFWH_SENSOR_MAX_RUNS", "1")
    first = tick(defs, instance, None)
    (request,) = first.run_requests
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (keys[0], keys[1])
    assert keys[2] not in json.loads(first.cursor)
    assert list(first.dynamic_partitions_requests[0].partition_keys) == keys[:2]
    instance.add_dynamic_partitions("raw_log_file", keys[:2])
    second = tick(defs, instance, first.cursor)
    assert [r.partition_key for r in second.run_requests] == [keys[2]]
    instance.add_dynamic_partitions("raw_log_file", [keys[2]])
    assert tick(defs, instance, second.cursor).run_requests == []

    monkeypatch.setenv("PERFWH_SENSOR_MAX_RUNS", "5")
    changed = landing / keys[1]
    changed.write_text(changed.read_text() + changed.read_text().splitlines()[-1] + "\n")
    write_dsa_generation(landing)
    third = tick(defs, instance, second.cursor)
    assert [(r.tags["perfwh/batch"], r.partition_key) for r in third.run_requests] == [("new", GEN), (keys[1], keys[1])]


def test_content_already_in_the_warehouse_is_not_requested(sensor_defs, instance):
    landing, settings, defs = sensor_defs
    f = write_dsa_context(landing)
    ingest_paths([f], settings.home)
    result = tick(defs, instance, None)
    assert result.run_requests == []
    assert KEY in json.loads(result.cursor)
    assert list(result.dynamic_partitions_requests[0].partition_keys) == [KEY]


def test_bad_cursor_is_an_error(sensor_defs, instance):
    _, _, defs = sensor_defs
    with pytest.raises(Exception, match="JSON object"):
        tick(defs, instance, "[1, 2]")


def test_sensor_and_schedule_run_by_default(sensor_defs):
    _, _, defs = sensor_defs
    assert defs.resolve_sensor_def("landing_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_schedule_def("daily_derived").default_status == dg.DefaultScheduleStatus.RUNNING


def test_daily_schedule_requests_the_derived_job(sensor_defs, instance):
    _, _, defs = sensor_defs
    schedule = defs.resolve_schedule_def("daily_derived")
    assert schedule.cron_schedule == "0 4 * * *" and schedule.execution_timezone == "UTC"
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2026, 11, 27, 4, tzinfo=timezone.utc)
    )
    assert schedule.evaluate_tick(context).run_requests == []  # no derived slice registered yet
    instance.add_dynamic_partitions("derived_slice", ["h200_sxm|trtllm|1.0", "h200_sxm|trtllm|1.1"])
    data = schedule.evaluate_tick(context)
    assert len(data.run_requests) == 1  # one run over every slice; the store rebuilds the stale ones
    assert data.run_requests[0].tags["dagster/asset_partition_range_end"] == "h200_sxm|trtllm|1.1"
    assert schedule.job_name == "derived_job"


def test_interval_and_cron_come_from_the_environment(monkeypatch, tmp_path):
    from assets.resources import WarehouseSettings
    from pipelines.definitions import build_defs

    monkeypatch.setenv("PERFWH_SENSOR_INTERVAL_S", "5")
    monkeypatch.setenv("PERFWH_DERIVED_CRON", "*/15 * * * *")
    defs = build_defs(WarehouseSettings(home=str(tmp_path / "wh"), landing=str(tmp_path)))
    assert defs.resolve_sensor_def("landing_sensor").minimum_interval_seconds == 5
    assert defs.resolve_schedule_def("daily_derived").cron_schedule == "*/15 * * * *"
    monkeypatch.setenv("PERFWH_SENSOR_INTERVAL_S", "soon")
    with pytest.raises(ValueError, match="PERFWH_SENSOR_INTERVAL_S"):
        build_defs(WarehouseSettings(home=str(tmp_path / "wh"), landing=str(tmp_path)))


def test_a_batch_run_ingests_every_file_of_its_range(sensor_defs, instance):
    from warehouse.read import scan_measurements

    landing, settings, defs = sensor_defs
    write_dsa_context(landing)
    write_dsa_generation(landing)
    result = tick(defs, instance, None)
    instance.add_dynamic_partitions("raw_log_file", list(result.dynamic_partitions_requests[0].partition_keys))
    (request,) = result.run_requests
    run = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance, tags=request.tags)
    assert run.success
    assert sorted(run.dagster_run.tags[k] for k in (RANGE_START, RANGE_END)) == [KEY, GEN]
    counts = dict(scan_measurements(settings.home_path()).group_by("op").len().collect().iter_rows())
    assert counts == {"dsa_context": 20, "dsa_generation": 20}
