"""The batched event log (pipelines.event_log): a run over N raw-log partitions stores
the same events and per-partition status as Dagster's own storage, in a number of
storage transactions that does not grow with N."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from pipelines.event_log import BatchedSqliteEventLogStorage
from pipelines.instance import write_instance_config
from tests.pipelines.fixtures import DSA, VERSION_DIR, context_latency, context_row, write
from tests.pipelines.postgres import postgres_url  # noqa: F401  (fixture)

MEASUREMENTS = dg.AssetKey("measurements")
PLANNED = dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
MATERIALIZED = dg.DagsterEventType.ASSET_MATERIALIZATION


def write_logs(landing: Path, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        rows = [context_row("dsa_context_module", DSA, 1, s, context_latency(1, s) * (1 + i / 1000)) for s in (1024, 2048)]
        write(landing / VERSION_DIR / f"dsa_context_module_perf_{i:03d}.txt", rows)


def ingest_ticks(instance, tmp_path: Path, files: list[int], after_tick=lambda: None) -> list[bool]:
    """Drop `files[t]` new logs before tick t; run each tick's run requests in process."""
    from assets.resources import WarehouseSettings
    from pipelines.definitions import build_defs

    landing = tmp_path / "landing"
    settings = WarehouseSettings(home=str(tmp_path / "wh"), landing=str(landing))
    defs = build_defs(settings)
    sensor, job = defs.resolve_sensor_def("landing_sensor"), defs.resolve_job_def("ingest_job")
    cursor, ok, dropped = None, [], 0
    for n in files:
        write_logs(landing, n, dropped)
        dropped += n
        result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"settings": settings}))
        cursor = result.cursor
        for req in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        for req in result.run_requests:
            ok.append(job.execute_in_process(instance=instance, tags=req.tags, raise_on_error=False).success)
        after_tick()
    return ok


def status(instance) -> dict:
    """What the UI shows of `measurements`: status per partition, and the stored asset events."""
    partitions = dg.DynamicPartitionsDefinition(name="raw_log_file")
    keys = instance.get_dynamic_partitions("raw_log_file")
    by_key = instance.get_status_by_partition(MEASUREMENTS, keys, partitions)
    events = {
        kind: sorted(
            r.event_log_entry.dagster_event.partition or ""
            for r in instance.get_event_records(dg.EventRecordsFilter(kind, asset_key=MEASUREMENTS))
        )
        for kind in (PLANNED, MATERIALIZED)
    }
    return {"status": {k: str(v) for k, v in by_key.items()}, "events": events,
            "materialized": sorted(instance.get_materialized_partitions(MEASUREMENTS))}


@pytest.fixture
def count_connections(monkeypatch):
    """Count the SQLite connections the event log opens (one per transaction)."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    opened = []

    def counting(connect):
        def _connect(self, shard):
            opened.append(shard)
            return connect(self, shard)
        return _connect

    for cls in (SqliteEventLogStorage, BatchedSqliteEventLogStorage):  # the batched one has its own
        monkeypatch.setattr(cls, "_connect", counting(cls._connect))
    return opened


def test_generated_sqlite_instance_batches_and_shows_the_same_status(tmp_path, count_connections):
    batched_home = write_instance_config(tmp_path / "batched", environ={}).parent
    plain_home = tmp_path / "plain"  # Dagster's own SQLite storage, no dagster.yaml
    plain_home.mkdir()
    seen = {}
    for name, home in (("batched", batched_home), ("plain", plain_home)):
        with dg.DagsterInstance.from_config(str(home)) as instance:
            count_connections.clear()
            per_tick = []
            # a run of 3 new files, then a run of 12
            ok = ingest_ticks(instance, tmp_path / name, [3, 12], lambda: per_tick.append(len(count_connections)))
            assert ok == [True, True]
            few, many = per_tick[0], per_tick[1] - per_tick[0]
            seen[name] = (status(instance), few, many, type(instance.event_log_storage))
    assert seen["batched"][3] is BatchedSqliteEventLogStorage
    assert seen["plain"][3] is not BatchedSqliteEventLogStorage
    # the UI's view: all 15 partitions materialized, one planned and one materialization event each
    assert seen["batched"][0] == seen["plain"][0]
    st = seen["batched"][0]
    assert len(st["materialized"]) == 15 and set(st["status"].values()) == {"AssetPartitionStatus.MATERIALIZED"}
    assert st["events"][PLANNED] == st["events"][MATERIALIZED] == st["materialized"]
    # Dagster's storage opens two connections per partition and event (run shard, index shard);
    # the batched one a number that does not grow with the files of a run
    _, few, many, _ = seen["plain"]
    assert many - few >= 4 * 9
    _, few, many, _ = seen["batched"]
    assert few > 0 and many - few <= 2


def test_sqlite_shards_stay_open_in_wal_mode_between_writes(tmp_path):
    """Closing Dagster's connection after each write does not checkpoint the WAL away (fsyncs);
    another reader (a webserver) sees every event; closing the instance checkpoints it."""
    home = write_instance_config(tmp_path / "dh", environ={}).parent
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert ingest_ticks(instance, tmp_path, [3]) == [True]
        storage = instance.event_log_storage
        run_id = instance.get_runs()[0].run_id
        with storage.run_connection(run_id) as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        shard = Path(storage.path_for_shard(run_id))
        assert Path(f"{shard}-wal").exists()
        with dg.DagsterInstance.from_config(str(home)) as reader:
            logs = reader.all_logs(run_id)
            assert len(logs) == len(instance.all_logs(run_id)) and any(e.is_dagster_event for e in logs)
    assert not Path(f"{shard}-wal").exists()


def test_a_failed_batch_run_marks_each_of_its_partitions_failed(tmp_path, monkeypatch):
    """Planned events stay one per partition, so a failed run still shows which files failed."""
    home = write_instance_config(tmp_path / "dh", environ={}).parent
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("assets.ingest.ingest_paths", broken)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert ingest_ticks(instance, tmp_path, [4]) == [False]
        st = status(instance)
    assert len(st["status"]) == 4 and set(st["status"].values()) == {"AssetPartitionStatus.FAILED"}
    assert len(st["events"][PLANNED]) == 4 and st["events"][MATERIALIZED] == []


def test_postgres_instance_batches_planned_events_with_the_same_status(tmp_path, monkeypatch, postgres_url):  # noqa: F811
    from dagster_postgres.event_log import PostgresEventLogStorage

    one_by_one = []
    store_event = PostgresEventLogStorage.store_event

    def counting(self, event):
        dagster_event = event.dagster_event
        one_by_one.append((dagster_event.event_type, dagster_event.asset_key) if dagster_event else None)
        return store_event(self, event)

    monkeypatch.setattr(PostgresEventLogStorage, "store_event", counting)
    monkeypatch.setenv("PERFWH_DAGSTER_PG_URL", postgres_url)
    home = write_instance_config(tmp_path / "dh").parent
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage).__name__ == "BatchedPostgresEventLogStorage"
        assert ingest_ticks(instance, tmp_path, [5]) == [True]
        st = status(instance)
    assert len(st["materialized"]) == 5 and set(st["status"].values()) == {"AssetPartitionStatus.MATERIALIZED"}
    assert st["events"][PLANNED] == st["events"][MATERIALIZED] == st["materialized"]
    # neither the planned events nor the materializations of the partitions were stored one by one
    assert (PLANNED, MEASUREMENTS) not in one_by_one and (MATERIALIZED, MEASUREMENTS) not in one_by_one
    assert (dg.DagsterEventType.RUN_SUCCESS, None) in one_by_one
