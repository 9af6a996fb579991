"""Derived tables (perf_points, grids, sol_calibration, accuracy, ...).

One Parquet file per table under <home>/derived, written atomically. Other
packages (the estimator, the Dagster assets) write their tables here so that
the DuckDB views pick them up; the warehouse never needs to know their schema.
"""

from __future__ import annotations

import re

import polars as pl

from .atomic import write_parquet_atomic
from .paths import WarehousePaths

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"derived table name {name!r} must match {_NAME.pattern}")
    return name


VERSION_KEY = "perfwh.ledger_version"


def write_derived(home, name: str, frame: pl.DataFrame, *, refresh_views: bool = True, built_from=None):
    """Replace derived table `name` atomically; returns its path.

    `built_from` (a `warehouse.read.snapshot`, or a ledger version) is the
    committed version the table was computed from; it is recorded in the
    file's Parquet metadata (`derived_version` reads it back). A snapshot may
    also be passed as `home`, which records its version.
    """
    from .tables import Snapshot

    if isinstance(home, Snapshot):
        built_from = home if built_from is None else built_from
        home = home.home
    version = built_from.version if isinstance(built_from, Snapshot) else built_from
    meta = {VERSION_KEY: str(int(version))} if version is not None else None
    paths = WarehousePaths.at(home).ensure()
    target = write_parquet_atomic(frame, paths.derived_table(_check_name(name)), metadata=meta)
    if refresh_views:
        from .views import refresh_views as _refresh

        _refresh(paths.home)
    return target


def read_derived(home, name: str) -> pl.DataFrame:
    """Raises FileNotFoundError naming the table when it was never built."""
    path = WarehousePaths.at(home).derived_table(_check_name(name))
    if not path.exists():
        raise FileNotFoundError(f"derived table {name!r} not built yet (looked for {path})")
    return pl.read_parquet(path)


def derived_version(home, name: str) -> int | None:
    """The ledger version derived table `name` was built from (None when not recorded)."""
    path = WarehousePaths.at(home).derived_table(_check_name(name))
    if not path.exists():
        raise FileNotFoundError(f"derived table {name!r} not built yet (looked for {path})")
    value = pl.read_parquet_metadata(path).get(VERSION_KEY)
    return int(value) if value is not None else None


def derived_tables(home) -> list[str]:
    d = WarehousePaths.at(home).derived
    return sorted(p.stem for p in d.glob("*.parquet")) if d.exists() else []
