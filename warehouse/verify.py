"""`perfwh verify`: every live data file against the checksum its ledger event recorded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from .location import arrow_location
from .tables import Snapshot, Store, load_snapshot

VERIFY_SCHEMA = {"table": pl.String, "file": pl.String, "problem": pl.String, "source": pl.String}


@dataclass(frozen=True)
class BadFile:
    table: str
    file: str
    problem: str  # missing | size differs | checksum differs | not recorded
    source: str  # the raw log its rows came from


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    fs, where = arrow_location(path)
    with (fs.open_input_stream(where) if fs else open(where, "rb")) as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _size(path: str) -> int | None:
    """Bytes of the file (local or s3://), None when it is missing."""
    fs, where = arrow_location(path)
    if fs is None:
        return Path(where).stat().st_size if Path(where).exists() else None
    import pyarrow.fs as pafs

    info = fs.get_file_info(where)
    return info.size if info.type == pafs.FileType.File else None


def verify(snap: Snapshot) -> list[BadFile]:
    """The live data files of `snap` that are missing or differ from their recorded checksum."""
    source_of = dict(zip(snap.live.get_column("sha256").to_list(), snap.live.get_column("path").to_list()))
    bad = []
    for table in ("measurements", "quarantine"):
        frame = snap.measurement_files if table == "measurements" else snap.quarantine_files
        root = str(snap.home / table) + "/"
        for path, sha in zip(frame.get_column("path").to_list(), frame.get_column("sha").to_list()):
            rel = path[len(root):] if path.startswith(root) else path
            rec = snap.checksums.get((table, rel))
            src = source_of.get(sha, "")
            size = _size(path) if rec is not None else None
            if rec is None:
                problem = "not recorded"
            elif size is None:
                problem = "missing"
            elif size != rec.bytes:
                problem = "size differs"
            elif _sha256(path) != rec.sha256:
                problem = "checksum differs"
            else:
                continue
            bad.append(BadFile(table, path, problem, src))
    return bad


def verify_home(home, *, repair: bool = False) -> tuple[list[BadFile], list[BadFile]]:
    """(bad files found, bad files left after repair) of the latest version at `home`.

    Repair re-ingests the raw log of each bad file where it is still present
    (its partition is rewritten from the raw bytes); the others stay reported.
    """
    from .ingest import ingest_paths

    if not Store(home).exists():  # an empty or mistyped home has nothing verified: not "0 bad files"
        raise FileNotFoundError(f"no warehouse at {home}: nothing to verify (run `perfwh ingest PATH` first)")
    bad = verify(load_snapshot(home))
    if not repair or not bad:
        return bad, bad
    sources = sorted({b.source for b in bad if b.source and Path(b.source).is_file()})
    if sources:
        ingest_paths(sources, home, force=sources)
    return bad, verify(load_snapshot(home))


def frame(bad: list[BadFile]) -> pl.DataFrame:
    return pl.DataFrame([b.__dict__ for b in bad], schema=VERIFY_SCHEMA)
