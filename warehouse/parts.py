"""Read a raw log once: its sha256 is fed from the very buffers the parser reads.

Hash and parse cannot disagree about the bytes (D1), and the file is read
from disk once instead of twice. The hash is final only when the parse is
done, so a file's data files are encoded in memory (`Encoded`) and written
under their partition (named by the hash) afterwards; a file that turns out
to be in the warehouse already writes nothing.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from .atomic import ZSTD_LEVEL

# Bytes read (and hashed) per step: large enough that per-block overheads
# vanish, small enough that a few blocks in flight keep RSS low.
BLOCK_BYTES = 30 * 1024 * 1024


class FileChangedError(OSError):
    """The file changed while it was read (truncated, grown or rewritten)."""


def pread_exact(fd: int, n: int, offset: int, path: Path | str = "") -> bytes:
    """`n` bytes at `offset`; a short read means the file shrank under us."""
    data = os.pread(fd, n, offset)  # releases the GIL
    if len(data) != n:
        raise FileChangedError(
            f"{path}: changed while it was read (expected {n:,} bytes at offset {offset:,}, "
            f"got {len(data):,}); not ingested, re-run once the writer is done"
        )
    return data


class HashingReader:
    """Sequential reads of exactly the `size` bytes a file had when it was opened,
    each one fed to sha256 before it is handed out.

    pread, never a mapping: a file truncated meanwhile is a FileChangedError,
    not SIGBUS. Whether the file was changed between reads is the caller's
    check (its identity after the parse, warehouse/ingest.py).
    """

    def __init__(self, path: Path, size: int | None = None):
        self.path = Path(path)
        self._fh = open(self.path, "rb", buffering=0)
        self.size = os.fstat(self._fh.fileno()).st_size if size is None else size
        self.pos = 0
        self._sha = hashlib.sha256()

    @property
    def done(self) -> bool:
        return self.pos >= self.size

    def read(self, n: int = BLOCK_BYTES) -> bytes:
        """The next `n` bytes (fewer at the end; b"" once done), hashed."""
        n = min(n, self.size - self.pos)
        if n <= 0:
            return b""
        data = pread_exact(self._fh.fileno(), n, self.pos, self.path)
        self._sha.update(data)  # releases the GIL on large buffers
        self.pos += n
        return data

    def read_rest(self) -> bytes:
        return self.read(self.size - self.pos)

    def hexdigest(self) -> str:
        """sha256 of the whole file as read; only once every byte was read."""
        if not self.done:
            raise RuntimeError(f"{self.path}: hash asked for after {self.pos:,} of {self.size:,} bytes")
        return self._sha.hexdigest()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "HashingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def as_reader(source: "HashingReader | Path | str") -> tuple[HashingReader, bool]:
    """(a reader for `source`, whether the caller opened it and must close it)."""
    if isinstance(source, HashingReader):
        return source, False
    return HashingReader(Path(source)), True


def encode_parquet(frame: pl.DataFrame) -> bytes:
    """A data file's bytes (zstd, with statistics for pruning), in memory."""
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd", compression_level=ZSTD_LEVEL, statistics=True)
    return buf.getvalue()


@dataclass
class Encoded:
    """One raw log's data files, encoded but not written (the hash is not final yet), and its counts."""

    ingested_at: datetime
    parts: list[bytes] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    quarantine: bytes | None = None
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    blank_lines: int = 0
    header_lines: int = 0
