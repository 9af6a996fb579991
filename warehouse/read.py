"""Read API for the estimator, the pipeline and the CLI.

Readers pin one committed version (`snapshot`) and read only the data files
it names (never a directory glob), so they see one state even while writers
commit.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from .paths import WarehousePaths
from .schema import KEY_COLUMNS, MEASUREMENT_SCHEMA, PERF_POINT_SCHEMA
from .tables import PARTITION, Snapshot, Store, load_snapshot, parse_as_of
from .views import connect_snapshot

Home = str | os.PathLike | Snapshot | None


def snapshot(home: Home = None, as_of: int | str | datetime | None = None) -> Snapshot:
    """One committed version of the warehouse, pinned: every read through it sees that version only.

    `as_of` is a ledger version (an integer) or a time (datetime or ISO 8601
    text); default the latest. Pass the snapshot where a function takes
    `home` (scan_measurements, read_perf_points, sql, ...) to read several
    tables from the same version while writers commit new ones.
    """
    if isinstance(home, Snapshot):
        return home
    return load_snapshot(WarehousePaths.at(home).home, parse_as_of(as_of))


def connect(home: Home = None, as_of: int | str | datetime | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection to the views of one committed version (no file system access)."""
    snap = snapshot(home, as_of)
    if snap.version <= 0 and not Store(snap.home).exists():
        raise FileNotFoundError(
            f"no warehouse at {snap.home}: run `perfwh ingest PATH` first "
            "(or pass --home / set PERFWH_HOME)"
        )
    return connect_snapshot(snap)


def sql(query: str, home: Home = None, params: list | None = None, *, as_of=None) -> pl.DataFrame:
    """Run one SQL statement (a query) against one committed version."""
    statements = duckdb.extract_statements(query)
    if len(statements) != 1:
        raise ValueError(f"give exactly one SQL statement per call (got {len(statements)})")
    con = connect(home, as_of)
    try:
        return con.sql(query, params=params).pl() if params else con.sql(query).pl()
    finally:
        con.close()


def _filters(**eq) -> list[pl.Expr]:
    return [pl.col(k) == v for k, v in eq.items() if v is not None]


def scan_measurements(home: Home = None) -> pl.LazyFrame:
    """The measurements of one committed version (the latest, or the snapshot passed as `home`)."""
    snap = snapshot(home)
    files = snap.files("measurements")
    if not files:
        return pl.LazyFrame(schema=MEASUREMENT_SCHEMA)
    # Files store text as Categorical (STORAGE_SCHEMA); the partition column comes from the path.
    lf = pl.scan_parquet(
        files, hive_partitioning=True, hive_schema={PARTITION: pl.String},
        cast_options=pl.ScanCastOptions(categorical_to_string="allow"),
    )  # fmt: skip
    return lf.select([pl.col(c).cast(t) for c, t in MEASUREMENT_SCHEMA.items()])


def read_measurements(home: Home = None, **eq) -> pl.DataFrame:
    lf = scan_measurements(home)
    for f in _filters(**eq):
        lf = lf.filter(f)
    return lf.collect()


def perf_points_from(measurements: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """One row per distinct shape: median of repeats, n, min, max, spread."""
    lf = measurements.lazy()
    out = (
        lf.group_by(list(KEY_COLUMNS))
        .agg(
            pl.col("latency_ms").median().alias("latency_ms"),
            pl.len().cast(pl.UInt32).alias("n"),
            pl.col("latency_ms").min().alias("latency_min_ms"),
            pl.col("latency_ms").max().alias("latency_max_ms"),
        )
        .with_columns(
            # One sample has no spread: null, not 0.0 (which would read as "perfectly repeatable").
            pl.when(pl.col("n") > 1)
            .then((pl.col("latency_max_ms") - pl.col("latency_min_ms")) / pl.col("latency_ms"))
            .alias("spread_rel")
        )
        .sort(list(KEY_COLUMNS), nulls_last=True)
        .collect()
    )
    return out.select([pl.col(c).cast(t) for c, t in PERF_POINT_SCHEMA.items()])


def read_perf_points(
    home: Home = None,
    *,
    system: str | None = None,
    framework: str | None = None,
    version: str | None = None,
    op: str | None = None,
) -> pl.DataFrame:
    lf = scan_measurements(home)
    for f in _filters(system=system, framework=framework, version=version, op=op):
        lf = lf.filter(f)
    return perf_points_from(lf)


def available_slices(home: Home = None) -> pl.DataFrame:
    """(system, framework, version, op) with measurement and point counts."""
    pts = read_perf_points(home)
    return (
        pts.group_by("system", "framework", "version", "op")
        .agg(pl.len().alias("points"), pl.col("n").sum().alias("measurements"))
        .sort("system", "framework", "version", "op")
    )


# A per-op view as `views._common_views` defines it (DuckDB's normalized text): its rows are the
# op's group of `SELECT op, count(*) FROM perf_points GROUP BY op`.
_OP_VIEW = re.compile(r"CREATE VIEW (\w+) AS SELECT \* FROM perf_points WHERE \(op = '(\w+)'\);")


def view_row_counts(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """(view, rows) for every user view of an open DuckDB connection.

    `perf_points` is an aggregation over every measurement, and each per-op view
    (`SELECT * FROM perf_points WHERE op = ...`) would aggregate them again: all of
    them are counted from one `GROUP BY op` over perf_points (the op views' counts are
    their groups, perf_points' the sum); every other view is counted by itself."""
    views = con.sql("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY view_name").fetchall()
    names = [n for n, _ in views]
    op_of = {}
    if "perf_points" in names:
        for name, sql in views:
            m = _OP_VIEW.fullmatch((sql or "").strip())
            if m and m.group(1) == name:
                op_of[name] = m.group(2)
    by_op = None
    if op_of:
        by_op = dict(con.sql("SELECT op, count(*) FROM perf_points GROUP BY op").fetchall())
    rows = []
    for name in names:
        if by_op is not None and name == "perf_points":
            n = sum(by_op.values())
        elif name in op_of:
            n = by_op.get(op_of[name], 0)
        else:
            q = name.replace('"', '""')
            n = con.sql(f'SELECT count(*) FROM "{q}"').fetchall()[0][0]
        rows.append((name, n))
    return pl.DataFrame(rows, schema={"view": pl.String, "rows": pl.Int64}, orient="row")


def table_counts(home: Home = None) -> pl.DataFrame:
    """(view, rows) of every view `perfwh sql` serves for `home`."""
    con = connect(home)
    try:
        return view_row_counts(con)
    finally:
        con.close()


def warehouse_exists(home: Home = None) -> bool:
    if isinstance(home, Snapshot):
        return True
    return Store(WarehousePaths.at(home).home).exists()


def home_path(home: Home = None) -> Path:
    if isinstance(home, Snapshot):
        return home.home
    return WarehousePaths.at(home).home
