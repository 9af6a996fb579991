"""Derived assets partitioned by (system, framework, version): per-partition status,
selective rebuild (one changed raw log -> only its slice's run), per-partition
checks, the derived_slices sensor, and the build concurrency from settings."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets.resources import WarehouseSettings
from tests.pipelines.fixtures import write_dsa_context, write_dsa_generation

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
]
OLD, NEW = "h200_sxm|trtllm|1.0", "h200_sxm|trtllm|1.1"


def _two_slices(landing: Path) -> Path:
    """Slice 1.0 (two logs) and slice 1.1 (one log); returns the 1.1 log."""
    write_dsa_context(landing)
    gen = write_dsa_generation(landing)
    other = landing / "h200_sxm" / "trtllm" / "1.1" / gen.name
    other.parent.mkdir(parents=True)
    other.write_text(gen.read_text().replace("TRTLLM,1.0,", "TRTLLM,1.1,"))
    return other


def _scale(path: Path, factor: float) -> None:
    lines = path.read_text().splitlines()
    out = [lines[0]] + [f"{r.rsplit(',', 1)[0]},{float(r.rsplit(',', 1)[1]) * factor:.6f}" for r in lines[1:]]
    path.write_text("\n".join(out) + "\n")


def _materialized(instance, asset: str) -> dict[str, int]:
    """{partition: materializations of `asset`}."""
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    out: dict[str, int] = {}
    for r in records:
        out[r.partition_key] = out.get(r.partition_key, 0) + 1
    return out


def test_one_changed_log_rebuilds_only_its_partition(tmp_path, dagster_home):
    from pipelines.materialize import open_instance, run_materialize

    landing, home = tmp_path / "landing", tmp_path / "wh"
    changed_log = _two_slices(landing)
    lines: list[str] = []
    first = run_materialize(str(home), str(landing), progress=lines.append)
    assert first.ok and first.partitions_rebuilt == [("h200_sxm", "trtllm", "1.0"), ("h200_sxm", "trtllm", "1.1")]
    status = "\n".join(lines[-3:])
    assert f"{OLD:<44} rebuilt" in status and f"{NEW:<44} rebuilt" in status
    _scale(changed_log, 1.2)
    lines.clear()
    again = run_materialize(str(home), str(landing), progress=lines.append)
    assert again.ok and again.partitions_rebuilt == [("h200_sxm", "trtllm", "1.1")]
    assert f"{OLD:<44} current" in "\n".join(lines) and f"{NEW:<44} rebuilt" in "\n".join(lines)
    instance = open_instance(home)
    assert instance.get_dynamic_partitions("derived_slice") == [OLD, NEW]
    # one materialization per build: 1.0 once (first run), 1.1 twice
    for asset in ("perf_points", "sol_calibration", "interpolation_grids"):
        assert _materialized(instance, asset) == {OLD: 1, NEW: 2}
    runs = instance.get_runs(dg.RunsFilter(job_name="derived_job"))
    assert [r.tags.get("dagster/partition") for r in runs][0] == NEW  # the second run: that partition alone
    assert len(runs) == 2 and runs[1].tags["dagster/asset_partition_range_start"] == OLD
    from estimator.derived.store import DerivedStore

    new = DerivedStore(home).read(("h200_sxm", "trtllm", "1.1"), "perf_points")  # the changed latencies
    old = DerivedStore(home).read(("h200_sxm", "trtllm", "1.0"), "perf_points").filter(pl.col("op") == new["op"][0])
    assert new["latency_ms"].sum() == pytest.approx(old["latency_ms"].sum() * 1.2, rel=1e-4)


def test_checks_run_per_partition(tmp_path, dagster_home):
    from pipelines.definitions import build_defs
    from pipelines.materialize import register_slices
    from estimator.derived.store import DerivedStore

    landing, home = tmp_path / "landing", tmp_path / "wh"
    bad = _two_slices(landing)
    lines = bad.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",0.01"  # slice 1.1 only: latency drops as kv_len grows
    bad.write_text("\n".join(lines) + "\n")
    settings = WarehouseSettings(home=str(home), landing=str(landing), max_concurrent=1)
    defs = build_defs(settings)
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        keys = [f.key for f in settings.scan()[1]]
        instance.add_dynamic_partitions("raw_log_file", keys)
        assert defs.resolve_job_def("ingest_job").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        ).success
        assert register_slices(instance, DerivedStore(home), []) == []
        job = defs.resolve_job_def("derived_job")
        results = {k: job.execute_in_process(instance=instance, partition_key=k) for k in (OLD, NEW)}
    monotonic = {k: [e for e in r.get_asset_check_evaluations() if e.check_name == "latency_monotonic"][0]
                 for k, r in results.items()}
    assert monotonic[OLD].passed and monotonic[OLD].partition == OLD
    assert not monotonic[NEW].passed and monotonic[NEW].partition == NEW
    assert monotonic[NEW].metadata["decreasing_points"].value == 1


def test_slices_sensor_registers_and_requests_only_stale_partitions(tmp_path, dagster_home):
    from pipelines.definitions import build_defs

    landing, home = tmp_path / "landing", tmp_path / "wh"
    changed_log = _two_slices(landing)
    settings = WarehouseSettings(home=str(home), landing=str(landing), max_concurrent=1)
    defs = build_defs(settings)
    sensor = defs.resolve_sensor_def("derived_slices")
    job = defs.resolve_job_def("derived_job")

    def tick(instance):
        result = sensor(dg.build_sensor_context(instance=instance, resources={"settings": settings}))
        if isinstance(result, dg.SkipReason):
            return result
        for req in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        return result

    def ingest(instance):
        keys = [f.key for f in settings.scan()[1]]
        instance.add_dynamic_partitions("raw_log_file", keys)
        ingest_job = defs.resolve_job_def("ingest_job")
        for k in keys:
            assert ingest_job.execute_in_process(instance=instance, partition_key=k).success

    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        assert isinstance(tick(instance), dg.SkipReason)  # nothing ingested yet
        ingest(instance)
        first = tick(instance)
        assert instance.get_dynamic_partitions("derived_slice") == [OLD, NEW]
        assert [r.partition_key for r in first.run_requests] == [OLD, NEW]
        for r in first.run_requests:
            assert job.execute_in_process(instance=instance, partition_key=r.partition_key).success
        assert isinstance(tick(instance), dg.SkipReason)  # every slice current
        _scale(changed_log, 1.2)
        ingest(instance)
        again = tick(instance)
        assert [r.partition_key for r in again.run_requests] == [NEW]
        assert again.run_requests[0].run_key != [r for r in first.run_requests if r.partition_key == NEW][0].run_key


def test_parallel_build_equals_serial_build(tmp_path, dagster_home):
    """workers > 1 (settings.max_concurrent) builds the same tables as one process."""
    from estimator.derived.store import DerivedStore
    from warehouse.ingest import ingest_paths

    landing = tmp_path / "landing"
    _two_slices(landing)
    tables = {}
    for workers in (1, 2):
        home = tmp_path / f"wh{workers}"
        ingest_paths(sorted(p for p in landing.rglob("*.txt")), home)
        store = DerivedStore(home, progress=False)
        assert len(store.refresh(workers=workers)) == 2
        tables[workers] = {t: store.read_all(t) for t in ("perf_points", "sol_calibration", "grids")}
        assert store.stale() == []
    for t, frame in tables[1].items():
        assert frame.equals(tables[2][t]), t


def test_max_concurrent_comes_from_settings(monkeypatch):
    import os

    from pipelines.settings import warehouse_settings

    monkeypatch.setenv("PERFWH_MAX_CONCURRENT", "3")
    assert warehouse_settings(use_env_var=False).workers() == 3
    monkeypatch.delenv("PERFWH_MAX_CONCURRENT")
    assert warehouse_settings(use_env_var=False).workers() == os.cpu_count()


def test_views_writer_runs_alone_across_runs(settings):
    """warehouse_views (the one writer of perf.duckdb) is in a pool of one slot; partition
    steps write disjoint folders and have no pool."""
    from pipelines.definitions import build_defs
    from pipelines.instance import instance_config

    graph = build_defs(settings).resolve_asset_graph()
    pools = {k.to_user_string(): graph.get(k).pools for k in graph.get_all_asset_keys()}
    assert pools["warehouse_views"] == {"warehouse_views"}
    assert not pools["perf_points"] and not pools["interpolation_grids"]
    assert instance_config({})["concurrency"]["pools"] == {"default_limit": 1}
