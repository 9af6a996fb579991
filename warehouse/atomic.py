"""Atomic file writes: write beside the target, fsync, then rename over it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import polars as pl

# zstd level 1: ~25% larger files than the default level 3 for ~15% less
# write CPU, which is the larger share of ingest time (benchmarks/ingest.py).
ZSTD_LEVEL = 1


def tmp_path_for(target: Path) -> Path:
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet_atomic(frame: pl.DataFrame, target: Path, metadata: dict[str, str] | None = None) -> Path:
    """Readers see the old file or the new one, never a partial write; `metadata` goes in the footer."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(target)
    try:
        frame.write_parquet(
            tmp, compression="zstd", compression_level=ZSTD_LEVEL, statistics=True, metadata=metadata
        )
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(target.parent)
    return target


def write_text_atomic(text: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(target)
    tmp.write_text(text)
    os.replace(tmp, target)
    return target
