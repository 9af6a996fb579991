"""The landing folder: which raw logs are there, their content hashes, and
which of them the warehouse has not ingested yet.

A file's key is its path relative to the landing root (POSIX separators); it
names one raw log for the scheduler (one partition, one sensor entry).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import polars as pl

from .ingest import discover_all, sha256_of
from .manifest import Manifest
from .readers import discover_raw_logs

LANDING_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(),
    "path": pl.String(),
    "sha256": pl.String(),
    "size_bytes": pl.Int64(),
}


@dataclass(frozen=True)
class LandingFile:
    key: str
    path: Path
    sha256: str
    size_bytes: int


def file_key(root: Path, path: Path) -> str:
    """`path` relative to `root`, POSIX separators; raises ValueError when outside it."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not under the landing folder {root}") from None


def scan_landing(root: str | os.PathLike, files: Iterable[str | os.PathLike] | None = None) -> list[LandingFile]:
    """Raw logs under `root` (or exactly `files`, which must lie under it), hashed, sorted by key.

    Paths passed over (see `scan_landing_all`) are left out, never an error.
    """
    return scan_landing_all(root, files)[0]


def scan_landing_all(
    root: str | os.PathLike, files: Iterable[str | os.PathLike] | None = None
) -> tuple[list[LandingFile], list[tuple[Path, str]]]:
    """(landing files, paths passed over with the reason).

    The same rule as `perfwh ingest DIR` (`readers.walk_raw_logs`): links that
    dangle, loop or point outside the folder and unreadable folders are passed
    over; so is a file that cannot be hashed now (unreadable, or changing
    while it is read: it is seen again on the next scan).
    """
    base = Path(root).expanduser().resolve()
    found = discover_raw_logs([base] if files is None else list(files))
    skipped = list(found.skipped)
    out = []
    for p in found.files:
        try:
            out.append(LandingFile(file_key(base, p), p, sha256_of(p), p.stat().st_size))
        except (OSError, ValueError) as exc:
            skipped.append((p, str(exc)))
    return sorted(out, key=lambda f: f.key), skipped


def landing_frame(files: list[LandingFile], manifest: Manifest | None = None) -> pl.DataFrame:
    """One row per landing file; with a manifest, an `ingested` column (content already in it)."""
    frame = pl.DataFrame(
        [(f.key, str(f.path), f.sha256, f.size_bytes) for f in files], schema=LANDING_SCHEMA, orient="row"
    )
    if manifest is not None:
        frame = frame.with_columns(pl.col("sha256").is_in(list(manifest.sources)).alias("ingested"))
    return frame


def pending(files: list[LandingFile], manifest: Manifest) -> list[LandingFile]:
    """Files whose content the warehouse does not hold yet (new or changed),
    less the tables already recorded as ignored (not modelled here)."""
    ignored = {e.path for e in manifest.history if e.status == "ignored"}
    return [f for f in files if f.sha256 not in manifest.sources and str(f.path) not in ignored]


def changed_since(files: list[LandingFile], seen: dict[str, str]) -> list[LandingFile]:
    """Files that are new or whose hash differs from `seen` (key -> sha256)."""
    return [f for f in files if seen.get(f.key) != f.sha256]


def encode_cursor(files: list[LandingFile], previous: dict[str, str] | None = None) -> str:
    """JSON map key -> sha256: the previous map updated with `files`."""
    seen = dict(previous or {})
    seen.update({f.key: f.sha256 for f in files})
    return json.dumps(seen, sort_keys=True, separators=(",", ":"))


def decode_cursor(cursor: str | None) -> dict[str, str]:
    """Inverse of `encode_cursor`; None or "" is an empty map; anything else must be a JSON object."""
    if not cursor:
        return {}
    seen = json.loads(cursor)
    if not isinstance(seen, dict) or not all(isinstance(v, str) for v in seen.values()):
        raise ValueError(f"landing cursor must be a JSON object of key -> sha256, got {cursor[:80]!r}")
    return seen


def fingerprint(manifest: Manifest) -> str:
    """A short hash of the committed source set: equal fingerprints, equal measurements."""
    h = hashlib.sha256()
    for sha in sorted(manifest.sources):
        h.update(sha.encode())
    return h.hexdigest()[:16]


PUBLISHED_PREFIX = "aiconfigurator:"


def landing_source(landing: str) -> tuple[Path, list[Path] | None]:
    """(root, files) named by a landing spec.

    A folder path means every raw log under it (files None); the form
    "aiconfigurator:SYSTEM[,SYSTEM...]" means the published tables of the
    installed aiconfigurator-core for those systems, keyed under its data root.
    """
    if landing.startswith(PUBLISHED_PREFIX):
        from .aiconfigurator import find_published_tables

        systems = [s for s in landing[len(PUBLISHED_PREFIX):].split(",") if s]
        if not systems:
            raise ValueError(f"landing {landing!r} names no system, e.g. {PUBLISHED_PREFIX}h200_sxm")
        found = find_published_tables(None, systems)
        return found.root, found.tables
    root = Path(landing).expanduser().resolve()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"landing folder {root} {what}")
    return root, None


def check_home_outside(root: Path, home) -> None:
    """Refuse a local warehouse home inside the landing folder: every run (and every sensor tick) would
    read the warehouse's own Parquet data files as raw logs."""
    from .paths import resolve_home

    home = resolve_home(home)
    if isinstance(home, Path) and home.is_relative_to(Path(root).resolve()):
        raise ValueError(f"the warehouse {home} lies inside the landing folder {root}: each run would read its "
                         f"own data files as raw logs; keep the warehouse outside the landing folder")


def landing_mirrors(landing: str) -> dict[Path, Path]:
    """CSV logs in a landing folder that mirror a JSONL run log (not ingested)."""
    root, files = landing_source(landing)
    return {} if files is not None else discover_all([root])[1]


INGEST_STATUSES = (
    "ingested", "replaced", "skipped-unchanged", "skipped-duplicate", "skipped-mirror", "failed",
    "ignored", "skipped-path",
)  # fmt: skip


def ingest_frame(results, keys: dict[str, str]) -> pl.DataFrame:
    """`ingest.FileResult`s as a frame; `keys` maps a result's path to its landing key."""
    return pl.DataFrame(
        {
            "key": [keys.get(r.path, r.path) for r in results],
            "status": [r.status for r in results],
            "rows_read": [r.rows_read for r in results],
            "rows_accepted": [r.rows_accepted for r in results],
            "rows_quarantined": [r.rows_quarantined for r in results],
            "seconds": [round(r.seconds, 3) for r in results],
        },
        schema={"key": pl.String, "status": pl.String, "rows_read": pl.Int64, "rows_accepted": pl.Int64,
                "rows_quarantined": pl.Int64, "seconds": pl.Float64},
    )
