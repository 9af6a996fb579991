"""The generated Dagster instance: SQLite by default, PostgreSQL-backed runs on a real server."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from pipelines.instance import ENV_PG_URL, instance_config, main, write_instance_config
from tests.pipelines.fixtures import write_dsa_context
from tests.pipelines.postgres import postgres_url  # noqa: F401  (fixture)


def test_default_instance_is_sqlite_with_telemetry_off(tmp_path):
    path = write_instance_config(tmp_path / "dh", environ={})
    config = yaml.safe_load(path.read_text())
    assert "storage" not in config
    assert config["event_log_storage"]["class"] == "BatchedSqliteEventLogStorage"
    assert config["telemetry"] == {"enabled": False}
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 2
    instance = dg.DagsterInstance.from_config(str(tmp_path / "dh"))
    assert type(instance.run_storage).__name__ == "SqliteRunStorage"
    assert type(instance.event_log_storage).__name__ == "BatchedSqliteEventLogStorage"


def test_postgres_url_is_named_by_its_env_var_never_written():
    secret = "postgresql://u:hunter2@db:5432/dagster"
    config = instance_config({ENV_PG_URL: secret, "PERFWH_MAX_CONCURRENT_RUNS": "8"})
    url = {"postgres_url": {"env": ENV_PG_URL}}
    assert {k: (config[k]["class"], config[k]["config"]) for k in ("run_storage", "event_log_storage", "schedule_storage")} == {
        "run_storage": ("PostgresRunStorage", url),
        "event_log_storage": ("BatchedPostgresEventLogStorage", url),
        "schedule_storage": ("PostgresScheduleStorage", url),
    }
    assert "hunter2" not in yaml.safe_dump(config)
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 8


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_bad_run_limit_is_a_one_line_error(tmp_path, monkeypatch, capsys, bad):
    monkeypatch.setenv("PERFWH_MAX_CONCURRENT_RUNS", bad)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PERFWH_MAX_CONCURRENT_RUNS" in err
    assert not (tmp_path / "dagster.yaml").exists()


def test_runs_and_events_land_in_postgres(tmp_path, monkeypatch, postgres_url):  # noqa: F811
    """An ingest run on a Postgres-backed instance: the run, its events and the dynamic
    partitions are in the server's tables, and a second instance object (another process
    in production) sees them."""
    import sqlalchemy as sa

    from assets.resources import WarehouseSettings
    from pipelines.definitions import build_defs

    monkeypatch.setenv(ENV_PG_URL, postgres_url)
    home = tmp_path / "dagster_home"
    write_instance_config(home)
    landing = tmp_path / "landing"
    write_dsa_context(landing)
    settings = WarehouseSettings(home=str(tmp_path / "wh"), landing=str(landing))

    instance = dg.DagsterInstance.from_config(str(home))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "BatchedPostgresEventLogStorage"
    defs = build_defs(settings)
    job = defs.resolve_job_def("ingest_job")
    key = "h200_sxm/trtllm/1.0/dsa_context_module_perf.txt"
    instance.add_dynamic_partitions("raw_log_file", [key])
    result = job.execute_in_process(instance=instance, partition_key=key)
    assert result.success

    other = dg.DagsterInstance.from_config(str(home))
    runs = other.get_runs()
    assert [r.run_id for r in runs] == [result.run_id]
    assert other.get_dynamic_partitions("raw_log_file") == [key]
    with sa.create_engine(postgres_url).connect() as conn:
        n_runs = conn.execute(sa.text("select count(*) from runs")).scalar_one()
        n_events = conn.execute(
            sa.text("select count(*) from event_logs where run_id = :r"), {"r": result.run_id}
        ).scalar_one()
    assert n_runs == 1
    assert n_events > 10
