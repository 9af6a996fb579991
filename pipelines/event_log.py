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

The SQLite class also keeps the shards it writes in WAL mode and open. Dagster
opens a connection per write and closes it; the close of a shard's last
connection checkpoints the WAL and deletes it, so that every write costs
about four fsyncs (the WAL created, the commit, the checkpoint of WAL and
database), ~1 s of a one-file `perfwh materialize`. One idle connection per
shard (the index and the latest runs) keeps the WAL alive between writes,
and writes commit with `synchronous=NORMAL`, SQLite's setting for WAL: the
database stays consistent after a power loss, which may lose its last events.

`pipelines.instance` names these classes in the generated dagster.yaml;
`DAGSTER_EVENT_BATCH_SIZE` is set (unless already set) when this module is
imported, which every process that opens the instance does.
"""

from __future__ import annotations

import os
import sqlite3
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.events.log import EventLogEntry
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, EVENT_TYPE_TO_PIPELINE_RUN_STATUS
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

ENV_EVENT_BATCH_SIZE = "DAGSTER_EVENT_BATCH_SIZE"
# at least the largest run (PERFWH_SENSOR_MAX_FILES partitions): a run's planned
# events, and its materializations, are then one write each
DEFAULT_EVENT_BATCH_SIZE = 1000
# shards kept open besides the index: the runs this process is writing (a daemon's older ones are let go)
KEEP_OPEN_RUNS = 4

os.environ.setdefault(ENV_EVENT_BATCH_SIZE, str(DEFAULT_EVENT_BATCH_SIZE))


def _event_id(conn, statement) -> int:
    with db_result(conn, statement) as result:
        event_id = result.inserted_primary_key[0]
    if event_id is None:
        raise DagsterInvariantViolationError("Cannot store asset event tags for null event id.")
    return event_id


def _wal_normal(dbapi_connection, _record) -> None:
    """New shards in WAL mode (before their tables are created), commits without an fsync."""
    cursor = dbapi_connection.cursor()
    try:
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            if cursor.execute("PRAGMA page_count").fetchone()[0]:
                return  # an existing rollback-journal shard (another writer may hold it): as it is
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` whose `store_event_batch` is one transaction per shard,
    and whose shards stay open in WAL mode between writes."""

    def __init__(self, *args, **kwargs):
        self._open_shards: OrderedDict[str, sqlite3.Connection] = OrderedDict()
        super().__init__(*args, **kwargs)

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # noqa: D102
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # SqliteEventLogStorage._connect (dagster 1.13) with `_wal_normal` on every connection
        with self._db_lock:
            engine = create_engine(self.conn_string_for_shard(shard), poolclass=NullPool,
                                   connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
            event.listen(engine, "connect", _wal_normal)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            self._keep_open(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn
            engine.dispose()

    def _keep_open(self, shard: str) -> None:
        """One idle connection to `shard`, so that closing Dagster's is not the last close."""
        if shard in self._open_shards:
            self._open_shards.move_to_end(shard)
            return
        keeper = sqlite3.connect(self.path_for_shard(shard), timeout=SQLITE_BUSY_TIMEOUT_SECONDS,
                                 check_same_thread=False)
        if keeper.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            keeper.close()
            return
        self._open_shards[shard] = keeper
        runs = [s for s in self._open_shards if s != INDEX_SHARD_NAME]
        for old in runs[:-KEEP_OPEN_RUNS]:
            self._open_shards.pop(old).close()

    def _close_shards(self) -> None:
        while self._open_shards:
            self._open_shards.popitem()[1].close()  # the last close checkpoints the WAL

    def wipe(self) -> None:  # noqa: D102
        with self._db_lock:
            self._close_shards()
        super().wipe()

    def dispose(self) -> None:  # noqa: D102
        with self._db_lock:
            self._close_shards()
        super().dispose()

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
