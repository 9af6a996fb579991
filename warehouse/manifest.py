"""The committed state of the warehouse as a Python object (read-only).

The Delta tables (warehouse/tables.py) are the store and the ledger table is
the commit point; `load_manifest` folds one pinned ledger version into the
`Manifest` view that the pipeline, the landing sensor and the estimator use:
the live sources by content hash, their history, and their data files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

import polars as pl

from .paths import WarehousePaths
from .schema import LEDGER_SCHEMA
from .tables import LIVE, Snapshot, load_snapshot


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
    status: str  # ingested | replaced | superseded | failed | duplicate | mirror
    first_ingested_at: str
    ingested_at: str
    message: str = ""
    parts: list[str] = field(default_factory=list)  # relative to home
    quarantine: str | None = None


@dataclass
class Manifest:
    version: int = 0
    committed_at: str | None = None
    sources: dict[str, SourceEntry] = field(default_factory=dict)  # sha -> live entry
    history: list[SourceEntry] = field(default_factory=list)
    snapshot: Snapshot | None = None

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
        return set(self.live_parts()) | set(self.live_quarantine())

    def ledger_frame(self) -> pl.DataFrame:
        if self.snapshot is None or self.snapshot.ledger.height == 0:
            return pl.DataFrame(schema=LEDGER_SCHEMA)
        return self.snapshot.ledger.select(list(LEDGER_SCHEMA))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _iso(t: datetime | None) -> str:
    return t.isoformat(timespec="microseconds") if t else ""


def manifest_of(snap: Snapshot) -> Manifest:
    sources: dict[str, SourceEntry] = {}
    history: list[SourceEntry] = []
    for row in snap.ledger.iter_rows(named=True):
        files = json.loads(row["data_files"] or "[]")
        parts = sorted(f"measurements/{f['path']}" for f in files if f["table"] == "measurements")
        quarantine = [f"quarantine/{f['path']}" for f in files if f["table"] == "quarantine"]
        entry = SourceEntry(
            path=row["path"], sha256=row["sha256"], format=row["format"] or "",
            rows_read=row["rows_read"] or 0, rows_accepted=row["rows_accepted"] or 0,
            rows_quarantined=row["rows_quarantined"] or 0, blank_lines=row["blank_lines"] or 0,
            header_lines=row["header_lines"] or 0, status=row["status"],
            first_ingested_at=_iso(row["first_ingested_at"]), ingested_at=_iso(row["ingested_at"]),
            message=row["message"] or "", parts=parts, quarantine=quarantine[0] if quarantine else None,
        )  # fmt: skip
        if entry.status in LIVE:
            sources[entry.sha256] = entry
        else:
            history.append(entry)
    return Manifest(snap.version, _iso(snap.committed_at) or None, sources, history, snap)


def load_manifest(paths: WarehousePaths, as_of=None) -> Manifest:
    """The committed state at the latest ledger version (or `as_of`: a version or a time)."""
    return manifest_of(load_snapshot(paths.home, as_of))
