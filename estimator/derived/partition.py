"""A partition's derived tables as a pure function of its perf points (`build_partition`),
the registry of those tables and the partition key; persistence is `estimator.derived.store`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import polars as pl

from warehouse.schema import PERF_POINT_SCHEMA

from estimator.physics import sol
from estimator.physics.calibrate import CALIBRATION_SCHEMA, fit_op, rows_of_fit, single_blas_thread
from estimator.grids.schema import GRID_SCHEMA
from estimator.grids.build import build_grids
from estimator.lookup.limits import drop_impossible
from estimator.slices import model_for, points_shape
from estimator.physics.specs import load_system
from estimator.lookup.intervals import METHOD as INTERVALS_METHOD, SCHEMA as INTERVALS_SCHEMA, TABLE as INTERVALS_TABLE
from estimator.accuracy.interval_fit import build_for_partition


STORE_VERSION = "derived-partitions-v1"
INPUTS_KEY = "perfwh.inputs"
LEDGER_KEY = "perfwh.ledger_version"  # the ledger version the sources index describes
PARTITION_KEYS = ("system", "framework", "version")
SLICE_SEP = "|"  # a partition's one-string key (Dagster partition key): system|framework|version
SUB_SLICE = ("architecture", "gemm_type", "kv_cache_dtype")
CALIBRATION_TABLE = "sol_calibration"
GRIDS_TABLE = "grids"
POINTS_TABLE = "perf_points"
ERRORS_TABLE = "build_errors"
MIN_FIT_POINTS = 3  # fewer points than this per (op, kernel_source) cannot pin a calibration
STAGES = ("spec", "sol", "calibration", "grids")
ERRORS_SCHEMA: dict[str, pl.DataType] = {
    "system": pl.String(), "framework": pl.String(), "version": pl.String(),
    "op": pl.String(),  # "": the whole partition (stage spec) or an added table (stage = its name)
    # the sub-slice that failed (stage sol: a precision or architecture the SOL model lacks);
    # null: every one of the op's points
    "architecture": pl.String(), "gemm_type": pl.String(), "kv_cache_dtype": pl.String(),
    "stage": pl.String(),  # spec | sol | calibration | grids | the name of an added table
    "reason": pl.String(),
    "n_points": pl.Int64(),
}
SOURCES_SCHEMA = {"sha256": pl.String(), "system": pl.String(), "framework": pl.String(), "version": pl.String()}
LEGACY_FILES = ("sol_calibration.parquet", "grids.parquet", "perf_points.parquet", "build_errors.parquet",
                "../materialized.json")


class SliceBuildError(ValueError):
    """A query for a slice whose derived tables could not be built; the message names the reason."""


@dataclass(frozen=True)
class PartitionTable:
    """One table of every partition: name, schema and, for a table beyond the four core
    ones, its builder `build(points, tables)` (the partition's perf points and the tables
    built before it -> frame). Adding a table to every partition build is one entry here;
    a builder that raises is recorded in build_errors (stage = the table name) and leaves
    the partition's queries served."""

    name: str
    schema: dict
    build: Callable[[pl.DataFrame, dict], pl.DataFrame] | None = None
    version: str = ""  # bump to rebuild every partition's copy of this table


PARTITION_TABLES: list[PartitionTable] = [
    PartitionTable(POINTS_TABLE, dict(PERF_POINT_SCHEMA)),
    PartitionTable(CALIBRATION_TABLE, dict(CALIBRATION_SCHEMA)),
    PartitionTable(GRIDS_TABLE, dict(GRID_SCHEMA)),
    PartitionTable(ERRORS_TABLE, ERRORS_SCHEMA),
]

# the 80% interval table of every partition (cross-validation residuals of its points)
PARTITION_TABLES.append(PartitionTable(INTERVALS_TABLE, dict(INTERVALS_SCHEMA), build_for_partition, INTERVALS_METHOD))


def _tables() -> list[PartitionTable]:
    """PARTITION_TABLES with build_errors last (written last: a crash leaves the partition stale)."""
    return sorted(PARTITION_TABLES, key=lambda t: t.name == ERRORS_TABLE)


def _table_names() -> tuple[str, ...]:
    return tuple(t.name for t in _tables())


def _typed(frame: pl.DataFrame | None, schema: dict) -> pl.DataFrame:
    if frame is None or frame.height == 0:
        return pl.DataFrame(schema=schema)
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# ---- the pure build -------------------------------------------------------------------------
def build_partition(points: pl.DataFrame, on_op: Callable[[str], None] | None = None) -> dict[str, pl.DataFrame]:
    """Every PARTITION_TABLES table of one (system, framework, version)'s perf points.

    Pure (frames in, frames out). Each op is fitted and gridded in its own try;
    what fails is a `build_errors` row (stage, reason) and is left out of the
    other tables, so the ops that build are exactly what a whole build gave.
    """
    key = {k: (points[k][0] if points.height else "") for k in PARTITION_KEYS}
    errors: list[dict] = []

    def fail(op: str, stage: str, exc, n: int, sub_slice=(None, None, None)) -> None:
        reason = exc if isinstance(exc, str) else _one_line(exc)
        errors.append({**key, "op": op, **dict(zip(SUB_SLICE, sub_slice)), "stage": stage, "reason": reason,
                       "n_points": n})

    out = {POINTS_TABLE: _typed(points, PERF_POINT_SCHEMA)}
    cal_parts, grid_parts = [], []
    try:
        system = load_system(key["system"])
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, none escapes
        fail("", "spec", exc, points.height)
        system = None
    if system is not None:
        with single_blas_thread():
            for (op,), sub in points.group_by(["op"], maintain_order=True):
                if on_op is not None:
                    on_op(op)
                cal, sub = _build_op(op, sub, system, fail)
                if cal is None:
                    continue
                try:
                    grid_parts.append(build_grids(sub, cal))
                    cal_parts.append(cal)
                except Exception as exc:  # noqa: BLE001
                    fail(op, "grids", exc, sub.height)
    out[CALIBRATION_TABLE] = _typed(pl.concat(cal_parts) if cal_parts else None, CALIBRATION_SCHEMA)
    out[GRIDS_TABLE] = _typed(pl.concat(grid_parts) if grid_parts else None, GRID_SCHEMA)
    for t in _tables():  # the tables added to PARTITION_TABLES with a builder
        if t.build is not None:
            try:
                out[t.name] = _typed(t.build(points, dict(out)), t.schema)
            except Exception as exc:  # noqa: BLE001
                fail("", t.name, exc, points.height)
                out[t.name] = _typed(None, t.schema)
    out[ERRORS_TABLE] = _typed(pl.DataFrame(errors, schema=ERRORS_SCHEMA) if errors else None, ERRORS_SCHEMA)
    return out


def _build_op(op: str, sub: pl.DataFrame, system, fail) -> tuple[pl.DataFrame | None, pl.DataFrame]:
    """(calibration frame of one op (every kernel_source) or None after recording why not, the
    op's points that were modelled). Points of a precision or architecture the SOL model cannot
    evaluate are recorded and left out; the op's other points are built as usual."""
    bad = []
    for (arch, gemm, kv), g in sub.group_by(list(SUB_SLICE), maintain_order=True):
        try:  # the SOL model of this precision / architecture, at one shape
            sol.kernels(op, model_for(op, arch), gemm_type=gemm or "bfloat16", kv_cache_dtype=kv,
                        **points_shape(g.head(1)))
        except Exception as exc:  # noqa: BLE001
            fail(op, "sol", exc, g.height, (arch, gemm, kv))
            bad.append((arch, gemm, kv))
    if bad:
        drop = pl.DataFrame(bad, schema={c: sub.schema[c] for c in SUB_SLICE}, orient="row")
        sub = sub.join(drop, on=list(SUB_SLICE), how="anti", nulls_equal=True, maintain_order="left")
    try:
        sub = drop_impossible(sub)  # points below the raw roofline are left out (docs/limits.md)
    except Exception as exc:  # noqa: BLE001
        fail(op, "sol", exc, sub.height)
        return None, sub
    if sub.height == 0:
        return None, sub
    rows = []
    try:
        for (source,), g in sub.group_by(["kernel_source"], maintain_order=True):
            if g.height < MIN_FIT_POINTS:
                fail(op, "calibration", f"too few points to fit kernel_source {source!r}: {g.height} "
                     f"(need >= {MIN_FIT_POINTS})", sub.height)
                return None, sub
            params, err = fit_op(g, system)
            values = [params.overhead_ms, params.combine_p, *(v for e in params.eff.values() for v in e)]
            if not (np.all(np.isfinite(values)) and np.all(np.isfinite(err))):
                fail(op, "calibration", f"the fit for kernel_source {source!r} did not converge "
                     "(non-finite parameters or errors)", sub.height)
                return None, sub
            rows += rows_of_fit(g, params, err)
    except Exception as exc:  # noqa: BLE001
        fail(op, "calibration", exc, sub.height)
        return None, sub
    cal = _typed(pl.DataFrame(rows, schema=CALIBRATION_SCHEMA), CALIBRATION_SCHEMA).sort(
        "system", "framework", "version", "op", "kernel_source", "param", "group")
    return cal, sub


def slice_key(key: tuple[str, str, str]) -> str:
    """The one-string key of a partition, e.g. h200_sxm|trtllm|1.3.0rc20."""
    if any(SLICE_SEP in str(k) for k in key):
        raise ValueError(f"partition {key!r} holds {SLICE_SEP!r} in a name; it cannot be keyed")
    return SLICE_SEP.join(str(k) for k in key)


def parse_slice_key(text: str) -> tuple[str, str, str]:
    """(system, framework, version) of a `slice_key`; ValueError in one line otherwise."""
    parts = tuple(text.split(SLICE_SEP))
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"partition key {text!r} is not system{SLICE_SEP}framework{SLICE_SEP}version")
    return parts
