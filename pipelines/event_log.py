"""Dagster event-log storage that writes a batch of asset events in one transaction.

A run over N raw-log partitions of `measurements` stores N
ASSET_MATERIALIZATION_PLANNED events when it is created and N
ASSET_MATERIALIZATION events when the step ends. Dagster hands each group to
the storage as one batch when `DAGSTER_EVENT_BATCH_SIZE` is set
(`handle_new_event`), but its SQLite storage, and its PostgreSQL storage for
planned events, then store them one by one: a connection, a transaction and a
commit (an fsync) per event in the run's shard and again in the index shard,
about 0.1 s per event on a loaded machine. The classes here store a batch in
one transaction per shard, with the same rows as `store_event` (each event its
own row, its tags and its asset-table update), so per-partition status in the
UI is unchanged.

`pipelines.instance` names these classes in the generated dagster.yaml;
`DAGSTER_EVENT_BATCH_SIZE` is set (unless already set) when this module is
imported, which every process that opens the instance does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.events.log import EventLogEntry
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, EVENT_TYPE_TO_PIPELINE_RUN_STATUS
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result

ENV_EVENT_BATCH_SIZE = "DAGSTER_EVENT_BATCH_SIZE"
# at least the largest run (PERFWH_SENSOR_MAX_FILES partitions): a run's planned
# events, and its materializations, are then one write each
DEFAULT_EVENT_BATCH_SIZE = 1000

os.environ.setdefault(ENV_EVENT_BATCH_SIZE, str(DEFAULT_EVENT_BATCH_SIZE))


def _event_id(conn, statement) -> int:
    with db_result(conn, statement) as result:
        event_id = result.inserted_primary_key[0]
    if event_id is None:
        raise DagsterInvariantViolationError("Cannot store asset event tags for null event id.")
    return event_id


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` whose `store_event_batch` is one transaction per shard."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # noqa: D102
        return cls(inst_data=inst_data, **config_value)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        events = list(events)
        if len(events) < 2 or len({e.run_id for e in events}) != 1:
            return super().store_event_batch(events)
        statements = [self.prepare_insert_event(e) for e in events]
        with self.run_connection(events[0].run_id) as conn:
            for statement in statements:
                conn.execute(statement)
        checks = []
        with self.index_transaction() as conn:
            # the index-shard writes of store_event, in one transaction
            for event, statement in zip(events, statements):
                kind = event.dagster_event_type if event.is_dagster_event else None
                if kind in ASSET_EVENTS:
                    event_id = _event_id(conn, statement)
                    self._store_asset_event_tags(conn, [event], [event_id])
                    self._store_asset_event(conn, event, event_id)
                if kind in ASSET_CHECK_EVENTS:
                    checks.append((event, _event_id(conn, statement)))
                if kind in EVENT_TYPE_TO_PIPELINE_RUN_STATUS:
                    conn.execute(statement)
        for event, event_id in checks:
            self.store_asset_check_event(event, event_id)


def _postgres_class():
    from dagster_postgres.event_log import PostgresEventLogStorage
    from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
    from sqlalchemy import text

    from dagster._core.events import DagsterEventType
    from dagster._core.storage.event_log.schema import SqlEventLogStorageTable

    planned = {DagsterEventType.ASSET_MATERIALIZATION_PLANNED, DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED}

    class BatchedPostgresEventLogStorage(PostgresEventLogStorage):
        """`PostgresEventLogStorage` that also stores a batch of planned events in one transaction
        (Dagster's own batch write covers materializations and observations only)."""

        @classmethod
        def from_config_value(cls, inst_data, config_value):  # noqa: D102
            return cls(
                inst_data=inst_data,
                postgres_url=pg_url_from_config(config_value),
                should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                token_provider=get_token_provider_from_config(config_value),
            )

        def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
            events = list(events)
            if len(events) < 2 or not {e.dagster_event_type for e in events} <= planned:
                return super().store_event_batch(events)
            checks = []
            with self.index_transaction() as conn:
                # store_event's writes, in one transaction
                for event in events:
                    row = conn.execute(
                        self.prepare_insert_event(event).returning(
                            SqlEventLogStorageTable.c.run_id, SqlEventLogStorageTable.c.id
                        )
                    ).fetchone()
                    conn.execute(text("NOTIFY run_events, :notify_id"), {"notify_id": f"{row[0]}_{row[1]}"})
                    event_id = int(row[1])
                    if event.dagster_event_type in ASSET_EVENTS and event.dagster_event.asset_key:
                        self._store_asset_event_tags(conn, [event], [event_id])
                        self._store_asset_event(conn, event, event_id)
                    if event.dagster_event_type in ASSET_CHECK_EVENTS:
                        checks.append((event, event_id))
            for event, event_id in checks:
                self.store_asset_check_event(event, event_id)

    return BatchedPostgresEventLogStorage


def __getattr__(name: str):
    # dagster-postgres is an optional dependency: load its subclass on first use
    if name == "BatchedPostgresEventLogStorage":
        cls = _postgres_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
