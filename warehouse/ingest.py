"""Ingest raw logs into the warehouse: read, validate, write parts, commit.

A run's files are committed in batches (warehouse/tables.py): each file's
data files are written under its own partition as it is read, and a batch of
files (at most `BATCH_FILES` files or `BATCH_ROWS` rows read) becomes live in
one commit per data table and one ledger commit. A killed run keeps every
batch it committed and the next run picks up the rest; writers in several
processes or hosts need no lock between them.
"""

from __future__ import annotations

import fcntl
import errno
import hashlib
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import polars as pl

from .certify import certify
from .manifest import Manifest, SourceEntry, manifest_of, now_iso
from .paths import WarehousePaths
from .parts import Encoded, HashingReader, encode_parquet
from .prefetch import Prefetch
from .readers import READERS, Discovery, FileChangedError, RawChunk, discover_raw_logs, format_of, unmodelled_reason
from .schema import MEASUREMENT_SCHEMA, QUARANTINE_SCHEMA, STORAGE_SCHEMA
from .tables import (
    DATA_TABLES, ORPHAN_GRACE_S, PARTITION, WRITER, DataFile, Store, load_snapshot, new_file_name, now_utc,
    recorded_files,
)
from .validate import SourceContext, context_for, validate
from .views import refresh_views


@dataclass
class FileResult:
    path: str
    # ingested | replaced | skipped-unchanged | skipped-duplicate | skipped-mirror | failed;
    # "running" (rows_read so far) only in progress callbacks
    status: str
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    seconds: float = 0.0
    message: str = ""


@dataclass
class IngestReport:
    home: Path
    files: list[FileResult] = field(default_factory=list)
    manifest_version: int = 0
    seconds: float = 0.0

    @property
    def rows_accepted(self) -> int:
        return sum(f.rows_accepted for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]


ProgressFn = Callable[[int, int, Path, "FileResult | None"], None]


def discover_all(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], dict[Path, Path]]:
    """Raw logs under `paths` (recursive), and the CSV mirrors among them.

    The collector writes each run twice, as `<table>.txt` (collector CSV) and
    `<table>.jsonl` (with samples and run ids). Ingesting both would count
    every measurement twice, so where both sit side by side the JSONL is the
    source and the CSV is returned as its mirror (reported, not ingested).
    Paths passed over (links, unreadable folders): `readers.discover_raw_logs`.
    """
    found = discover_raw_logs(paths)
    return found.files, found.mirrors


def discover(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The raw logs to ingest under `paths` (mirrors left out; see discover_all)."""
    return discover_all(paths)[0]


HASH_STEP = 8 * 1024 * 1024


def sha256_of(path: Path, size: int | None = None) -> str:
    """sha256 of exactly `size` bytes (default: the size at open), read with
    pread into one reused buffer: no mapping (a file truncated meanwhile is a
    FileChangedError, never SIGBUS), RSS stays flat, the GIL released."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        fd = fh.fileno()
        if size is None:
            size = os.fstat(fd).st_size
        buf = bytearray(min(HASH_STEP, max(size, 1)))
        view = memoryview(buf)
        pos = 0
        while pos < size:
            n = os.preadv(fd, [view[: min(len(buf), size - pos)]], pos)
            if n == 0:
                raise FileChangedError(
                    f"{path}: changed while it was read (hashed {pos:,} of {size:,} bytes); "
                    "not ingested, re-run once the writer is done"
                )
            h.update(view[:n])
            pos += n
    return h.hexdigest()


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _check_unchanged(path: Path, before: os.stat_result) -> None:
    """The file is the one (same inode, size, times) that was hashed and parsed."""
    after = os.stat(path)
    if _identity(after) != _identity(before):
        raise FileChangedError(
            f"{path}: changed while it was read (size {before.st_size:,} -> {after.st_size:,} bytes"
            f"{', replaced' if after.st_ino != before.st_ino else ''}); not ingested, re-run once the writer is done"
        )


@contextmanager
def writer_lock(paths: WarehousePaths, wait: bool = True) -> Iterator[None]:
    paths.ensure()
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise RuntimeError(f"another ingest holds {paths.lock}") from None
            print(f"waiting for another ingest to finish ({paths.lock})", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


_NO_BAD = pl.DataFrame(schema={"source_line": pl.Int64, "raw": pl.String, "reason": pl.String})


def validate_chunk(chunk: RawChunk, ctx: SourceContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(measurements with Categorical text, quarantine) of one chunk.

    Fast-path chunks are first offered to `certify` (rules decided per distinct
    value); the rows it hands back, a chunk it declines, and every other chunk
    go through the exact validator, which names each failed rule.
    """
    frame, certified = chunk.frame, None
    if chunk.block is not None:
        done = certify(frame, ctx, chunk.distinct)
        if done is not None:
            certified, frame = done
            if not frame.height:
                return certified, _NO_BAD
        frame = frame.with_columns(pl.col(pl.Categorical).cast(pl.String))
    good, bad = validate(frame, ctx)
    good = good.with_columns(pl.col(pl.String).cast(pl.Categorical))  # as certify gives it
    if certified is not None:
        good = pl.concat([certified, good]).sort("source_line") if good.height else certified
    if bad.height and chunk.block is not None:
        raw = chunk.raw_lines(bad.get_column("source_line").to_list())
        bad = bad.with_columns(pl.Series("raw", raw, dtype=pl.String))
    return good, bad


@dataclass
class _Validated:
    good: pl.DataFrame
    bad: pl.DataFrame
    rows_read: int
    blank_lines: int
    header_lines: int


def _validated_chunks(source: HashingReader, fmt: str) -> Iterator[_Validated]:
    ctx = context_for(source.path)
    for chunk in READERS[fmt](source):
        good, bad = validate_chunk(chunk, ctx)
        yield _Validated(good, bad, chunk.frame.height, chunk.blank_lines, chunk.header_lines)


# Rows buffered per data file: fewer, larger files than one per parsed block.
FILE_ROWS = 2_000_000


def _encode_parts(path: Path, fmt: str, chunks: Iterable[_Validated],
                  on_rows: Callable[[int], None] | None = None) -> Encoded:
    """One file's data files and quarantine, encoded in memory while the file
    is read; written by `_write_parts` once the hash (the partition) is final.

    The files hold no hash: the partition column lives in the Delta log.
    `on_rows(rows read so far)` is called after each block (progress of a big file).
    """
    out = Encoded(ingested_at=datetime.now(timezone.utc))
    lineage = [
        pl.lit(str(path)).alias("source_file"),
        pl.lit(out.ingested_at).cast(MEASUREMENT_SCHEMA["ingested_at"]).alias("ingested_at"),
    ]
    to_storage = [pl.col(c).cast(t) for c, t in STORAGE_SCHEMA.items() if c != PARTITION]
    pending: list[pl.DataFrame] = []
    bad_frames: list[pl.DataFrame] = []

    def flush() -> None:
        if not pending:
            return
        frame = pl.concat(pending) if len(pending) > 1 else pending[0]
        pending.clear()
        out.parts.append(encode_parquet(frame.with_columns(lineage).select(to_storage)))
        out.rows.append(frame.height)

    for chunk in chunks:
        out.blank_lines += chunk.blank_lines
        out.header_lines += chunk.header_lines
        out.rows_read += chunk.rows_read
        if on_rows:
            on_rows(out.rows_read)
        out.rows_accepted += chunk.good.height
        if chunk.bad.height:
            bad_frames.append(chunk.bad)
        if not chunk.good.height:
            continue
        pending.append(chunk.good)
        if sum(f.height for f in pending) >= FILE_ROWS:
            flush()
    flush()
    out.rows_quarantined = sum(b.height for b in bad_frames)
    if out.rows_accepted + out.rows_quarantined != out.rows_read:
        raise AssertionError(
            f"{path}: accounting broke: read {out.rows_read} != {out.rows_accepted} + {out.rows_quarantined}"
        )
    if bad_frames:
        q = pl.concat(bad_frames).with_columns(lineage).select(
            [pl.col(c).cast(t) for c, t in QUARANTINE_SCHEMA.items() if c != PARTITION]
        )
        out.quarantine = encode_parquet(q)
    return out


@dataclass
class _Written:
    """One file's data files (written, not yet committed) and its counts."""

    entry: SourceEntry
    files: list[DataFile]
    rows: list[int]
    quarantine: list[DataFile]
    quarantine_rows: list[int]


def _write_parts(store: Store, path: Path, sha: str, fmt: str, enc: Encoded) -> _Written:
    """Write one file's encoded data files under partition `sha`; nothing is committed here."""
    files = [store.write_bytes("measurements", sha, data, new_file_name(sha, n)) for n, data in enumerate(enc.parts)]
    q_files = [store.write_bytes("quarantine", sha, enc.quarantine, new_file_name(sha))] if enc.quarantine else []
    stamp = enc.ingested_at.isoformat(timespec="microseconds")
    entry = SourceEntry(
        path=str(path), sha256=sha, format=fmt, rows_read=enc.rows_read, rows_accepted=enc.rows_accepted,
        rows_quarantined=enc.rows_quarantined, blank_lines=enc.blank_lines, header_lines=enc.header_lines,
        status="ingested", first_ingested_at=stamp, ingested_at=stamp,
        parts=[f"measurements/{f.path}" for f in files],
        quarantine=f"quarantine/{q_files[0].path}" if q_files else None,
    )  # fmt: skip
    return _Written(entry, files, enc.rows, q_files, [enc.rows_quarantined] if q_files else [])


def _event(entry: SourceEntry, status: str, *, mv: int | None = None, qv: int | None = None,
           files: list[DataFile] = (), message: str | None = None) -> dict:
    """One ledger event for `entry` with `status`."""
    return {
        "path": entry.path, "sha256": entry.sha256, "format": entry.format,
        "rows_read": entry.rows_read, "rows_accepted": entry.rows_accepted,
        "rows_quarantined": entry.rows_quarantined, "status": status,
        "first_ingested_at": _dt(entry.first_ingested_at), "ingested_at": _dt(entry.ingested_at),
        "message": entry.message if message is None else message,
        "blank_lines": entry.blank_lines, "header_lines": entry.header_lines,
        "measurements_version": mv, "quarantine_version": qv,
        "data_files": json.dumps([f.as_json() for f in files]),
        "event_at": now_utc(), "writer": WRITER,
    }  # fmt: skip


def _dt(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


# A run commits its files in batches of at most this many files, or fewer once
# the batch's files read this many rows: the work a kill can lose, and the
# size of one commit, stay bounded (the data files are written as each file is
# read, so memory does not grow with the batch).
BATCH_FILES = 200
BATCH_ROWS = 4_000_000


class _Ledger:
    """This run's view of the ledger: the snapshot it started from plus its own
    commits and the batch staged for the next one.

    `manifest` is updated as files are staged, so later files of a batch see
    the earlier ones (a duplicate of a staged file is a duplicate); `flush`
    makes the batch live: one commit per data table for the staged files'
    partitions, then one ledger commit for all staged events (the commit
    point), then one commit per data table dropping the retired partitions.
    A run killed before the ledger commit leaves only unreferenced partitions
    (never visible; `remove_orphans`).
    """

    def __init__(self, store: Store, manifest: Manifest):
        self.store = store
        self.manifest = manifest
        self.written: list[_Written] = []
        self.events: list[dict] = []
        self.versioned: list[dict] = []  # staged events naming this batch's data-table versions
        self.retired: list[SourceEntry] = []

    @property
    def staged_rows(self) -> int:
        return sum(w.entry.rows_read for w in self.written)

    def stage(self, events: list[dict], retire: Iterable[SourceEntry] = (), written: _Written | None = None) -> None:
        """Add `events` (and a file's written data) to the batch; `retire` leaves the live sources now."""
        self.events += events
        for old in retire:
            if self.manifest.sources.get(old.sha256) is old:
                del self.manifest.sources[old.sha256]
            old.status = "superseded"
            self.manifest.history.append(old)
            self.retired.append(old)
        if written is not None:
            self.written.append(written)
            self.versioned.append(events[-1])

    def flush(self) -> None:
        """Commit the staged batch (nothing staged: nothing committed)."""
        if not (self.events or self.written):
            return
        if self.written:
            mv = self.store.commit_partitions("measurements", {w.entry.sha256: (w.files, w.rows) for w in self.written})
            qv = self.store.commit_partitions(
                "quarantine", {w.entry.sha256: (w.quarantine, w.quarantine_rows) for w in self.written}
            )
            for event in self.versioned:
                event["measurements_version"], event["quarantine_version"] = mv, qv
        self.manifest.version = self.store.append_events(self.events)
        # a retired content hash that a file of this batch made live again keeps its partition
        gone = sorted({old.sha256 for old in self.retired if old.sha256 and old.sha256 not in self.manifest.sources})
        for table in DATA_TABLES:
            self.store.drop_partitions(table, gone)
        self.written, self.events, self.versioned, self.retired = [], [], [], []

    def commit(self, events: list[dict], retire: Iterable[SourceEntry] = ()) -> None:
        """Stage `events` and commit them with whatever else is staged."""
        self.stage(events, retire)
        self.flush()

    def retire(self, old: SourceEntry, why: str) -> None:
        """Stage the retirement of `old` (committed with the batch)."""
        self.stage([_event(old, "superseded", message=why)], [old])


def ingest_paths(
    paths_in: str | os.PathLike | Iterable[str | os.PathLike],
    home: str | os.PathLike | None = None,
    *,
    progress: ProgressFn | None = None,
    refresh: bool = True,
    force: str | os.PathLike | Iterable[str | os.PathLike] = (),
    batch_files: int = BATCH_FILES,
    batch_rows: int = BATCH_ROWS,
) -> IngestReport:
    """Ingest every raw log under `paths_in` (one path or several); idempotent by content hash.

    Writers need no lock: each file's rows land in their own partition and
    the ledger events that make a batch live are one blind append, so several
    processes (or hosts) ingesting different files all commit. Files are
    committed in batches of at most `batch_files` files (fewer once they read
    `batch_rows` rows); `progress` gets each file's result once its batch is
    committed. Files in `force` are re-ingested even when unchanged (repair of
    damaged data files).
    """
    started = time.perf_counter()
    paths = WarehousePaths.at(home).ensure()
    found = _outside_home(discover_raw_logs(paths_in), paths)
    mirrors = found.mirrors
    passed_over = _passed_over(found)
    files = [f for f in found.files if unmodelled_reason(f) is None]
    report = IngestReport(home=paths.home)
    report.files += passed_over
    store = Store(paths.home)
    store.create_tables()
    manifest = manifest_of(load_snapshot(paths.home))
    ledger = _Ledger(store, manifest)
    if isinstance(force, (str, os.PathLike)):  # one path, as for paths_in: not its characters
        force = [force]
    forced = {str(Path(f).expanduser().resolve()) for f in force}  # discovered files are resolved paths
    remove_orphans(store, manifest)
    _record_passed_over(ledger, passed_over)
    for csv, twin in mirrors.items():
        report.files.append(_mirror(ledger, csv, twin))
    staged: list[tuple[int, Path, FileResult]] = []

    def flush() -> None:
        ledger.flush()
        if progress:
            for n, path, result in staged:
                progress(n, len(files), path, result)
        staged.clear()

    for n, path in enumerate(files, start=1):
        if progress:
            progress(n, len(files), path, None)
        rows_progress = _rows_progress(progress, n, len(files), path)
        result = _ingest_one(store, ledger, path, rows_progress, force=str(path) in forced)
        report.files.append(result)
        staged.append((n, path, result))
        if len(staged) >= batch_files or ledger.staged_rows >= batch_rows:
            flush()
    flush()
    store.vacuum()
    if refresh:
        refresh_views(paths.home)
    report.manifest_version = manifest.version
    report.seconds = time.perf_counter() - started
    return report


def _outside_home(found: Discovery, paths: WarehousePaths) -> Discovery:
    """Files inside the warehouse home passed over: with the home inside an ingested folder, the
    warehouse's own Parquet data files were read as published tables, doubling every measurement."""
    if not paths.is_local:
        return found
    home = Path(paths.home)
    inside = [f for f in found.files if f.is_relative_to(home)]
    if not inside:
        return found
    reason = f"inside the warehouse home {home}: its own data files are not raw logs"
    return Discovery([f for f in found.files if f not in inside],
                     {c: j for c, j in found.mirrors.items() if not c.is_relative_to(home)},
                     found.skipped + [(f, reason) for f in inside])


def _passed_over(found: Discovery) -> list[FileResult]:
    """Paths not read (links, unreadable folders) and tables not modelled, with the reason."""
    out = [FileResult(str(p), "skipped-path", message=reason) for p, reason in found.skipped]
    out += [FileResult(str(f), "ignored", message=reason) for f in found.files if (reason := unmodelled_reason(f))]
    return out


def _record_passed_over(ledger: _Ledger, results: list[FileResult]) -> None:
    """One ledger event per passed-over path (not again on every run)."""
    known = {(e.path, e.status, e.message) for e in ledger.manifest.history}
    stamp = now_iso()
    new = [
        SourceEntry(
            path=r.path, sha256="", format=format_of(Path(r.path)) or "", rows_read=0, rows_accepted=0,
            rows_quarantined=0, blank_lines=0, header_lines=0, status=r.status, first_ingested_at=stamp,
            ingested_at=stamp, message=r.message,
        )
        for r in results
        if (r.path, r.status, r.message) not in known
    ]  # fmt: skip
    if new:
        ledger.stage([_event(e, e.status) for e in new])
        ledger.manifest.history += new


def remove_orphans(store: Store, manifest: Manifest, grace_s: float = ORPHAN_GRACE_S) -> int:
    """Drop partitions no ledger event makes live, and files of live partitions their live event does
    not name, once older than `grace_s`; returns how many partitions and files went.

    They are rows of a writer killed between its data commit and its ledger
    event, of a source superseded by a writer killed before removing them, or
    of the losing writer of two that ingested one file at once; no reader sees
    them (readers keep the files live events name), this frees them.
    """
    live = set(manifest.sources)
    snap = manifest.snapshot
    named, unrecorded = recorded_files(snap.ledger) if snap is not None else ({}, list(live))
    cutoff = (time.time() - grace_s) * 1000
    removed = 0
    for table in DATA_TABLES:
        if not store.has_log(table):
            continue
        all_files = Store.files(store.table(table))
        files = all_files.filter(~pl.col("sha").is_in(list(live)))
        stale = files.group_by("sha").agg(pl.col("modified").max()).filter(pl.col("modified") < cutoff)
        shas = stale.get_column("sha").to_list()
        store.drop_partitions(table, shas)  # one commit per table
        stray = all_files.filter(
            pl.col("sha").is_in(list(live)) & ~pl.col("sha").is_in(unrecorded)
            & ~pl.col("path").is_in([rel for t, rel in named if t == table]) & (pl.col("modified") < cutoff)
        )
        store.remove_files(table, stray.select("path", "sha", "bytes").rows())
        removed += len(shas) + stray.height
    return removed


def _mirror(ledger: _Ledger, csv: Path, twin: Path) -> FileResult:
    """A collector CSV beside its JSONL twin: not ingested; rows it committed earlier are retired."""
    msg = f"same run as {twin.name} (ingested instead)"
    old = ledger.manifest.by_path(str(csv))
    if old is not None:
        ledger.retire(old, f"mirror of {twin}")
    return FileResult(str(csv), "skipped-mirror", message=msg)


def _rows_progress(progress: ProgressFn | None, n: int, total: int, path: Path) -> Callable[[int], None] | None:
    """Progress within one file: a "running" FileResult with the rows read so far."""
    if progress is None:
        return None
    return lambda rows: progress(n, total, path, FileResult(str(path), "running", rows))


_HOME_FULL = (errno.ENOSPC, errno.EROFS, errno.EDQUOT)


def _failed(ledger, manifest, path: Path, sha: str, fmt: str, exc: Exception, t0: float) -> FileResult:
    """A file that cannot be ingested is recorded as failed (with the error, in the batch's
    ledger commit); the run and the file's batch-mates go on."""
    stamp = now_iso()
    failed = SourceEntry(
        path=str(path), sha256=sha, format=fmt, rows_read=0, rows_accepted=0,
        rows_quarantined=0, blank_lines=0, header_lines=0, status="failed",
        first_ingested_at=stamp, ingested_at=stamp, message=f"{type(exc).__name__}: {exc}",
    )  # fmt: skip
    ledger.stage([_event(failed, "failed")])
    manifest.history.append(failed)
    return FileResult(str(path), "failed", message=failed.message, seconds=time.perf_counter() - t0)


def _ingest_one(
    store: Store, ledger: _Ledger, path: Path, on_rows: Callable[[int], None] | None = None,
    *, force: bool = False,
) -> FileResult:
    t0 = time.perf_counter()
    fmt = format_of(path)
    manifest = ledger.manifest
    previous = manifest.by_path(str(path))
    twin = path.with_suffix(".jsonl")
    if fmt == "csv" and twin != path and manifest.by_path(str(twin)) is not None:
        # The JSONL twin of this collector CSV is in: the CSV alone must not count its rows again.
        result = _mirror(ledger, path, twin)
        result.seconds = time.perf_counter() - t0
        return result
    try:
        before = os.stat(path)
    except OSError as exc:
        return FileResult(str(path), "failed", message=f"unreadable: {exc}")
    done = lambda status, msg="": FileResult(str(path), status, message=msg, seconds=time.perf_counter() - t0)  # noqa: E731
    if previous is not None and not force:
        # A path already in: hash it first (no parse) and stop there if it is unchanged.
        try:
            sha = sha256_of(path, before.st_size)
        except FileChangedError as exc:
            return done("failed", str(exc))
        except OSError as exc:
            return FileResult(str(path), "failed", message=f"unreadable: {exc}")
        if (skipped := _skip(ledger, path, sha, previous, force)) is not None:
            skipped.seconds = time.perf_counter() - t0
            return skipped
    # Read once: the hash is fed from the same buffers the parser reads, so both
    # see the same bytes; the file must still be that file (inode, size, times)
    # when the parse is done, or nothing of it is kept.
    error: Exception | None = None
    sha = ""
    try:
        with HashingReader(path, before.st_size) as source:
            try:
                with Prefetch(lambda: _validated_chunks(source, fmt)) as chunks:
                    encoded = _encode_parts(path, fmt, chunks, on_rows)
            except FileChangedError:
                raise
            except OSError as exc:
                if exc.errno in _HOME_FULL:  # the warehouse cannot take writes: stop the run, record nothing
                    raise
                error = exc
            except Exception as exc:  # noqa: BLE001 - recorded as failed, with the file's hash
                error = exc
            while not source.done:  # a file that failed to parse: its hash for the ledger
                source.read()
            sha = source.hexdigest()
        _check_unchanged(path, before)
    except FileChangedError as exc:  # recorded in the ledger where the hash got to the end
        return _failed(ledger, manifest, path, sha, fmt, exc, t0) if sha else done("failed", str(exc))
    except OSError as exc:
        if exc.errno in _HOME_FULL:
            raise
        return done("failed", f"unreadable: {exc}")
    if error is not None:
        return _failed(ledger, manifest, path, sha, fmt, error, t0)
    if (skipped := _skip(ledger, path, sha, previous, force)) is not None:
        skipped.seconds = time.perf_counter() - t0
        return skipped  # content already in under another path: nothing was written
    try:
        written = _write_parts(store, path, sha, fmt, encoded)
    except OSError as exc:
        if exc.errno in _HOME_FULL:
            raise
        return _failed(ledger, manifest, path, sha, fmt, exc, t0)
    del encoded
    entry = written.entry
    status = "ingested"
    retire = []
    events = []
    if previous is not None:
        entry.first_ingested_at = previous.first_ingested_at
        if previous.sha256 != sha:
            status = "replaced"
            retire.append(previous)
            events.append(_event(previous, "superseded", message=f"replaced by {sha[:12]}"))
    entry.status = "ingested"  # the ledger's live status; the run reports "replaced"
    # the data-table versions are those of the batch's commits (Ledger.flush)
    events.append(_event(entry, "ingested", files=[*written.files, *written.quarantine]))
    ledger.stage(events, retire, written)
    manifest.sources[sha] = entry
    return FileResult(
        str(path), status, entry.rows_read, entry.rows_accepted, entry.rows_quarantined,
        seconds=time.perf_counter() - t0,
    )  # fmt: skip


def _skip(ledger: _Ledger, path: Path, sha: str, previous: SourceEntry | None, force: bool) -> FileResult | None:
    """The result for content already in the warehouse (unchanged, or a duplicate of another path), else None."""
    existing = ledger.manifest.sources.get(sha)
    if existing is None or (force and existing.path == str(path)):
        return None
    if existing.path == str(path):
        return FileResult(str(path), "skipped-unchanged")
    if previous is not None:
        # This path's earlier content is no longer in the file: its rows go.
        ledger.retire(previous, f"now the same content as {existing.path}")
    return FileResult(str(path), "skipped-duplicate", message=f"same content as {existing.path}")
