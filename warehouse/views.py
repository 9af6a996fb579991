"""SQL over one committed version: perf.duckdb for the duckdb CLI, locked connections for Python.

perf.duckdb holds views with absolute paths over the data files of the
latest committed version (see warehouse/tables.py), the folded ingest ledger
(a small table) and `warehouse_version` (which version the views show). It is
rebuilt in a temporary file and renamed into place after each ingest run, so
a reader holding the old file keeps a consistent (old) state: files a commit
removes stay on disk for the Delta retention period (7 days) before vacuum
deletes them.

`connect_snapshot` serves Python and `perfwh sql`: an in-memory DuckDB over
Arrow datasets of one pinned version, with file system access switched off,
so a query can read the warehouse but never write or delete a file in it.
Each table gets its own view; a table whose files cannot be opened becomes a
view that raises a message naming the table, and the others keep working.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa

from .atomic import tmp_path_for
from .location import ObjectHome, arrow_location
from .paths import WarehousePaths
from .schema import KEY_COLUMNS, LEDGER_SCHEMA, MEASUREMENT_SCHEMA, OPS, QUARANTINE_SCHEMA
from .tables import PARTITION, Snapshot, arrow_schema, load_snapshot

_DUCK_TYPES = {
    "String": "VARCHAR",
    "Int32": "INTEGER",
    "Int64": "BIGINT",
    "UInt32": "UINTEGER",
    "Float64": "DOUBLE",
    "Datetime": "TIMESTAMP WITH TIME ZONE",
}
BASE_VIEWS = ("measurements", "perf_points", "quarantine", "ingest_ledger", "warehouse_version")
PARTITION_DONE = "build_errors"  # the table the estimator's derived store writes last in a partition


def _duck_type(dtype) -> str:
    return _DUCK_TYPES[dtype.base_type().__name__]


def _casts(schema: dict) -> str:
    return ", ".join(f"CAST({c} AS {_duck_type(t)}) AS {c}" for c, t in schema.items())


def _empty_select(schema: dict) -> str:
    cols = ", ".join(f"CAST(NULL AS {_duck_type(t)}) AS {c}" for c, t in schema.items())
    return f"SELECT {cols} WHERE false"


def _quote(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _sql_list(files: list) -> str:
    return "[" + ", ".join(_quote(f) for f in files) + "]"


def _parquet_select(files: list[str], schema: dict) -> str:
    if not files:
        return _empty_select(schema)
    return f"SELECT {_casts(schema)} FROM read_parquet({_sql_list(files)}, hive_partitioning = true, union_by_name = true)"


def _error_view(name: str, message: str, schema: dict | None = None) -> str:
    """A view with `schema`'s columns whose every query fails with `message` (other views unaffected)."""
    cols = ", ".join(f"CAST(NULL AS {_duck_type(t)}) AS {c}" for c, t in (schema or {}).items()) or "NULL AS error"
    return f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} FROM range(1) WHERE error({_quote(f'{name}: {message}')}) IS NULL"


def perf_points_sql(source: str = "measurements") -> str:
    keys = ", ".join(KEY_COLUMNS)
    return (
        f"SELECT {keys}, median(latency_ms) AS latency_ms, CAST(count(*) AS UINTEGER) AS n, "
        "min(latency_ms) AS latency_min_ms, max(latency_ms) AS latency_max_ms, "
        "CASE WHEN count(*) > 1 THEN (max(latency_ms) - min(latency_ms)) / median(latency_ms) END AS spread_rel "
        f"FROM {source} GROUP BY {keys}"
    )


def _derived_files(home: Path) -> dict[str, list[Path]]:
    """{view name: files}: derived/<table>.parquet, and the estimator's per-partition tables
    derived/partitions/<system>/<framework>/<version>/<table>.parquet unioned into one view each
    (they take the name over a top-level file of the same name)."""
    d = WarehousePaths.at(home).derived
    if not d.exists():
        return {}
    reserved = set(OPS) | set(BASE_VIEWS)
    out: dict[str, list[Path]] = {f.stem: [f] for f in sorted(d.glob("*.parquet"))}
    parts: dict[str, list[Path]] = {}
    for f in sorted((d / "partitions").glob("*/*/*/*.parquet")):
        parts.setdefault(f.stem, []).append(f)
    out.update(parts)
    return {name: files for name, files in out.items() if name not in reserved}


def _lost_derived(home: Path) -> dict[str, str]:
    """{view name: message} for the per-partition tables a complete partition lacks (deleted or lost):
    the view would silently leave that partition out, so it fails naming the file instead. The
    derived store writes `PARTITION_DONE` last, so a partition still being built is not complete."""
    root = WarehousePaths.at(home).derived / "partitions"
    if not root.exists():
        return {}
    done = [f.parent for f in sorted(root.glob(f"*/*/*/{PARTITION_DONE}.parquet"))]
    names = {f.stem for f in root.glob("*/*/*/*.parquet")} - set(OPS) - set(BASE_VIEWS)
    out = {}
    for name in sorted(names):
        lost = [d / f"{name}.parquet" for d in done if not (d / f"{name}.parquet").exists()]
        if lost:
            out[name] = (f"{lost[0]} is missing{f' (and {len(lost) - 1} more)' if len(lost) > 1 else ''}; "
                         "`perfwh materialize` rebuilds it")
    return out


def _version_select(snap: Snapshot) -> str:
    at = f"TIMESTAMPTZ {_quote(snap.committed_at.isoformat())}" if snap.committed_at else "CAST(NULL AS TIMESTAMPTZ)"
    return (
        f"SELECT {snap.version} AS ledger_version, {snap.measurements_version} AS measurements_version, "
        f"{snap.quarantine_version} AS quarantine_version, {at} AS committed_at"
    )


def _derived_views(con, home: Path, source) -> None:
    for name, files in _derived_files(home).items():
        try:
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {source(files)}")
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            con.execute(_error_view(name, f"cannot read {files[0]} ({str(exc).splitlines()[0]})"))
    for name, message in _lost_derived(home).items():
        con.execute(_error_view(name, message))


def _common_views(con) -> None:
    con.execute(f"CREATE OR REPLACE VIEW perf_points AS {perf_points_sql()}")
    for op in OPS:
        con.execute(f"CREATE OR REPLACE VIEW {op} AS SELECT * FROM perf_points WHERE op = '{op}'")


def write_views(con, snap: Snapshot) -> None:
    """The views of `snap` in `con` over the data files themselves (perf.duckdb)."""
    for name, schema in (("measurements", MEASUREMENT_SCHEMA), ("quarantine", QUARANTINE_SCHEMA)):
        if isinstance(snap.home, ObjectHome):  # DuckDB reads S3 only through httpfs, an extension it must download
            con.execute(_error_view(name, f"the data is in {snap.home}: query it with `perfwh sql --home {snap.home}`", schema))
            continue
        try:
            con.execute(f"CREATE OR REPLACE VIEW {name} AS {_parquet_select(snap.files(name), schema)}")
        except duckdb.Error as exc:
            con.execute(_error_view(name, f"a data file cannot be read; run `perfwh verify` ({str(exc).splitlines()[0]})", schema))
    con.register("_ledger", snap.ledger.select(list(LEDGER_SCHEMA)).to_arrow())
    con.execute("CREATE OR REPLACE TABLE ingest_ledger AS SELECT * FROM _ledger")
    con.unregister("_ledger")
    con.execute(f"CREATE OR REPLACE VIEW warehouse_version AS {_version_select(snap)}")
    con.execute(f"COMMENT ON VIEW warehouse_version IS {_quote(snap.home)}")  # the home its paths are under
    _common_views(con)
    _derived_views(con, snap.home, lambda files: f"read_parquet({_sql_list(files)}, union_by_name = true)")


def _dataset(snap: Snapshot, name: str, schema: dict) -> "ds.Dataset":
    import pyarrow.dataset as ds  # not at module level: it imports pandas (~0.5 s), which ingest never needs

    full = arrow_schema(schema)
    fs, base = arrow_location(snap.home / name)  # S3 file system for an object home
    return ds.dataset(
        [arrow_location(f)[1] for f in snap.files(name)], schema=full, format="parquet", filesystem=fs,
        partitioning=ds.partitioning(pa.schema([full.field(PARTITION)]), flavor="hive"),
        partition_base_dir=base,
    )  # fmt: skip


def connect_snapshot(snap: Snapshot) -> duckdb.DuckDBPyConnection:
    """An in-memory, read-only DuckDB connection over one pinned version (no file system access)."""
    con = duckdb.connect()
    for name, schema in (("measurements", MEASUREMENT_SCHEMA), ("quarantine", QUARANTINE_SCHEMA)):
        try:
            con.register(f"_{name}_data", _dataset(snap, name, schema))
            con.execute(f"CREATE VIEW {name} AS SELECT {_casts(schema)} FROM _{name}_data")
        except (OSError, pa.ArrowException, duckdb.Error) as exc:
            con.execute(_error_view(name, f"a data file cannot be opened; run `perfwh verify` ({str(exc).splitlines()[0]})", schema))
    con.register("_ingest_ledger", snap.ledger.select(list(LEDGER_SCHEMA)).to_arrow())
    con.execute("CREATE VIEW ingest_ledger AS SELECT * FROM _ingest_ledger")
    con.execute(f"CREATE VIEW warehouse_version AS {_version_select(snap)}")
    _common_views(con)
    for name, files in _derived_files(snap.home).items():
        try:
            import pyarrow.dataset as ds

            data = ds.dataset([str(f) for f in files], format="parquet")
        except (OSError, pa.ArrowException) as exc:
            con.execute(_error_view(name, f"cannot read {files[0]} ({str(exc).splitlines()[0]})"))
            continue
        con.register(f"_derived_{name}", data)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM _derived_{name}")
    for name, message in _lost_derived(snap.home).items():
        con.execute(_error_view(name, message))
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def views_built_here(home) -> bool:
    """Whether perf.duckdb exists and its views read this home: a copied or moved warehouse's
    perf.duckdb still names the files of the folder it was built in (absolute paths)."""
    paths = WarehousePaths.at(home)
    if not paths.duckdb.exists():
        return False
    try:
        with duckdb.connect(str(paths.duckdb), read_only=True) as con:
            got = con.sql("SELECT comment FROM duckdb_views() WHERE view_name = 'warehouse_version'").fetchall()
    except duckdb.Error:
        return False
    return got == [(str(paths.home),)]


def refresh_views(home) -> Path:
    """Rebuild perf.duckdb from the latest committed version (an object home's in its local cache)."""
    paths = WarehousePaths.at(home).ensure()
    snap = load_snapshot(paths.home)
    tmp = tmp_path_for(paths.duckdb)
    try:
        con = duckdb.connect(str(tmp))
        try:
            write_views(con, snap)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, paths.duckdb)
    finally:
        for leftover in (tmp, Path(str(tmp) + ".wal")):
            if leftover.exists():
                leftover.unlink()
    return paths.duckdb
