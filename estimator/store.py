"""Warehouse I/O for the estimator: thin wrappers around the pure functions.

`sol_calibration` and `grids` are derived tables stamped with the hash of
their inputs (the warehouse's committed source parts, the calibration, the
method versions); `ensure_*` rebuilds them when that hash no longer matches,
so a stale grid is never served, and a fresh one loads without re-reading the
measurements.
"""

from __future__ import annotations

import hashlib

import polars as pl

from warehouse.derived import read_derived, write_derived
from warehouse.manifest import load_manifest
from warehouse.paths import WarehousePaths
from warehouse.read import read_perf_points, warehouse_exists

from .calibrate import METHOD as CAL_METHOD
from .calibrate import calibrate
from .grid import build_grids, grids_hash
from .limits import drop_impossible

CALIBRATION_TABLE = "sol_calibration"
GRIDS_TABLE = "grids"


def sources_tag(home) -> str:
    """Identity of the warehouse's current measurements (its committed, content-named parts)."""
    paths = WarehousePaths.at(home)
    if not warehouse_exists(paths.home):
        raise FileNotFoundError(f"no warehouse at {paths.home}: run `perfwh ingest PATH` first "
                                "(or pass --home / set PERFWH_HOME)")
    parts = sorted(load_manifest(paths).live_parts())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _read_or_none(home, name: str) -> pl.DataFrame | None:
    try:
        return read_derived(home, name)
    except FileNotFoundError:
        return None


def _fresh(frame: pl.DataFrame | None, tag: str) -> bool:
    return frame is not None and frame.height > 0 and "input_hash" in frame.columns and frame["input_hash"][0] == tag


def ensure_calibration(home, points: pl.DataFrame | None = None, *, force: bool = False) -> pl.DataFrame:
    """The `sol_calibration` table for the warehouse's current measurements (refit if stale or forced)."""
    tag = hashlib.sha256(f"{sources_tag(home)}|{CAL_METHOD}".encode()).hexdigest()[:16]
    cal = None if force else _read_or_none(home, CALIBRATION_TABLE)
    if _fresh(cal, tag):
        return cal
    points = drop_impossible(read_perf_points(home) if points is None else points)  # docs/limits.md
    if points.height == 0:
        raise KeyError(f"the warehouse at {WarehousePaths.at(home).home} has no perf points: "
                       "run `perfwh ingest PATH` first")
    cal = calibrate(points).with_columns(pl.lit(tag).alias("input_hash"))
    write_derived(home, CALIBRATION_TABLE, cal)
    return cal


def ensure_grids(home, points: pl.DataFrame | None = None, calibration: pl.DataFrame | None = None, *,
                 force: bool = False) -> pl.DataFrame:
    """The `grids` table for the current measurements and calibration (rebuilt if stale or forced)."""
    calibration = ensure_calibration(home, points) if calibration is None else calibration
    src = sources_tag(home)
    grids = None if force else _read_or_none(home, GRIDS_TABLE)
    if _fresh(grids, grids_hash(src, calibration)):
        return grids
    points = drop_impossible(read_perf_points(home) if points is None else points)  # docs/limits.md
    grids = build_grids(points, calibration, inputs_tag=src)
    write_derived(home, GRIDS_TABLE, grids)
    return grids


def build_derived(home, *, force: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(calibration, grids) of the warehouse, rebuilding either where stale (or both when forced)."""
    cal = ensure_calibration(home, force=force)
    return cal, ensure_grids(home, calibration=cal, force=force)


# ---- interval model (estimator.intervals): one hunk, portable to a per-partition store ------
INTERVALS_TABLE = "interval_model"


def ensure_interval_model(home, grids: pl.DataFrame, *, force: bool = False) -> pl.DataFrame:
    """The `interval_model` table for the current grids (rebuilt when the grids' hash changes):
    cross-validation residuals of the warehouse's points -> 80% interval quantiles."""
    from .intervals import METHOD as IV_METHOD
    from .intervals import build_interval_model, cv_residuals

    tag = hashlib.sha256(f"{grids['input_hash'][0] if grids.height else ''}|{IV_METHOD}".encode()).hexdigest()[:16]
    model = None if force else _read_or_none(home, INTERVALS_TABLE)
    if _fresh(model, tag):
        return model
    model = build_interval_model(cv_residuals(read_perf_points(home))).with_columns(pl.lit(tag).alias("input_hash"))
    write_derived(home, INTERVALS_TABLE, model)
    return model
