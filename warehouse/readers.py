"""Raw-log readers: collector CSV, JSONL run logs, published Parquet tables.

Each reader yields `RawChunk`s: every column as text, in the collector's
vocabulary (framework, version, device, op_name, ..., step, latency), plus
`source_line`, `raw` (the original text) and `parse_error` (set where the
line could not even be split into fields). Typing and validation happen once,
in `warehouse.validate`, for all formats alike.

CSV files are read in byte chunks split at newlines so that memory stays
bounded on multi-GB logs; lines are split and fields cut with Arrow/Polars
string kernels, never a Python loop per line.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa

from .parts import BLOCK_BYTES, FileChangedError, HashingReader, as_reader, pread_exact  # noqa: F401 (re-exported)
from .schema import TABLE_STEMS

CHUNK_BYTES = BLOCK_BYTES
PARSE_WORKERS = min(4, os.cpu_count() or 1)
BOM = b"\xef\xbb\xbf"

# Collector columns a data row needs; others (power, power_limit, ...) are kept out.
KNOWN_COLUMNS = (
    "framework", "version", "device", "system", "op_name", "op", "kernel_source",
    "model", "architecture", "mla_dtype", "attn_dtype", "kv_cache_dtype",
    "gemm_type", "num_heads", "batch_size", "isl", "tp_size", "step", "prefix",
    "kv_len", "latency", "latency_ms", "run_id", "gpu_clock_mhz",
)  # fmt: skip
# Parsed as numbers on the fast path (validation checks their ranges). Int32
# is the stored type and wider than every valid range; a value that does not
# fit fails to parse and sends its block to the line path, which names it.
NUMERIC_COLUMNS = {
    "num_heads": pl.Int32, "batch_size": pl.Int32, "isl": pl.Int32, "tp_size": pl.Int32,
    "step": pl.Int32, "latency": pl.Float64,
}  # fmt: skip


class UnreadableLogError(ValueError):
    """A file the readers cannot read at all (UTF-16 text, a Parquet file of another table)."""


def check_encoding(head: bytes, path: Path | str) -> None:
    """Refuse UTF-16/32 text at once (one clear error instead of a file of
    "no header line" rows); other undecodable bytes are judged line by line."""
    sample = head[:64]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(sample) >= 4 and sample.count(0) * 3 >= len(sample)):
        raise UnreadableLogError(
            f"{path}: UTF-16/UTF-32 text (byte-order mark or NUL bytes at the start); "
            "raw logs must be UTF-8: convert it, e.g. `iconv -f UTF-16 -t UTF-8`"
        )


INVALID_UTF8 = "not valid UTF-8 text (e.g. Windows-1252 bytes)"
BARE_CR = "lines end in a bare CR (classic Mac text), so the file is one line: convert it to LF or CRLF"

# Spaces and tabs only (not \s): Python's re and polars' Rust regex disagree on
# what \s matches (\x1c-\x1f), and both must agree on what a header is.
_HEADER_RE = re.compile(r"(^|,)[ \t]*\"?latency(_ms)?\"?[ \t]*(,|\r?$)")


UNRECOGNISED_HEADER = "unrecognised header (a collector header names batch_size and latency)"
_NUMERIC_FIELD = r"(^|,)[ \t\"]*[-+]?[0-9][0-9.eE+-]*[ \t\"]*(,|\r?$)"


@dataclass
class RawChunk:
    frame: pl.DataFrame  # columns + source_line (Int64) + parse_error [+ raw]
    header_lines: int = 0
    blank_lines: int = 0
    # Fast path: the block the frame was parsed from, and the file line of its
    # first byte. The raw text of a row is cut from it only for quarantined
    # rows, so clean rows never pay for a string copy of their line.
    block: bytes | None = None
    block_first_line: int = 1
    # Fast path: each text column's distinct values (certify decides its rules on them).
    distinct: dict[str, list[str]] | None = None
    # Fast path: newlines before each slice of the block (a line's text is found in one slice).
    newlines: np.ndarray | None = None

    def raw_lines(self, lines: list[int]) -> list[str]:
        if self.block is None:
            raise ValueError("raw text is in the frame's `raw` column")
        newlines = self.newlines if self.newlines is not None else _count_newlines(self.block)
        out = []
        for line in lines:
            i = line - self.block_first_line
            start = 0 if i == 0 else _newline_offset(self.block, newlines, i - 1) + 1
            end = _newline_offset(self.block, newlines, i)
            out.append(self.block[start:end].decode("utf-8", "replace").rstrip("\r"))
        return out


@dataclass
class ReadState:
    header: list[str] | None = None
    line_offset: int = 0  # lines consumed before this chunk


def _is_header_line(line: str) -> bool:
    """The same test as `_is_header_expr`, for one line in Python."""
    return _HEADER_RE.search(line) is not None and "batch_size" in line


def _is_header_expr(col: pl.Expr) -> pl.Expr:
    return col.str.contains(_HEADER_RE.pattern) & col.str.contains("batch_size", literal=True)


def _split_lines(block: bytes) -> tuple[pl.Series, pl.Series | None]:
    """Split bytes on \\n into a String series (no Python per-line work), and
    where the block is not valid UTF-8, a boolean series marking the lines
    that are not (None when every line is)."""
    try:
        text = pa.array([block], type=pa.large_binary()).cast(pa.large_string())
    except pa.ArrowInvalid:
        # Invalid UTF-8 (a Windows-1252 or corrupted log): keep every line,
        # shown with U+FFFD, and mark the lines that held undecodable bytes.
        lines = block.split(b"\n")
        bad = [False] * len(lines)
        for i, line in enumerate(lines):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                bad[i] = True
        fixed = [line.decode("utf-8", "replace") for line in lines]
        return pl.Series("raw", fixed, dtype=pl.String), pl.Series("__bad_utf8", bad, dtype=pl.Boolean)
    import pyarrow.compute as pc  # the line path only

    parts = pc.split_pattern(text, "\n").flatten()
    return pl.from_arrow(parts).cast(pl.String).alias("raw"), None


def _header_fields(line: str) -> list[str]:
    return [f.strip().strip('"').strip().lower() for f in line.rstrip("\r").split(",")]


def _frame_for_segment(lines: pl.DataFrame, header: list[str] | None) -> pl.DataFrame:
    """Cut a run of data lines that share one header into text columns."""
    if header is None:
        # A file's first line with no numeric field is a header this reader does not know
        # (no batch_size / latency column): say so, rather than "no header" for it.
        unknown_header = (pl.col("source_line") == 1) & ~pl.col("raw").str.contains(_NUMERIC_FIELD)
        return lines.with_columns(
            pl.when(unknown_header)
            .then(pl.lit(UNRECOGNISED_HEADER))
            .otherwise(pl.lit("no header line before this row"))
            .alias("parse_error")
        )
    twice = sorted({name for name in header if name in KNOWN_COLUMNS and header.count(name) > 1})
    if twice:
        # Which of the two is meant cannot be known: every row under it is refused.
        return lines.with_columns(
            pl.lit(f"header names column(s) {', '.join(twice)} more than once").alias("parse_error")
        )
    m = len(header)
    n_commas = pl.col("raw").str.count_matches(",", literal=True)
    split = (
        pl.col("raw")
        .str.split_exact(",", m - 1)
        .struct.rename_fields([f"__f{i}" for i in range(m)])
        .alias("__s")
    )
    framed = lines.with_columns(
        pl.when(n_commas != m - 1)
        .then(
            pl.format(
                "wrong field count: {} fields, header has {}",
                (n_commas + 1).cast(pl.String),
                pl.lit(str(m)),
            )
        )
        .otherwise(None)
        .alias("parse_error"),
        split,
    ).unnest("__s")
    keep = {}
    for i, name in enumerate(header):
        if name in KNOWN_COLUMNS:
            keep[name] = pl.col(f"__f{i}").str.strip_chars(' "').alias(name)
    return framed.select("source_line", "raw", "parse_error", *keep.values())


@dataclass
class _Fast:
    """A fast-path parse, before the file-level line numbering is applied."""

    frame: pl.DataFrame
    n_lines: int
    header: list[str]
    header_here: bool
    distinct: dict[str, list[str]] | None = None  # text column -> its distinct values
    newlines: np.ndarray | None = None  # newlines before each slice (_count_newlines)


def _line_blocks(source: HashingReader, chunk_bytes: int) -> Iterator[tuple[bytes, bool]]:
    """(block, truncated_tail) of whole lines, in file order, read once through `source`.

    A block is a run of lines without its last newline; the bytes after the
    last newline of a read ride on to the next block. `truncated_tail`: the
    block ends with the file's last line, which has no newline.
    """
    carry = b""
    first = True
    while not source.done:
        data = source.read(chunk_bytes)
        if first:
            check_encoding(data[:4096], source.path)
            if data.startswith(BOM):
                data = data[len(BOM):]
            first = False
        if source.done:
            tail = b"".join((carry, data)) if carry else data
            if tail:
                terminated = tail.endswith(b"\n")
                yield (tail[:-1] if terminated else tail), not terminated
            return
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = b"".join((carry, data))
            continue
        view = memoryview(data)
        yield b"".join((carry, view[:cut])), False
        carry = bytes(view[cut + 1:])


def read_collector_csv(
    source: HashingReader | Path, chunk_bytes: int | None = None, workers: int = PARSE_WORKERS
) -> Iterator[RawChunk]:
    """Yield parsed chunks of a collector CSV log, robust to real-world damage.

    Handles a UTF-8 BOM, CRLF, blank lines, repeated or changed header lines
    mid-file (each header governs the rows after it), extra or reordered
    columns, and a truncated last line (no trailing newline: quarantined as
    such, since a cut-off number can still parse).

    The file is read once, in order, through `source` (which hashes what it
    reads: warehouse/parts.py). Polars parses one buffer on one core, so up to
    `workers` blocks are parsed by threads at once, speculatively under the
    header in force when they were submitted; chunks are yielded in file
    order, and a block whose header changed under it (a header line
    mid-file) is parsed again.
    """
    reader, opened = as_reader(source)
    try:
        if reader.size == 0:
            return
        with ThreadPoolExecutor(max(1, workers)) as pool:
            yield from _parse_blocks(reader, chunk_bytes or CHUNK_BYTES, workers, pool)
    finally:
        if opened:
            reader.close()


def _parse_blocks(reader: HashingReader, chunk_bytes: int, workers: int, pool: ThreadPoolExecutor) -> Iterator[RawChunk]:
    state = ReadState()
    hint: list[str] | None = None  # until the first block is parsed, later ones assume its first line
    pending: deque = deque()

    def settle(assumed, data: bytes, truncated: bool, future) -> Iterator[RawChunk]:
        parsed = future.result()
        if assumed != state.header and (parsed is None or not parsed.header_here):
            parsed = _parse_block_fast(data, state.header, truncated)
        if parsed is None:
            yield from _parse_block_lines(data, state, truncated)
            return
        start = state.line_offset + (2 if parsed.header_here else 1)
        state.line_offset += parsed.n_lines
        state.header = parsed.header
        frame = parsed.frame.with_columns(
            pl.int_range(start, start + parsed.frame.height, dtype=pl.Int64).alias("source_line"),
            pl.lit(None, dtype=pl.String).alias("parse_error"),
        )
        # The block keeps its header line (if any), so raw lines count from it.
        first_line = start - (1 if parsed.header_here else 0)
        yield RawChunk(
            frame=frame, header_lines=int(parsed.header_here), block=data, block_first_line=first_line,
            distinct=parsed.distinct, newlines=parsed.newlines,
        )  # fmt: skip

    for n, (data, truncated) in enumerate(_line_blocks(reader, chunk_bytes)):
        if n == 0:
            first = data.split(b"\n", 1)[0][: 64 * 1024].decode("utf-8", "replace")
            hint = _header_fields(first) if _is_header_line(first) else None
        assumed = state.header or hint
        pending.append((assumed, data, truncated, pool.submit(_parse_block_fast, data, assumed, truncated)))
        while len(pending) > workers:
            yield from settle(*pending.popleft())
    while pending:
        yield from settle(*pending.popleft())


NEWLINE_STEP = 1 << 20


def _count_newlines(data: bytes, step: int = NEWLINE_STEP) -> np.ndarray:
    """Newlines in `data` before each `step`-byte slice and in all (the last
    entry), counted by numpy off the GIL slice by slice (no big temporary)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    counts = [np.count_nonzero(buf[i: i + step] == 10) for i in range(0, len(buf), step)]
    return np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))


def _newline_offset(data: bytes, before: np.ndarray, k: int, step: int = NEWLINE_STEP) -> int:
    """Byte offset of the k-th newline (0-based) of `data`, or len(data) past the last;
    `before` from `_count_newlines`, so only one slice is searched."""
    if k >= before[-1]:
        return len(data)
    s = int(np.searchsorted(before, k, side="right")) - 1
    piece = np.frombuffer(data, dtype=np.uint8)[s * step: (s + 1) * step]
    return s * step + int(np.flatnonzero(piece == 10)[k - before[s]])


def _parse_block_fast(data: bytes, header: list[str] | None, truncated_tail: bool) -> _Fast | None:
    """Polars' native CSV parser for the common case: a clean block.

    Returns None (use the line-by-line path) at the first sign of anything
    unusual: quotes, tabs, a truncated tail, a ragged or blank line or a
    header mid-block (polars reads those as nulls in the numeric columns,
    which is how they are detected), empty or padded text.
    """
    if truncated_tail or b'"' in data or b"\t" in data:
        return None
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n") + data.endswith(b"\r"):  # `in` first: memchr
        return None  # a lone \r: polars would accept "3\r" as 3, the line path rejects it
    first_end = data.find(b"\n")
    first = data[: first_end if first_end >= 0 else len(data)].decode("utf-8", "replace")
    header_here = _is_header_line(first)
    if header_here:
        header = _header_fields(first)
    if header is None or len(set(header)) != len(header) or not set(header) & set(NUMERIC_COLUMNS):
        return None
    if header_here and first_end < 0:
        return None  # header-only block
    try:
        # Numbers parse straight into numeric columns; an unparsable one becomes
        # null (ignore_errors) and sends the block down the line path below.
        frame = pl.read_csv(
            data,
            has_header=False,
            skip_rows=1 if header_here else 0,
            new_columns=header,
            # Text as Categorical: a handful of distinct values per column, so
            # checks, validation (warehouse.certify) and the Parquet writer
            # work per distinct value instead of per row.
            schema={c: NUMERIC_COLUMNS.get(c, pl.Categorical) for c in header},
            quote_char=None,
            ignore_errors=True,
        )
    except pl.exceptions.PolarsError:
        return None  # anything odd: the line path reports it exactly
    # Newlines counted off the GIL; a parser that skipped or merged a line
    # would break the line numbering, so that too goes to the line path.
    newlines = _count_newlines(data)
    n_lines = int(newlines[-1]) + 1
    if frame.height + int(header_here) != n_lines or frame.width != len(header):
        return None
    # One polars pass for every check: a null anywhere (an unparsable number,
    # a short line), and the distinct values of each text column, on which
    # empty or padded text (", bfloat16") is found; the line path names them
    # exactly. A line that may be a header mid-block ("batch_size" in it) goes
    # to the line path too: every byte of a line is in some field, so the word
    # is in a distinct text value or has made a numeric field null.
    text_cols = [c for c in header if c not in NUMERIC_COLUMNS]
    checks = frame.select(
        pl.any_horizontal(pl.all().is_null()).any().alias("__null"),
        *[pl.col(c).unique().cast(pl.String).implode() for c in text_cols],
    ).row(0, named=True)
    if checks["__null"]:
        return None
    distinct = {c: checks[c] for c in text_cols}
    for values in distinct.values():
        if any(not v or v.strip() != v or "batch_size" in v for v in values):
            return None
    return _Fast(frame, n_lines, header, header_here, distinct, newlines)


def _parse_block_lines(data: bytes, state: ReadState, truncated_tail: bool) -> Iterator[RawChunk]:
    """The exact path: split lines, classify blank and header lines, cut fields.

    One chunk per header segment, so that each is validated against its own
    columns (a header renaming `latency` to `latency_ms` mid-block must read
    the same as one that starts a block); blank and header line counts ride
    on the first chunk.
    """
    raw, bad_utf8 = _split_lines(data)
    n = raw.len()
    lines = pl.DataFrame(
        {
            "source_line": pl.int_range(state.line_offset + 1, state.line_offset + n + 1, eager=True),
            "raw": raw,
            "__bad_utf8": bad_utf8 if bad_utf8 is not None else pl.repeat(False, n, eager=True),
        }
    ).with_columns(pl.col("raw").str.strip_suffix("\r"))
    state.line_offset += n
    # The file's last line, before blank lines are dropped: a blank one is not a truncated row.
    last_line = state.line_offset if truncated_tail else None
    blank = lines.get_column("raw").str.strip_chars().str.len_bytes() == 0
    blank_count = int(blank.sum())
    lines = lines.filter(~blank)
    # A line with undecodable bytes is never taken for a header.
    is_header = lines.select(_is_header_expr(pl.col("raw")) & ~pl.col("__bad_utf8")).to_series()
    header_count = int(is_header.sum())

    seg = is_header.cast(pl.Int32).cum_sum()
    lines = lines.with_columns(seg.alias("__seg"), is_header.alias("__hdr"))
    seg_headers = {0: state.header}
    headers = lines.filter(pl.col("__hdr"))
    for s, text in zip(headers.get_column("__seg"), headers.get_column("raw")):
        seg_headers[int(s)] = _header_fields(text)
    state.header = seg_headers[max(seg_headers)]
    pieces = []
    for s, part in lines.filter(~pl.col("__hdr")).partition_by("__seg", as_dict=True, maintain_order=True).items():
        bad_utf8 = part.get_column("__bad_utf8")
        frame = _frame_for_segment(part.drop("__seg", "__hdr", "__bad_utf8"), seg_headers[int(s[0])])
        if bad_utf8.any():
            frame = frame.with_columns(
                pl.when(bad_utf8).then(pl.lit(INVALID_UTF8)).otherwise(pl.col("parse_error")).alias("parse_error")
            )
        if last_line is not None:
            frame = frame.with_columns(
                pl.when(pl.col("source_line") == last_line)
                .then(pl.when(pl.col("raw").str.contains("\r", literal=True)).then(pl.lit(BARE_CR))
                      .otherwise(pl.lit("truncated last line (file does not end with a newline)")))
                .otherwise(pl.col("parse_error"))
                .alias("parse_error")
            )
        pieces.append(frame)
    for i, frame in enumerate(pieces or [_empty_raw()]):
        first = i == 0
        yield RawChunk(frame=frame, header_lines=header_count if first else 0, blank_lines=blank_count if first else 0)


def _empty_raw() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"source_line": pl.Int64, "raw": pl.String, "parse_error": pl.String}
    )


# JSONL run logs ---------------------------------------------------------------

JSONL_REQUIRED = (
    "run_id", "device", "framework", "version", "op", "kernel_source",
    "attn_dtype", "kv_cache_dtype", "num_heads", "batch_size", "isl", "latency_ms",
)  # fmt: skip


def _json_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


def read_jsonl(path: HashingReader | Path) -> Iterator[RawChunk]:
    """Read a perfwh JSONL run log (schema in warehouse/README: `perfwh.run/1`).

    Run logs are small (one line per measured shape), so a per-line json.loads
    is fine here; bad JSON and missing keys become parse errors, not crashes.
    """
    rows: list[dict] = []
    blank = 0
    text = read_whole(path)
    path = Path(getattr(path, "path", path))
    check_encoding(text[:4096], path)
    if text.startswith(BOM):
        text = text[len(BOM):]
    lines = text.split(b"\n")
    truncated = not text.endswith(b"\n") and len(lines) > 0
    if text.endswith(b"\n"):
        lines = lines[:-1]
    for i, line_b in enumerate(lines, start=1):
        try:
            line, bad_text = line_b.decode("utf-8").rstrip("\r"), None
        except UnicodeDecodeError:
            line, bad_text = line_b.decode("utf-8", errors="replace").rstrip("\r"), INVALID_UTF8
        if not line.strip():
            blank += 1
            continue
        row: dict = {"source_line": i, "raw": line, "parse_error": bad_text}
        if not bad_text and truncated and i == len(lines) and "\r" in line:
            row["parse_error"] = BARE_CR  # else named after its first JSON error ("Extra data")
        if row["parse_error"]:
            rows.append(row)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            row["parse_error"] = f"invalid JSON: {exc.msg} at column {exc.colno}"
            rows.append(row)
            continue
        except RecursionError:
            row["parse_error"] = "invalid JSON: nested too deeply"
            rows.append(row)
            continue
        except ValueError as exc:  # e.g. an integer of more than 4,300 digits
            row["parse_error"] = f"invalid JSON: {str(exc).split(';')[0]}"
            rows.append(row)
            continue
        if not isinstance(obj, dict):
            row["parse_error"] = "JSON line is not an object"
            rows.append(row)
            continue
        missing = [k for k in JSONL_REQUIRED if k not in obj]
        if missing:
            row["parse_error"] = f"missing key(s): {', '.join(missing)}"
        if truncated and i == len(lines):
            row["parse_error"] = "truncated last line (file does not end with a newline)"
        for key in KNOWN_COLUMNS:
            if key in obj:
                row[key] = _json_text(obj[key])
        if "latency_ms" in obj:
            row["latency"] = _json_text(obj["latency_ms"])
        if "attn_dtype" in obj:
            row["mla_dtype"] = _json_text(obj["attn_dtype"])
        rows.append(row)
    schema = {"source_line": pl.Int64, "raw": pl.String, "parse_error": pl.String}
    present = sorted({k for r in rows for k in r} - set(schema))
    schema.update({k: pl.String for k in present})
    frame = pl.DataFrame(rows, schema=schema) if rows else _empty_raw()
    yield RawChunk(frame=frame, blank_lines=blank)


# Published Parquet tables ---------------------------------------------------


# Columns a collector table must have (an alias of each counts), for a clear
# file-level error instead of every row quarantined as "missing column".
PARQUET_REQUIRED = (
    ("framework",), ("version",), ("kernel_source",), ("mla_dtype", "attn_dtype"), ("kv_cache_dtype",),
    ("num_heads",), ("batch_size",), ("isl",), ("tp_size",), ("step", "prefix", "kv_len"),
    ("latency", "latency_ms"),
)  # fmt: skip


def read_parquet_table(path: HashingReader | Path) -> Iterator[RawChunk]:
    """A table in the collector column layout, stored as Parquet (aiconfigurator).

    The file is read into memory first (no mapping: a file truncated while it
    is read is an error, not SIGBUS) and parsed from those bytes.
    """
    import io

    data = read_whole(path)
    path = Path(getattr(path, "path", path))
    try:
        table = pl.read_parquet(io.BytesIO(data))
    except pl.exceptions.PolarsError as exc:
        raise UnreadableLogError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    lower = {c.lower() for c in table.columns}
    missing = [names[0] for names in PARQUET_REQUIRED if not lower & set(names)]
    if missing:
        raise UnreadableLogError(
            f"{path}: not a collector table: missing column(s) {', '.join(missing)} "
            f"(has: {', '.join(table.columns[:20])}{', ...' if table.width > 20 else ''})"
        )
    cols = [c for c in table.columns if c.lower() in KNOWN_COLUMNS]
    text = table.select(
        [pl.col(c).cast(pl.String).alias(c.lower()) for c in cols]
    ).with_row_index("source_line", offset=1)
    raw = pl.concat_str([pl.col(c.lower()).fill_null("") for c in cols], separator=",")
    frame = text.with_columns(
        pl.col("source_line").cast(pl.Int64),
        raw.alias("raw"),
        pl.lit(None, dtype=pl.String).alias("parse_error"),
    )
    yield RawChunk(frame=frame)


def read_whole(source: HashingReader | Path) -> bytes:
    """The whole file (read once through `source`, which hashes it), checked against its size."""
    reader, opened = as_reader(source)
    try:
        return reader.read_rest()
    finally:
        if opened:
            reader.close()


READERS = {
    "csv": read_collector_csv,
    "jsonl": read_jsonl,
    "parquet": read_parquet_table,
}


def format_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in (".txt", ".csv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    return None


# Which files under a folder are raw logs ------------------------------------


@dataclass
class Discovery:
    """Raw logs found under some paths, the CSV mirrors among them, and every
    path that was passed over with the reason (never silently)."""

    files: list[Path]
    mirrors: dict[Path, Path]  # CSV -> its JSONL twin
    skipped: list[tuple[Path, str]]


def _link_problem(link: Path, root: Path) -> str | None:
    """Why a symlink under `root` is not followed, or None (a file inside `root`)."""
    try:
        target = link.resolve(strict=True)
    except FileNotFoundError:
        return f"dangling symlink (-> {os.readlink(link)})"
    except (RuntimeError, OSError) as exc:  # ELOOP; 3.11 raises RuntimeError for a loop
        return f"symlink loop ({getattr(exc, 'strerror', None) or exc})"
    if not target.is_relative_to(root):
        return f"symlink to outside the folder (-> {target})"
    return None


def walk_raw_logs(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Raw logs under `folder` (resolved paths), and the paths passed over.

    The rule, the same for `perfwh ingest DIR` and the landing sensor: folder
    symlinks are not followed (files inside the folder are found where they
    lie); a file symlink is followed only when its target lies inside the
    folder; dangling links, link loops, links that point outside and folders
    that cannot be listed are skipped and reported. Hidden files and other
    extensions are not raw logs.
    """
    root = folder.resolve()
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []

    def unreadable(exc: OSError) -> None:
        skipped.append((Path(exc.filename), f"unreadable folder ({exc.strerror})"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        dirnames.sort()
        here = Path(dirpath)
        for name in dirnames:
            if (here / name).is_symlink() and (problem := _link_problem(here / name, root)):
                skipped.append((here / name, problem))
        for name in sorted(filenames):
            f = here / name
            if name.startswith(".") or format_of(f) is None:
                continue
            if f.is_symlink() and (problem := _link_problem(f, root)):
                skipped.append((f, problem))
                continue
            if f.is_file():
                files.append(f.resolve())
            else:
                skipped.append((f, "not a regular file"))
    return files, skipped


def discover_raw_logs(paths) -> Discovery:
    """Raw logs under `paths` (files, or folders searched recursively; one path alone is one path,
    not its characters: "/data" would otherwise walk "/")."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for p in paths:
        if not str(p).strip():  # Path("") is "." : an empty argument would ingest the working folder
            raise ValueError(f"empty path {str(p)!r}: give a file or folder ('.' for the current folder)")
        path = Path(p).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        if path.is_file():
            if format_of(path) is None:
                raise ValueError(f"{path}: unknown raw-log format (expected .txt, .csv, .jsonl or .parquet)")
            found.append(path.resolve())
        elif not path.is_dir():  # a FIFO or device named on the command line: nothing to walk either
            raise ValueError(f"{path}: not a regular file or folder")
        else:
            more, passed = walk_raw_logs(path)
            found += more
            skipped += passed
    files = sorted(dict.fromkeys(found))
    present = set(files)
    mirrors = {f: f.with_suffix(".jsonl") for f in files if format_of(f) == "csv" and f.with_suffix(".jsonl") in present}
    return Discovery([f for f in files if f not in mirrors], mirrors, skipped)


def unmodelled_reason(path: Path) -> str | None:
    """Why a file is ignored as a table this warehouse does not model, or None.

    Published collector tables are named `<table>_perf`; those other than the
    modelled ones (aiconfigurator's gemm_perf, moe_perf, nccl_perf,
    context_attention_perf, ...) are recorded as ignored, not read row by row.
    """
    stem = path.stem.lower()
    if stem.endswith("_perf") and stem not in TABLE_STEMS:
        return f"table {stem} is not modelled here (modelled: {', '.join(sorted(TABLE_STEMS))})"
    return None
