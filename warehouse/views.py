"""The DuckDB file: views over the Parquet files the manifest names.

perf.duckdb holds no data, only views with absolute paths, so it works from
any working directory and from the duckdb CLI. It is rebuilt in a temporary
file and renamed into place: a reader holding the old file keeps a consistent
(old) state.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from .atomic import tmp_path_for
from .paths import WarehousePaths
from .schema import KEY_COLUMNS, LEDGER_SCHEMA, MEASUREMENT_SCHEMA, OPS, QUARANTINE_SCHEMA

_DUCK_TYPES = {
    "String": "VARCHAR",
    "Int32": "INTEGER",
    "Int64": "BIGINT",
    "UInt32": "UINTEGER",
    "Float64": "DOUBLE",
    "Datetime": "TIMESTAMP WITH TIME ZONE",
}


def _duck_type(dtype) -> str:
    return _DUCK_TYPES[dtype.base_type().__name__]


def _empty_select(schema: dict) -> str:
    cols = ", ".join(f"CAST(NULL AS {_duck_type(t)}) AS {c}" for c, t in schema.items())
    return f"SELECT {cols} WHERE false"


def _sql_list(files: list[Path]) -> str:
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


def _parquet_select(files: list[Path], schema: dict) -> str:
    if not files:
        return _empty_select(schema)
    cols = ", ".join(f"CAST({c} AS {_duck_type(t)}) AS {c}" for c, t in schema.items())
    return f"SELECT {cols} FROM read_parquet({_sql_list(files)}, union_by_name = true)"


def perf_points_sql(source: str = "measurements") -> str:
    keys = ", ".join(KEY_COLUMNS)
    return (
        f"SELECT {keys}, median(latency_ms) AS latency_ms, CAST(count(*) AS UINTEGER) AS n, "
        "min(latency_ms) AS latency_min_ms, max(latency_ms) AS latency_max_ms, "
        "(max(latency_ms) - min(latency_ms)) / median(latency_ms) AS spread_rel "
        f"FROM {source} GROUP BY {keys}"
    )


def view_statements(home: Path, manifest) -> list[str]:
    paths = WarehousePaths.at(home)
    parts = [paths.home / p for p in manifest.live_parts()]
    quarantine = [paths.home / p for p in manifest.live_quarantine()]
    ledger = [paths.home / manifest.ledger] if manifest.ledger else []
    stmts = [
        f"CREATE OR REPLACE VIEW measurements AS {_parquet_select(parts, MEASUREMENT_SCHEMA)}",
        f"CREATE OR REPLACE VIEW perf_points AS {perf_points_sql()}",
        f"CREATE OR REPLACE VIEW quarantine AS {_parquet_select(quarantine, QUARANTINE_SCHEMA)}",
        f"CREATE OR REPLACE VIEW ingest_ledger AS {_parquet_select(ledger, LEDGER_SCHEMA)}",
    ]
    for op in OPS:
        stmts.append(f"CREATE OR REPLACE VIEW {op} AS SELECT * FROM perf_points WHERE op = '{op}'")
    if paths.derived.exists():
        for f in sorted(paths.derived.glob("*.parquet")):
            if f.stem in OPS or f.stem in ("measurements", "perf_points", "quarantine", "ingest_ledger"):
                continue
            stmts.append(
                f"CREATE OR REPLACE VIEW {f.stem} AS SELECT * FROM read_parquet({_sql_list([f])})"
            )
    return stmts


def refresh_views(home, manifest=None) -> Path:
    """Rebuild perf.duckdb from the manifest (current one if not given)."""
    from .manifest import load_manifest

    paths = WarehousePaths.at(home).ensure()
    if manifest is None:
        manifest = load_manifest(paths)
    tmp = tmp_path_for(paths.duckdb)
    try:
        con = duckdb.connect(str(tmp))
        try:
            for stmt in view_statements(paths.home, manifest):
                con.execute(stmt)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, paths.duckdb)
    finally:
        for leftover in (tmp, Path(str(tmp) + ".wal")):
            if leftover.exists():
                leftover.unlink()
    return paths.duckdb
