"""Read API for the estimator, the pipeline and the CLI.

Readers go through the manifest (never a directory glob), so they see one
committed state even while an ingest runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import polars as pl

from .manifest import load_manifest
from .paths import WarehousePaths
from .schema import KEY_COLUMNS, MEASUREMENT_SCHEMA, PERF_POINT_SCHEMA
from .views import refresh_views

Home = str | os.PathLike | None


def connect(home: Home = None) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection to the warehouse views."""
    paths = WarehousePaths.at(home)
    if not paths.duckdb.exists():
        if not (paths.home / "manifest.json").exists():
            raise FileNotFoundError(
                f"no warehouse at {paths.home}: run `perfwh ingest PATH` first "
                "(or pass --home / set PERFWH_HOME)"
            )
        refresh_views(paths.home)
    return duckdb.connect(str(paths.duckdb), read_only=True)


def sql(query: str, home: Home = None, params: list | None = None) -> pl.DataFrame:
    con = connect(home)
    try:
        return con.sql(query, params=params).pl() if params else con.sql(query).pl()
    finally:
        con.close()


def _filters(**eq) -> list[pl.Expr]:
    return [pl.col(k) == v for k, v in eq.items() if v is not None]


def scan_measurements(home: Home = None) -> pl.LazyFrame:
    paths = WarehousePaths.at(home)
    manifest = load_manifest(paths)
    files = [str(paths.home / p) for p in manifest.live_parts()]
    if not files:
        return pl.LazyFrame(schema=MEASUREMENT_SCHEMA)
    # Parts store text as Categorical (STORAGE_SCHEMA); older parts as String.
    return pl.scan_parquet(
        files, schema=MEASUREMENT_SCHEMA, cast_options=pl.ScanCastOptions(categorical_to_string="allow")
    )


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
            ((pl.col("latency_max_ms") - pl.col("latency_min_ms")) / pl.col("latency_ms")).alias("spread_rel")
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


def table_counts(home: Home = None) -> pl.DataFrame:
    con = connect(home)
    try:
        names = [r[0] for r in con.sql(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY view_name"
        ).fetchall()]  # fmt: skip
        rows = [(n, con.sql(f'SELECT count(*) FROM "{n}"').fetchall()[0][0]) for n in names]
    finally:
        con.close()
    return pl.DataFrame(rows, schema={"view": pl.String, "rows": pl.Int64}, orient="row")


def warehouse_exists(home: Home = None) -> bool:
    return (WarehousePaths.at(home).home / "manifest.json").exists()


def home_path(home: Home = None) -> Path:
    return WarehousePaths.at(home).home
