"""The warehouse's tables in Delta Lake (delta-rs): measurements, quarantine, ledger.

Layout under the home folder:

    measurements/_delta_log/...                         Delta transaction log
    measurements/source_sha256=<sha>/<sha20>-<n>-<id>.parquet
    quarantine/_delta_log/...
    quarantine/source_sha256=<sha>/<sha20>-<id>.parquet
    ledger/_delta_log/...                               append-only event log
    ledger/<part>.parquet

The home may be `s3://bucket/prefix` (warehouse/location.py): the same layout
under the prefix, the same commits (delta-rs, conditional-put log entries).

Both data tables are partitioned by the content hash of the raw log the rows
came from: a partition value is 64 hex digits whatever the system, framework
or version strings hold (so partition folders are injective and short), and
one raw log is one partition, replaced as a whole by a partition overwrite.

The ledger is the commit point. Ingesting a batch of raw logs commits their
rows to `measurements` (and `quarantine`) in one commit per table (each log its
own partition), then appends one event per log to `ledger`, all in one commit,
naming the source, its counts, the checksum of every data file it wrote and the
table versions that hold them. A reader pins one ledger version and reads the
data tables at the versions that ledger version records, keeping only the
data files that the live event of each source names: rows committed by a
writer killed before its ledger event, partitions of superseded sources, and
the second data file two writers racing on one raw log commit into its
partition, are never visible, and the data tables' own commits never conflict
with each other (different partitions) nor with the ledger's (blind appends).
So writers need no shared lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction

from . import table_cache
from .atomic import fsync_dir
from .location import ObjectHome, arrow_location, delta_storage_options, is_object_url
from .schema import LEDGER_SCHEMA, MEASUREMENT_SCHEMA, QUARANTINE_SCHEMA

PARTITION = "source_sha256"
DATA_TABLES = ("measurements", "quarantine")
TABLES = (*DATA_TABLES, "ledger")
LIVE = ("ingested", "replaced")

# Files a commit removed stay on disk this long (Delta's vacuum retention), so
# readers of an older version, and perf.duckdb views built before the removal,
# keep working.
RETENTION_HOURS = 168
# Partitions of sources that no ledger event makes live are removed once
# their files are older than this (a writer is never that long between its
# data commit and its ledger event; a killed one left them behind).
ORPHAN_GRACE_S = 3600.0

# Ledger events: the folded ledger (LEDGER_SCHEMA) plus what the event commits.
LEDGER_EVENT_SCHEMA: dict[str, pl.DataType] = {
    **LEDGER_SCHEMA,
    "blank_lines": pl.Int64(),
    "header_lines": pl.Int64(),
    "measurements_version": pl.Int64(),
    "quarantine_version": pl.Int64(),
    "data_files": pl.String(),  # JSON: [{"table", "path", "bytes", "sha256"}]
    "event_at": pl.Datetime("us", "UTC"),
    "writer": pl.String(),
}


class StorageError(ValueError):
    """The store cannot be used as it is (a lost transaction log, a damaged file)."""


def _arrow_type(dtype: pl.DataType) -> pa.DataType:
    return pl.DataFrame(schema={"c": dtype}).to_arrow().schema.field("c").type


def arrow_schema(schema: dict[str, pl.DataType]) -> pa.Schema:
    """The Delta schema of a table: text as plain strings, timestamps in microseconds UTC."""
    fields = []
    for name, dtype in schema.items():
        t = pa.string() if dtype == pl.String else _arrow_type(dtype)
        fields.append(pa.field(name, t))
    return pa.schema(fields)


TABLE_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "measurements": MEASUREMENT_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
    "ledger": LEDGER_EVENT_SCHEMA,
}


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


WRITER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class DataFile:
    table: str
    path: str  # relative to the table root
    bytes: int
    sha256: str

    def as_json(self) -> dict:
        return {"table": self.table, "path": self.path, "bytes": self.bytes, "sha256": self.sha256}


class Store:
    """The three Delta tables of one warehouse home: a local folder or an `s3://` prefix.

    Both kinds share every commit path; only the data-file write differs
    (fsync on a local disk, one PUT on object storage, which is atomic).
    """

    def __init__(self, home: Path | ObjectHome):
        self.home = ObjectHome(home) if is_object_url(str(home)) else Path(home)
        self.local = not isinstance(self.home, ObjectHome)
        if self.local and (escape := re.search(r"%[0-9A-Fa-f]{2}", str(self.home))):
            # delta-rs decodes it once more however the URI is quoted: "50%41" is read as "50A", and a
            # first ingest died in a Rust traceback ("File not found" or "non-unicode characters")
            raise StorageError(f"warehouse home {self.home}: delta-rs reads {escape.group()!r} in a folder name as "
                               "an escaped character; choose a path without '%' followed by two hex digits")
        self.options = None if self.local else delta_storage_options()

    def uri(self, table: str) -> str:
        return str(self.home / table)

    def any_file(self, rel: str) -> bool:
        """Whether the folder `rel` (under the home) holds anything."""
        if self.local:
            folder = self.home / rel
            return folder.is_dir() and any(folder.iterdir())
        import pyarrow.fs as pafs

        fs, path = arrow_location(self.home / rel)
        return bool(fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False)))

    def has_log(self, table: str) -> bool:
        return self.any_file(f"{table}/_delta_log")

    def exists(self) -> bool:
        return self.has_log("ledger")

    def table(self, name: str, version: int | datetime | None = None, *, create: bool = False) -> DeltaTable:
        """The Delta table `name` (at `version`); with `create`, made empty where there is none.

        A folder that holds data files but no transaction log is refused: the
        log is the only record of which files are live, and writing a fresh
        table over those files could let cleanup delete them.
        """
        uri = self.uri(name)
        kept = table_cache.latest(uri, self.local)  # this process opened it before: only new commits read
        if kept is not None and (version is None or version == kept.version()):
            return kept
        try:
            dt = DeltaTable(uri, storage_options=self.options)
        except TableNotFoundError:
            folder = self.home / name
            if self.any_file(name):
                raise StorageError(
                    f"{folder}: data files but no readable Delta transaction log (_delta_log); "
                    "refusing to write over them: restore the log or ingest into a fresh --home"
                ) from None
            if not create:
                raise StorageError(f"no warehouse at {self.home}: run `perfwh ingest PATH` first") from None
            dt = self._create(name)
        except DeltaError as exc:  # a damaged commit file: its message runs on with a Rust backtrace
            raise StorageError(f"{self.home / name}: its Delta transaction log cannot be read "
                               f"({str(exc).strip().splitlines()[0]})") from None
        if kept is None and (version is None or version == dt.version()):
            table_cache.keep(uri, self.local, dt)  # at the latest version
        elif version is not None:
            latest = dt.version()
            try:
                dt.load_as_version(version)
            except Exception as exc:  # noqa: BLE001 - delta-rs raises several types here
                why = (f"the versions are 0..{latest}" if isinstance(version, int) and version > latest
                       else str(exc).splitlines()[0])  # past the end: say where the end is, not delta-rs' words
                raise ValueError(f"{name}: no version {version!r} ({why})") from None
        return dt

    def _create(self, name: str) -> DeltaTable:
        schema = arrow_schema(TABLE_SCHEMAS[name])
        partition_by = [PARTITION] if name in DATA_TABLES else None
        try:
            return DeltaTable.create(
                self.uri(name), schema, mode="ignore", partition_by=partition_by,
                configuration={"delta.deletedFileRetentionDuration": f"interval {RETENTION_HOURS} hours"},
                storage_options=self.options,
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - a concurrent writer created it first
            return DeltaTable(self.uri(name), storage_options=self.options)

    def create_tables(self) -> None:
        """Open (or create empty) all three tables before any data file is written."""
        for name in TABLES:
            self.table(name, create=True)

    # data files ----------------------------------------------------------
    def write_bytes(self, table: str, sha: str, data: bytes | memoryview, name: str) -> DataFile:
        """Write one encoded data file of partition `sha` (not yet committed), with its checksum."""
        rel = f"{PARTITION}={sha}/{name}"
        if not self.local:  # one PUT: the object appears whole or not at all
            fs, path = arrow_location(self.home / table / rel)
            with fs.open_output_stream(path) as out:
                out.write(data)
            return DataFile(table, rel, len(data), hashlib.sha256(data).hexdigest())
        target = self.home / table / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(target.parent)
        return DataFile(table, rel, len(data), hashlib.sha256(data).hexdigest())

    def commit_partitions(self, table: str, parts: dict[str, tuple[list[DataFile], list[int]]]) -> int:
        """Replace each partition `sha` of `table` by its `(files, rows)` (none: dropped), all in one
        commit; returns the new table version.

        An overwrite restricted to those partitions: writers of other partitions
        do not conflict, and whatever a killed writer left in one of them goes.
        """
        dt = self.table(table, create=True)
        stamp = int(time.time() * 1000)
        actions = [
            AddAction(f.path, f.bytes, {PARTITION: sha}, stamp, True, json.dumps({"numRecords": n}))
            for sha, (files, rows) in parts.items()
            for f, n in zip(files, rows)
        ]
        dt.create_write_transaction(
            actions, "overwrite", arrow_schema(TABLE_SCHEMAS[table]), partition_by=[PARTITION],
            partition_filters=[(PARTITION, "in", sorted(parts))],
        )  # fmt: skip
        dt.update_incremental()  # a version at or after this commit (readers pin one at most this new)
        return dt.version()

    def drop_partitions(self, table: str, shas: list[str]) -> int | None:
        """Remove partitions `shas` of `table` in one commit (None: nothing to do)."""
        return self.commit_partitions(table, {sha: ([], []) for sha in shas}) if shas else None

    def remove_files(self, table: str, files: list[tuple[str, str, int]]) -> None:
        """Remove (path, sha, bytes) files from `table` in one commit; vacuum deletes them after retention."""
        if not files:
            return
        dt = self.table(table, create=True)
        live = set(self.files(dt).get_column("path").to_list())
        stamp = int(time.time() * 1000)
        actions = [RemoveAction(p, data_change=True, deletion_timestamp=stamp, size=n, partition_values={PARTITION: s})
                   for p, s, n in files if p in live]
        if actions:
            dt.create_write_transaction(actions, "append", arrow_schema(TABLE_SCHEMAS[table]), partition_by=[PARTITION])

    @staticmethod
    def files(dt: DeltaTable) -> pl.DataFrame:
        """(path, sha, bytes, modified) of the files live in `dt`'s loaded version."""
        # through the Arrow stream interface: pa.table() on a foreign table imports pandas (~0.3 s) to ask
        # whether it is a DataFrame
        acts = pa.RecordBatchReader.from_stream(dt.get_add_actions(flatten=True)).read_all()
        if acts.num_rows == 0:
            return pl.DataFrame(schema={"path": pl.String, "sha": pl.String, "bytes": pl.Int64, "modified": pl.Int64})
        return pl.DataFrame(
            {
                "path": acts["path"].to_pylist(),
                "sha": acts[f"partition.{PARTITION}"].to_pylist(),
                "bytes": acts["size_bytes"].to_pylist(),
                "modified": acts["modification_time"].to_pylist(),
            }
        )

    # ledger ---------------------------------------------------------------
    def append_events(self, events: list[dict]) -> int:
        """Append ledger events in one commit (the commit point); returns the ledger version."""
        frame = pl.DataFrame(events, schema=LEDGER_EVENT_SCHEMA)
        dt = self.table("ledger", create=True)
        write_deltalake(dt, frame.to_arrow().cast(arrow_schema(LEDGER_EVENT_SCHEMA)), mode="append")
        dt.update_incremental()
        return dt.version()

    def vacuum(self) -> int:
        """Delete files removed from every table more than RETENTION_HOURS ago; never untracked files."""
        removed = 0
        for name in TABLES:
            if self.has_log(name):
                removed += len(self.table(name).vacuum(RETENTION_HOURS, dry_run=False))
        return removed


def fold_events(events: pl.DataFrame) -> pl.DataFrame:
    """The ledger as of these events: the last event of each (sha256, path), and one live content
    per path, that of its last event. Two writers that ingested a path's old and new content at
    once each made theirs live, neither knowing the other's; the later event supersedes the other
    as a replace would have (else both contents count, and the next run calls the path unchanged).
    """
    if events.height == 0:
        return events
    folded = (
        events.with_row_index("_n")
        .sort("event_at", "_n")
        .unique(subset=["sha256", "path"], keep="last", maintain_order=True)
        .drop("_n")
        .with_row_index("_n")
    )
    live = pl.col("status").is_in(LIVE)
    newest = folded.filter(live).group_by("path").agg(pl.col("_n").max(), pl.col("sha256").last())
    lost = live & ~pl.col("_n").is_in(newest["_n"].implode())
    later = pl.col("path").replace_strict(newest["path"], newest["sha256"], default="")
    return folded.with_columns(
        pl.when(lost).then(pl.lit("superseded")).otherwise(pl.col("status")).alias("status"),
        pl.when(lost).then(pl.format("replaced by {} (ingested at the same time)", later.str.slice(0, 12)))
        .otherwise(pl.col("message")).alias("message"),
    ).drop("_n")


@dataclass
class Snapshot:
    """One committed version of the warehouse: what every reader of it sees.

    `version` is the ledger's Delta version; the data tables are read at the
    versions it records, restricted to the partitions of live sources.
    """

    home: Path | ObjectHome
    version: int
    committed_at: datetime | None
    measurements_version: int
    quarantine_version: int
    events: pl.DataFrame
    ledger: pl.DataFrame  # folded: one row per (sha256, path)
    measurement_files: pl.DataFrame  # path (absolute), sha, bytes
    quarantine_files: pl.DataFrame
    checksums: dict[tuple[str, str], DataFile] = field(default_factory=dict)  # (table, rel path) -> file

    @property
    def live(self) -> pl.DataFrame:
        return self.ledger.filter(pl.col("status").is_in(LIVE))

    @property
    def live_shas(self) -> list[str]:
        return self.live.get_column("sha256").to_list()

    def files(self, table: str) -> list[str]:
        frame = self.measurement_files if table == "measurements" else self.quarantine_files
        return frame.get_column("path").to_list()

    @property
    def tag(self) -> str:
        """Identity of the committed measurements: the sorted content hashes of their data files."""
        h = hashlib.sha256()
        for key in sorted(k for k in self.checksums if k[0] == "measurements"):
            h.update(self.checksums[key].sha256.encode())
        for sha in sorted(self.live_shas):
            h.update(sha.encode())
        return h.hexdigest()[:16]


def empty_snapshot(home: Path | ObjectHome) -> Snapshot:
    empty = pl.DataFrame(schema=LEDGER_EVENT_SCHEMA)
    nofiles = pl.DataFrame(schema={"path": pl.String, "sha": pl.String, "bytes": pl.Int64})
    return Snapshot(home, 0, None, -1, -1, empty, empty, nofiles, nofiles)


def read_events(dt: DeltaTable) -> pl.DataFrame:
    """The ledger's events at `dt`'s loaded version.

    A local ledger's files are read by polars: delta-rs reads through
    pyarrow.dataset, whose import (pandas with it) costs an ingest ~0.5 s.
    The ledger is append-only, so its live files are all its rows. Its URIs
    are percent-encoded (a home under "My Drive" reads "My%20Drive").
    """
    files = dt.file_uris()
    if not files:
        frame = pl.DataFrame(schema=LEDGER_EVENT_SCHEMA)
    elif all(f.startswith("/") for f in files):
        frame = pl.concat([pl.read_parquet(unquote(f)) for f in files], how="diagonal_relaxed")
    else:
        frame = pl.from_arrow(pa.table(dt.to_pyarrow_table()))
    return frame.select([pl.col(c).cast(t) for c, t in LEDGER_EVENT_SCHEMA.items()])


# Snapshots this process loaded, by (ledger URI, the table's identity, version): a committed
# version never changes, and one `perfwh materialize` loads the same one ~15 times (landing
# state, assets, derived store, views), ~0.05 s each. Local homes only (table_cache.identity).
_SNAPSHOTS: dict[tuple, Snapshot] = {}
SNAPSHOTS_KEPT = 4


def _snapshot_key(store: Store, dt: DeltaTable) -> tuple | None:
    uri = store.uri("ledger")
    ident = table_cache.identity(uri, store.local) if store.local else None
    return None if ident is None else (uri, ident, dt.version())


def load_snapshot(home: Path | ObjectHome, as_of: int | datetime | None = None) -> Snapshot:
    """The committed state of the warehouse at `home` (latest, or the ledger version / time `as_of`)."""
    store = Store(home)
    if not store.exists():
        if as_of is not None:
            raise ValueError(f"no warehouse at {home}: no version {as_of!r}")
        for name in DATA_TABLES:  # a lost ledger log over existing files is refused here too
            if store.any_file(name) and not store.has_log(name):
                store.table(name)
        if store.any_file("ledger"):
            store.table("ledger")
        return empty_snapshot(store.home)
    dt = store.table("ledger", as_of)
    key = _snapshot_key(store, dt)
    if key in _SNAPSHOTS:
        return _SNAPSHOTS[key]
    events = read_events(dt)
    ledger = fold_events(events)
    version = dt.version()
    committed_at = None
    hist = dt.history(1)
    if hist:
        committed_at = datetime.fromtimestamp(hist[0]["timestamp"] / 1000, timezone.utc)
    mv, qv = (events.get_column(f"{t}_version").max() for t in DATA_TABLES)
    mv, qv = (-1 if v is None else int(v) for v in (mv, qv))
    live = set(ledger.filter(pl.col("status").is_in(LIVE)).get_column("sha256").to_list())
    checksums, unrecorded = recorded_files(ledger)
    frames = {}
    for name, v in (("measurements", mv), ("quarantine", qv)):
        if v < 0 or not live:
            frames[name] = pl.DataFrame(schema={"path": pl.String, "sha": pl.String, "bytes": pl.Int64})
            continue
        named = [rel for table, rel in checksums if table == name]
        files = Store.files(store.table(name, v)).filter(
            pl.col("sha").is_in(list(live)) & (pl.col("path").is_in(named) | pl.col("sha").is_in(unrecorded))
        )
        root = str(store.home / name) + "/"
        frames[name] = files.select(
            (pl.lit(root) + pl.col("path")).alias("path"), "sha", "bytes"
        ).sort("path")
    snap = Snapshot(
        store.home, version, committed_at, mv, qv, events, ledger,
        frames["measurements"], frames["quarantine"], checksums,
    )  # fmt: skip
    if key is not None:
        _SNAPSHOTS[key] = snap
        while len(_SNAPSHOTS) > SNAPSHOTS_KEPT:
            _SNAPSHOTS.pop(next(iter(_SNAPSHOTS)))
    return snap


def recorded_files(ledger: pl.DataFrame) -> tuple[dict[tuple[str, str], DataFile], list[str]]:
    """The data files each live source's event names (its last live event, as `manifest_of` reads it),
    and the live sources whose events name none (written before events recorded their files).

    Readers keep only the named files of a partition: two writers racing on one file each commit a
    data file into its partition, and only the event that made the source live says which is its.
    """
    chosen: dict[str, str | None] = {}
    for sha, entry in ledger.filter(pl.col("status").is_in(LIVE)).select("sha256", "data_files").iter_rows():
        chosen[sha] = entry
    checksums = {}
    for entry in chosen.values():
        for f in json.loads(entry or "[]"):
            checksums[(f["table"], f["path"])] = DataFile(f["table"], f["path"], f["bytes"], f["sha256"])
    return checksums, [sha for sha, entry in chosen.items() if entry is None]


def parse_as_of(text: str | int | datetime | None) -> int | datetime | None:
    """A ledger version (integer) or a time (ISO 8601; UTC when no zone is given)."""
    if text is None or isinstance(text, (int, datetime)):
        return text
    s = str(text).strip()
    if s.isdigit():
        return int(s)
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"--as-of {s!r}: give a version number or an ISO time such as 2026-01-31T12:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def new_file_name(sha: str, n: int | None = None) -> str:
    mid = f"-{n:05d}" if n is not None else ""
    return f"{sha[:20]}{mid}-{uuid.uuid4().hex[:12]}.parquet"
