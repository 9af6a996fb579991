"""The Dagster instance configuration (`$DAGSTER_HOME/dagster.yaml`), generated from settings.

SQLite in `DAGSTER_HOME` stays the default (`make demo`, `make ui`); with
`PERFWH_DAGSTER_PG_URL` set, run, event-log and schedule storage go to
PostgreSQL through dagster-postgres, so that a webserver, a daemon and run
workers on several hosts share one instance. Either way the event log is
`pipelines.event_log`'s subclass of Dagster's, which stores a run's planned
partitions and its materializations as one transaction each instead of one
per partition (a run over N raw logs writes 2N such events). The URL itself is never written
to the file: the file names the environment variable, as Dagster recommends
for secrets.

| variable                      | default                                      |
|-------------------------------|----------------------------------------------|
| PERFWH_DAGSTER_PG_URL         | unset: SQLite storage in DAGSTER_HOME         |
| PERFWH_MAX_CONCURRENT_RUNS    | 2 (queued run coordinator limit)             |

Usage: `python -m pipelines.instance [DAGSTER_HOME]` writes the file (the
Makefile's `ui` target and the deployment images call it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

ENV_PG_URL = "PERFWH_DAGSTER_PG_URL"
ENV_MAX_CONCURRENT_RUNS = "PERFWH_MAX_CONCURRENT_RUNS"
DEFAULT_MAX_CONCURRENT_RUNS = 2


def _positive_int(env, name: str, default: int) -> int:
    text = env.get(name) or str(default)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"${name} must be a positive integer, got {text!r}")
    return int(text)


def _pg_url() -> dict:
    return {"postgres_url": {"env": ENV_PG_URL}}  # a new dict each time: no YAML anchors


def instance_config(environ: dict[str, str] | None = None, dagster_home: str | Path | None = None) -> dict:
    """The dagster.yaml content as a dict, for the environment `environ` (default: os.environ).

    The event log is stored by `pipelines.event_log`'s classes, which write a
    batch of asset events (a run's planned partitions, its materializations) in
    one transaction; with SQLite this needs the storage folder, so the SQLite
    default keeps Dagster's own event log when `dagster_home` is not given.
    """
    env = os.environ if environ is None else environ
    config: dict = {
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
        "concurrency": {
            "runs": {"max_concurrent_runs": _positive_int(env, ENV_MAX_CONCURRENT_RUNS, DEFAULT_MAX_CONCURRENT_RUNS)},
            # one step at a time per pool: warehouse_views (perf.duckdb) must not overlap across runs
            "pools": {"default_limit": 1},
        },
    }
    if env.get(ENV_PG_URL):
        # Dagster's `storage: postgres` shorthand (which allows no other event log), spelled out
        config["run_storage"] = {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage", "config": _pg_url()}
        config["event_log_storage"] = {
            "module": "pipelines.event_log",
            "class": "BatchedPostgresEventLogStorage",
            "config": _pg_url(),
        }
        config["schedule_storage"] = {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": _pg_url(),
        }
    elif dagster_home is not None:
        config["event_log_storage"] = {
            "module": "pipelines.event_log",
            "class": "BatchedSqliteEventLogStorage",
            "config": {"base_dir": str(Path(dagster_home).resolve() / "storage")},
        }
    return config


def write_instance_config(dagster_home: str | Path, environ: dict[str, str] | None = None) -> Path:
    """Write `dagster_home/dagster.yaml` (atomically) and return its path."""
    home = Path(dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    tmp = target.with_name(".dagster.yaml.tmp")
    tmp.write_text(yaml.safe_dump(instance_config(environ, home), sort_keys=False))
    os.replace(tmp, target)
    return target


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    home = argv[0] if argv else os.environ.get("DAGSTER_HOME")
    if not home:
        print("error: give DAGSTER_HOME as an argument or set $DAGSTER_HOME", file=sys.stderr)
        return 2
    try:
        path = write_instance_config(home)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    storage = "postgres ($" + ENV_PG_URL + ")" if os.environ.get(ENV_PG_URL) else "sqlite"
    print(f"wrote {path} (storage: {storage})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
