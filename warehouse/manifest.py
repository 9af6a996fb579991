"""The manifest: the single commit point of the warehouse.

Part files are immutable and written before they are referenced. The manifest
(`manifest.json`, replaced atomically) lists which parts are live; the DuckDB
views and the read API only ever look at files the manifest names. So a crash
at any moment leaves the last committed manifest, and every file it names,
intact; readers see the old or the new state, never a mix.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from .atomic import write_parquet_atomic, write_text_atomic
from .paths import WarehousePaths
from .schema import LEDGER_SCHEMA, SCHEMA_VERSION

# Files dropped from the manifest stay on disk this long, for readers that
# opened the previous state.
RETIRE_GRACE_S = 600.0


@dataclass
class SourceEntry:
    """One ingested raw file version (keyed by content sha256)."""

    path: str
    sha256: str
    format: str
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    blank_lines: int
    header_lines: int
    status: str  # ingested | superseded | failed
    first_ingested_at: str
    ingested_at: str
    message: str = ""
    parts: list[str] = field(default_factory=list)  # relative to home
    quarantine: str | None = None


@dataclass
class Manifest:
    version: int = 0
    committed_at: str | None = None
    sources: dict[str, SourceEntry] = field(default_factory=dict)  # sha -> entry
    history: list[SourceEntry] = field(default_factory=list)
    retired: list[tuple[str, float]] = field(default_factory=list)  # (relpath, unix time)
    ledger: str | None = None

    # queries ---------------------------------------------------------------
    def by_path(self, path: str) -> SourceEntry | None:
        for entry in self.sources.values():
            if entry.path == path:
                return entry
        return None

    def live_parts(self) -> list[str]:
        return sorted(p for e in self.sources.values() for p in e.parts)

    def live_quarantine(self) -> list[str]:
        return sorted(e.quarantine for e in self.sources.values() if e.quarantine)

    def referenced(self) -> set[str]:
        refs = set(self.live_parts()) | set(self.live_quarantine())
        if self.ledger:
            refs.add(self.ledger)
        return refs

    # changes ---------------------------------------------------------------
    def retire(self, relpaths: list[str]) -> None:
        now = time.time()
        self.retired.extend((p, now) for p in relpaths)

    def supersede(self, sha: str) -> SourceEntry:
        entry = self.sources.pop(sha)
        self.retire(entry.parts + ([entry.quarantine] if entry.quarantine else []))
        entry.status = "superseded"
        entry.parts = []
        entry.quarantine = None
        self.history.append(entry)
        return entry

    def ledger_frame(self) -> pl.DataFrame:
        rows = [
            {
                "path": e.path,
                "sha256": e.sha256,
                "format": e.format,
                "rows_read": e.rows_read,
                "rows_accepted": e.rows_accepted,
                "rows_quarantined": e.rows_quarantined,
                "status": e.status,
                "first_ingested_at": _ts(e.first_ingested_at),
                "ingested_at": _ts(e.ingested_at),
                "message": e.message,
            }
            for e in [*self.sources.values(), *self.history]
        ]
        return pl.DataFrame(rows, schema=LEDGER_SCHEMA)


def _ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def manifest_path(paths: WarehousePaths) -> Path:
    return paths.home / "manifest.json"


def load_manifest(paths: WarehousePaths) -> Manifest:
    path = manifest_path(paths)
    if not path.exists():
        return Manifest()
    doc = json.loads(path.read_text())
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema_version {doc.get('schema_version')} is not {SCHEMA_VERSION}; "
            "re-ingest into a fresh --home"
        )
    return Manifest(
        version=doc["version"],
        committed_at=doc.get("committed_at"),
        sources={k: SourceEntry(**v) for k, v in doc["sources"].items()},
        history=[SourceEntry(**v) for v in doc.get("history", [])],
        retired=[tuple(r) for r in doc.get("retired", [])],
        ledger=doc.get("ledger"),
    )


def commit(paths: WarehousePaths, manifest: Manifest) -> Manifest:
    """Write the ledger for this version, then swap in the new manifest."""
    old_ledger = manifest.ledger
    manifest.version += 1
    manifest.committed_at = now_iso()
    ledger_rel = f"ledger/v{manifest.version:08d}.parquet"
    write_parquet_atomic(manifest.ledger_frame(), paths.home / ledger_rel)
    manifest.ledger = ledger_rel
    if old_ledger:
        manifest.retire([old_ledger])
    doc = {
        "schema_version": SCHEMA_VERSION,
        "version": manifest.version,
        "committed_at": manifest.committed_at,
        "ledger": manifest.ledger,
        "sources": {k: asdict(v) for k, v in manifest.sources.items()},
        "history": [asdict(v) for v in manifest.history],
        "retired": [list(r) for r in manifest.retired],
    }
    write_text_atomic(json.dumps(doc, indent=1), manifest_path(paths))
    return manifest


def collect_garbage(paths: WarehousePaths, manifest: Manifest, *, grace_s: float = RETIRE_GRACE_S) -> int:
    """Delete retired files past their grace period and orphans of killed runs.

    Returns the number of files removed. Only called while holding the ingest
    lock, so no writer can be producing the files it looks at.
    """
    now = time.time()
    referenced = manifest.referenced()
    removed = 0
    keep: list[tuple[str, float]] = []
    for rel, at in manifest.retired:
        if rel in referenced:
            continue
        if now - at >= grace_s:
            removed += _unlink(paths.home / rel)
        else:
            keep.append((rel, at))
    manifest.retired = keep
    pending = {rel for rel, _ in keep}
    for folder in (paths.measurements, paths.quarantine, paths.home / "ledger"):
        if not folder.exists():
            continue
        for file in folder.rglob("*"):
            if not file.is_file():
                continue
            rel = file.relative_to(paths.home).as_posix()
            if rel in referenced or rel in pending:
                continue
            if now - file.stat().st_mtime >= grace_s:
                removed += _unlink(file)
    return removed


def _unlink(path: Path) -> int:
    try:
        os.unlink(path)
        return 1
    except FileNotFoundError:
        return 0
