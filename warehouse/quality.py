"""Data-quality rules over warehouse frames, as pure functions.

Each rule returns the offending rows (empty frame = rule holds), so a caller
can count them, show a sample, and decide how loud to be.
"""

from __future__ import annotations

import polars as pl

from .schema import KEY_COLUMNS, OPS

SEQ_AXES = ("isl", "kv_len")


def bad_latency_rows(measurements: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """Rows whose latency_ms is null, NaN, infinite or not positive."""
    lat = pl.col("latency_ms")
    return (
        measurements.lazy()
        .filter(lat.is_null() | lat.is_nan() | lat.is_infinite() | (lat <= 0))
        .collect()
    )


def unbalanced_sources(ledger: pl.DataFrame) -> pl.DataFrame:
    """Ledger rows where rows_read != rows_accepted + rows_quarantined."""
    return ledger.filter(pl.col("rows_read") != pl.col("rows_accepted") + pl.col("rows_quarantined"))


def quarantine_shares(ledger: pl.DataFrame) -> pl.DataFrame:
    """Per live source: rows read, quarantined, and the quarantined share (0 when no rows)."""
    live = ledger.filter(pl.col("status").is_in(["ingested", "replaced"]))
    return live.select(
        "path",
        "rows_read",
        "rows_quarantined",
        pl.when(pl.col("rows_read") > 0)
        .then(pl.col("rows_quarantined") / pl.col("rows_read"))
        .otherwise(0.0)
        .alias("quarantine_share"),
    ).sort("path")


def overall_quarantine_share(ledger: pl.DataFrame) -> float:
    shares = quarantine_shares(ledger)
    read = int(shares["rows_read"].sum())
    return float(shares["rows_quarantined"].sum()) / read if read else 0.0


def duplicate_keys(points: pl.DataFrame) -> pl.DataFrame:
    """Key tuples that occur more than once, with their count `copies`.

    One hash of each row's key finds the candidates (rows whose hash repeats); the
    group-by runs on those only. Grouping every row made one group per perf point
    (half a million on the published corpus), the check's whole cost; a hash
    collision only adds a candidate, which the group-by then counts exactly.
    """
    keys = list(KEY_COLUMNS)
    repeated = points.select(pl.struct(keys).hash())[:, 0].is_duplicated()
    return (
        points.filter(repeated)
        .group_by(keys)
        .agg(pl.len().alias("copies"))
        .filter(pl.col("copies") > 1)
        .sort(keys, nulls_last=True)
    )


def decreasing_latency(points: pl.DataFrame, tolerance: float) -> pl.DataFrame:
    """Points whose latency drops by more than `tolerance` (relative) as the sequence
    axis (isl for context ops, kv_len for generation ops) grows, all else equal.

    Each returned row carries the previous point on its line: prev_seq,
    prev_latency_ms, and drop_rel = 1 - latency_ms / prev_latency_ms.
    """
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    context_ops = [op for op, phase in OPS.items() if phase == "context"]
    line = [c for c in KEY_COLUMNS if c not in SEQ_AXES]
    seq = pl.when(pl.col("op").is_in(context_ops)).then(pl.col("isl")).otherwise(pl.col("kv_len"))
    ordered = (
        points.with_columns(seq.alias("seq"))
        .filter(pl.col("seq").is_not_null())
        .sort([*line, "seq"], nulls_last=True)
    )
    return (
        ordered.with_columns(
            pl.col("seq").shift(1).over(line).alias("prev_seq"),
            pl.col("latency_ms").shift(1).over(line).alias("prev_latency_ms"),
        )
        .with_columns((1 - pl.col("latency_ms") / pl.col("prev_latency_ms")).alias("drop_rel"))
        .filter(pl.col("drop_rel") > tolerance)
    )


def high_spread(points: pl.DataFrame, max_spread: float) -> pl.DataFrame:
    """Points measured more than once whose (max - min) / median exceeds `max_spread`."""
    if max_spread < 0:
        raise ValueError(f"max_spread must be >= 0, got {max_spread}")
    return points.filter((pl.col("n") > 1) & (pl.col("spread_rel") > max_spread)).sort(
        "spread_rel", descending=True
    )


def quarantine_reasons(quarantine: pl.DataFrame) -> pl.DataFrame:
    """(reason, rows, first_line) of quarantined rows, most frequent first."""
    return (
        quarantine.group_by("reason")
        .agg(pl.len().alias("rows"), pl.col("source_line").min().alias("first_line"))
        .sort(["rows", "reason"], descending=[True, False])
    )


def source_quarantine(home, sha256: str) -> pl.DataFrame:
    """The quarantined rows of one committed source (empty when it had none)."""
    from .manifest import load_manifest
    from .paths import WarehousePaths
    from .schema import QUARANTINE_SCHEMA

    paths = WarehousePaths.at(home)
    entry = load_manifest(paths).sources.get(sha256)
    if entry is None:
        raise KeyError(f"no committed source with sha256 {sha256} in {paths.home}")
    if not entry.quarantine:
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    frame = pl.read_parquet(paths.home / entry.quarantine).with_columns(pl.lit(sha256).alias("source_sha256"))
    return frame.select([pl.col(c).cast(t) for c, t in QUARANTINE_SCHEMA.items()])
