"""Ingest raw logs into the warehouse: read, validate, write parts, commit.

One writer at a time (an flock on <home>/.ingest.lock, released by the OS if
the process dies). Each file is committed on its own, so a killed run keeps
every file it finished; the next run picks up the rest.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import polars as pl

from .atomic import write_parquet_atomic
from .certify import certify
from .manifest import Manifest, SourceEntry, collect_garbage, commit, load_manifest, now_iso
from .paths import WarehousePaths
from .prefetch import Prefetch
from .readers import READERS, Discovery, FileChangedError, RawChunk, discover_raw_logs, format_of, unmodelled_reason
from .schema import MEASUREMENT_SCHEMA, PARTITION_COLUMNS, QUARANTINE_SCHEMA, STORAGE_SCHEMA
from .validate import SourceContext, context_for, slug, validate
from .views import refresh_views


@dataclass
class FileResult:
    path: str
    # ingested | replaced | skipped-unchanged | skipped-duplicate | skipped-mirror | failed |
    # ignored (a table not modelled here) | skipped-path (a link or folder not read);
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


def _part_dir(paths: WarehousePaths, key: dict) -> Path:
    d = paths.measurements
    for col in PARTITION_COLUMNS:
        d = d / f"{col}={slug(str(key[col]))}"
    return d


_NO_BAD = pl.DataFrame(schema={"source_line": pl.Int64, "raw": pl.String, "reason": pl.String})


def validate_chunk(chunk: RawChunk, ctx: SourceContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(measurements with Categorical text, quarantine) of one chunk.

    Fast-path chunks are first offered to `certify` (rules decided per distinct
    value); the rows it hands back, a chunk it declines, and every other chunk
    go through the exact validator, which names each failed rule.
    """
    frame, certified = chunk.frame, None
    if chunk.block is not None:
        done = certify(frame, ctx)
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


def _validated_chunks(path: Path, fmt: str) -> Iterator[_Validated]:
    ctx = context_for(path)
    for chunk in READERS[fmt](path):
        good, bad = validate_chunk(chunk, ctx)
        yield _Validated(good, bad, chunk.frame.height, chunk.blank_lines, chunk.header_lines)


def _write_parts(
    paths: WarehousePaths, path: Path, sha: str, fmt: str, chunks: Iterable[_Validated],
    on_rows: Callable[[int], None] | None = None,
) -> SourceEntry:
    """Write one file's parts and quarantine; nothing is committed here.

    `on_rows(rows read so far)` is called after each block (progress of a big file).
    """
    ingested_at = datetime.now(timezone.utc)
    lineage = [
        pl.lit(str(path)).alias("source_file"),
        pl.lit(sha).alias("source_sha256"),
        pl.lit(ingested_at).cast(MEASUREMENT_SCHEMA["ingested_at"]).alias("ingested_at"),
    ]
    to_storage = [pl.col(c).cast(t) for c, t in STORAGE_SCHEMA.items()]
    parts: list[str] = []
    bad_frames: list[pl.DataFrame] = []
    accepted = read = blank = headers = 0
    for i, chunk in enumerate(chunks):
        blank += chunk.blank_lines
        headers += chunk.header_lines
        read += chunk.rows_read
        if on_rows:
            on_rows(read)
        accepted += chunk.good.height
        if chunk.bad.height:
            bad_frames.append(chunk.bad)
        if not chunk.good.height:
            continue
        good = chunk.good.with_columns(lineage).select(to_storage)
        for key, part in _partitions(good):
            target = _part_dir(paths, dict(zip(PARTITION_COLUMNS, key))) / f"{sha[:20]}-{i:05d}.parquet"
            write_parquet_atomic(part, target)
            parts.append(target.relative_to(paths.home).as_posix())
    quarantined = sum(b.height for b in bad_frames)
    if accepted + quarantined != read:
        raise AssertionError(f"{path}: accounting broke: read {read} != {accepted} + {quarantined}")
    q_rel = None
    if bad_frames:
        q = pl.concat(bad_frames).with_columns(lineage).select(
            [pl.col(c).cast(t) for c, t in QUARANTINE_SCHEMA.items()]
        )
        target = paths.quarantine / f"{sha[:20]}.parquet"
        write_parquet_atomic(q, target)
        q_rel = target.relative_to(paths.home).as_posix()
    stamp = ingested_at.isoformat(timespec="microseconds")
    return SourceEntry(
        path=str(path), sha256=sha, format=fmt, rows_read=read, rows_accepted=accepted,
        rows_quarantined=quarantined, blank_lines=blank, header_lines=headers,
        status="ingested", first_ingested_at=stamp, ingested_at=stamp,
        parts=sorted(parts), quarantine=q_rel,
    )  # fmt: skip


def _partitions(frame: pl.DataFrame) -> list[tuple[tuple, pl.DataFrame]]:
    """Split by the Hive partition columns; most blocks hold a single partition."""
    first = frame.row(0, named=True)
    if frame.select(pl.all_horizontal(pl.col(c).n_unique() == 1 for c in PARTITION_COLUMNS)).item():
        return [(tuple(first[c] for c in PARTITION_COLUMNS), frame)]
    return list(frame.partition_by(list(PARTITION_COLUMNS), as_dict=True).items())


def ingest_paths(
    paths_in: Iterable[str | os.PathLike],
    home: str | os.PathLike | None = None,
    *,
    progress: ProgressFn | None = None,
    refresh: bool = True,
) -> IngestReport:
    """Ingest every raw log under `paths_in`; idempotent by content hash."""
    started = time.perf_counter()
    paths = WarehousePaths.at(home).ensure()
    found = discover_raw_logs(paths_in)
    mirrors = found.mirrors
    passed_over = _passed_over(found)
    files = [f for f in found.files if unmodelled_reason(f) is None]
    report = IngestReport(home=paths.home)
    report.files += [
        FileResult(str(csv), "skipped-mirror", message=f"same run as {twin.name} (ingested instead)")
        for csv, twin in mirrors.items()
    ]
    report.files += passed_over
    with writer_lock(paths):
        manifest = load_manifest(paths)
        collect_garbage(paths, manifest)
        if _record_passed_over(manifest, passed_over):
            commit(paths, manifest)
        for n, path in enumerate(files, start=1):
            if progress:
                progress(n, len(files), path, None)
            result = _ingest_one(paths, manifest, path, _rows_progress(progress, n, len(files), path))
            report.files.append(result)
            if progress:
                progress(n, len(files), path, result)
        if refresh:
            refresh_views(paths.home, manifest)
        report.manifest_version = manifest.version
    report.seconds = time.perf_counter() - started
    return report


def _passed_over(found: Discovery) -> list[FileResult]:
    """Paths not read (links, unreadable folders) and tables not modelled, with the reason."""
    out = [FileResult(str(p), "skipped-path", message=reason) for p, reason in found.skipped]
    out += [FileResult(str(f), "ignored", message=reason) for f in found.files if (reason := unmodelled_reason(f))]
    return out


def _record_passed_over(manifest: Manifest, results: list[FileResult]) -> bool:
    """Add each passed-over path to the ledger once (not again on every run)."""
    known = {(e.path, e.status, e.message) for e in manifest.history}
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
    manifest.history += new
    return bool(new)


def _rows_progress(progress: ProgressFn | None, n: int, total: int, path: Path) -> Callable[[int], None] | None:
    """Progress within one file: a "running" FileResult with the rows read so far."""
    if progress is None:
        return None
    return lambda rows: progress(n, total, path, FileResult(str(path), "running", rows))


def _ingest_one(
    paths: WarehousePaths, manifest: Manifest, path: Path, on_rows: Callable[[int], None] | None = None
) -> FileResult:
    t0 = time.perf_counter()
    fmt = format_of(path)
    try:
        before = os.stat(path)
    except OSError as exc:
        return FileResult(str(path), "failed", message=f"unreadable: {exc}")
    # Parsing starts in a thread while this one hashes the file; if the hash
    # says the file is already in, the few blocks read ahead are dropped.
    # Hash and parse read the same bytes: both read exactly the size seen
    # here (a short read is an error), and the file must still be that file
    # (inode, size, times) when the parse is done.
    with Prefetch(lambda: _validated_chunks(path, fmt)) as chunks:
        try:
            sha = sha256_of(path, before.st_size)
        except FileChangedError as exc:
            return FileResult(str(path), "failed", message=str(exc), seconds=time.perf_counter() - t0)
        except OSError as exc:
            return FileResult(str(path), "failed", message=f"unreadable: {exc}")
        existing = manifest.sources.get(sha)
        if existing is not None:
            status = "skipped-unchanged" if existing.path == str(path) else "skipped-duplicate"
            msg = "" if status == "skipped-unchanged" else f"same content as {existing.path}"
            return FileResult(str(path), status, message=msg, seconds=time.perf_counter() - t0)
        previous = manifest.by_path(str(path))
        try:
            entry = _write_parts(paths, path, sha, fmt, chunks, on_rows)
            _check_unchanged(path, before)
        except Exception as exc:  # noqa: BLE001
            # A file that cannot be ingested is recorded as failed (with the
            # error) and the run goes on to the next file; the exit code says so.
            stamp = now_iso()
            failed = SourceEntry(
                path=str(path), sha256=sha, format=fmt, rows_read=0, rows_accepted=0,
                rows_quarantined=0, blank_lines=0, header_lines=0, status="failed",
                first_ingested_at=stamp, ingested_at=stamp, message=f"{type(exc).__name__}: {exc}",
            )  # fmt: skip
            manifest.history.append(failed)
            commit(paths, manifest)
            return FileResult(str(path), "failed", message=failed.message, seconds=time.perf_counter() - t0)
    status = "ingested"
    if previous is not None:
        entry.first_ingested_at = previous.first_ingested_at
        manifest.supersede(previous.sha256)
        status = "replaced"
    manifest.sources[sha] = entry
    commit(paths, manifest)
    return FileResult(
        str(path), status, entry.rows_read, entry.rows_accepted, entry.rows_quarantined,
        seconds=time.perf_counter() - t0,
    )  # fmt: skip
