"""Smoke tests: `defs` loads, and every asset, check, job, schedule and sensor is there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[2]

ASSETS = {
    "raw_log_files", "measurements", "perf_points", "sol_calibration",
    "interpolation_grids", "accuracy_report", "warehouse_views", "transfer_tables",
}  # fmt: skip
CHECKS = {
    ("measurements", "ledger_balanced"), ("measurements", "latency_valid"),
    ("measurements", "quarantine_share"), ("perf_points", "unique_keys"),
    ("perf_points", "latency_monotonic"), ("perf_points", "repeat_spread"), ("perf_points", "below_roofline"),
    ("accuracy_report", "accuracy_targets"), ("interpolation_grids", "every_slice_modelled"),
}  # fmt: skip
BLOCKING = {("measurements", "ledger_balanced"), ("measurements", "latency_valid"), ("perf_points", "unique_keys")}


def _defs(settings):
    from pipelines.definitions import build_defs

    return build_defs(settings)


def test_module_defs_loads():
    from pipelines.definitions import defs

    assert isinstance(defs, dg.Definitions)


def test_every_asset_check_job_schedule_and_sensor(settings):
    defs = _defs(settings)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == ASSETS
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == CHECKS
    for asset, name in CHECKS:
        spec = graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey(asset), name))
        assert spec.blocking == ((asset, name) in BLOCKING), (asset, name)
    assert defs.resolve_job_def("ingest_job") and defs.resolve_job_def("derived_job")
    assert defs.resolve_schedule_def("daily_derived").job_name == "derived_job"
    assert defs.resolve_sensor_def("landing_sensor").job_name == "ingest_job"
    assert defs.resolve_sensor_def("derived_automation").default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_sensor_def("derived_slices").job_name == "derived_job"


def test_groups_and_kinds(settings):
    graph = _defs(settings).resolve_asset_graph()
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == {
        "raw_log_files": "ingest", "measurements": "ingest", "perf_points": "grids",
        "sol_calibration": "grids", "interpolation_grids": "grids",
        "accuracy_report": "reports", "warehouse_views": "reports", "transfer_tables": "transfer",
    }  # fmt: skip
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.kinds, key
        assert node.description and "\n" not in node.description.strip(), key


def test_jobs_select_by_group(settings):
    defs = _defs(settings)
    ingest = {k.to_user_string() for k in defs.resolve_job_def("ingest_job").asset_layer.selected_asset_keys}
    derived = {k.to_user_string() for k in defs.resolve_job_def("derived_job").asset_layer.selected_asset_keys}
    reports = {k.to_user_string() for k in defs.resolve_job_def("reports_job").asset_layer.selected_asset_keys}
    assert ingest == {"raw_log_files", "measurements"}
    assert derived == {"perf_points", "sol_calibration", "interpolation_grids"}
    transfer = {k.to_user_string() for k in defs.resolve_job_def("transfer_job").asset_layer.selected_asset_keys}
    assert transfer == {"transfer_tables"}  # on demand: in no other job, and no automation condition
    assert reports == ASSETS - ingest - derived - transfer
    assert defs.resolve_asset_graph().get(dg.AssetKey("transfer_tables")).automation_condition is None


def test_derived_assets_and_their_checks_are_partitioned_by_slice(settings):
    graph = _defs(settings).resolve_asset_graph()
    for name in ("perf_points", "sol_calibration", "interpolation_grids"):
        assert graph.get(dg.AssetKey(name)).partitions_def.name == "derived_slice"
    for asset, name in CHECKS:
        spec = graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey(asset), name))
        partitioned = asset in ("perf_points", "interpolation_grids")
        assert (spec.partitions_def is not None and spec.partitions_def.name == "derived_slice") == partitioned


@pytest.mark.slow
def test_dagster_definitions_validate(dagster_home, tmp_path):
    env = {"DAGSTER_HOME": str(dagster_home), "PERFWH_HOME": str(tmp_path / "wh"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
