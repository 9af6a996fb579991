"""Derived perf tables: perf points, SOL calibration, interpolation grids.

Partitioned by (system, framework, version) (`SLICE_PARTITIONS`, key
system|framework|version). All three are built by `estimator.derived.store.DerivedStore`,
only where a partition's inputs changed: the perf_points step builds the stale
partitions of its run (in parallel, `settings.max_concurrent` processes), the next
two find them current and report them. The checks run per partition. Which
partitions exist and which are stale is decided by the store; the derived_slices
sensor (pipelines.slices) registers them and requests runs for the stale ones.
"""


import warnings

import dagster as dg
import polars as pl

from estimator.common import Source
from estimator.slices import SLICE_KEYS
from estimator.derived.partition import CALIBRATION_TABLE, ERRORS_TABLE, GRIDS_TABLE, POINTS_TABLE, parse_slice_key
from estimator.derived.store import DerivedStore  # fmt: skip
from warehouse.landing import fingerprint
from warehouse.manifest import load_manifest
from warehouse.paths import WarehousePaths
from warehouse.quality import decreasing_latency, duplicate_keys, high_spread

from .constants import GRIDS, PREVIEW_ROWS, SLICE_PARTITIONS
from .ingest import measurements
from .metadata import markdown_table
from .resources import WarehouseSettings

PERF_POINTS_TABLE = POINTS_TABLE
# Every slice partition reads every raw-log partition's measurements (the store picks its own).
MEASUREMENTS_DEP = dg.AssetDep(measurements, partition_mapping=dg.AllPartitionMapping())
# A run over several partitions is one step per asset (perfwh materialize, backfills); beta in dagster 1.13.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=dg.BetaWarning)
    SINGLE_RUN = dg.BackfillPolicy.single_run()
# Checks per partition (partitions_def on an asset check) are a preview feature in dagster 1.13.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message="Specifying a partitions_def on an AssetCheckSpec")
warnings.filterwarnings("ignore", category=dg.BetaWarning, message="Parameter `backfill_policy`")
PARTITIONED = {"partitions_def": SLICE_PARTITIONS, "backfill_policy": SINGLE_RUN, "kinds": {"parquet", "polars"}}


def _store(settings: WarehouseSettings) -> DerivedStore:
    return DerivedStore(settings.home_path(), progress=False, say=lambda line: None)


def _keys(context) -> list[tuple[str, str, str]]:
    return [parse_slice_key(k) for k in context.partition_keys]


def _read(store: DerivedStore, keys, table: str) -> pl.DataFrame:
    """`table` over the run's partitions."""
    return store.read_many(keys, table)


def _refresh(context, settings: WarehouseSettings) -> tuple[DerivedStore, list, list]:
    store = _store(settings)
    keys = _keys(context)
    return store, keys, store.refresh(keys, workers=settings.workers())


def _table_metadata(store: DerivedStore, name: str, frame: pl.DataFrame, keys: list, rebuilt: list) -> dict:
    return {
        "dagster/row_count": dg.MetadataValue.int(frame.height),
        "path": dg.MetadataValue.path(str(store.root / "<system>" / "<framework>" / "<version>" / f"{name}.parquet")),
        "partitions": dg.MetadataValue.int(len(keys)),
        "partitions_rebuilt": dg.MetadataValue.int(len(rebuilt)),
        "rebuilt": dg.MetadataValue.md("\n".join(f"- {'/'.join(k)}" for k in rebuilt) or "_none_"),
    }


def _points(context, settings: WarehouseSettings) -> pl.DataFrame:
    """The check's partitions' perf points (what downstream assets see)."""
    return _read(_store(settings), _keys(context), POINTS_TABLE)


@dg.asset(group_name=GRIDS, deps=[MEASUREMENTS_DEP], **PARTITIONED)
def perf_points(context: dg.AssetExecutionContext, settings: WarehouseSettings) -> dg.MaterializeResult:
    """One row per measured shape: median of repeats, n, spread (builds the run's stale partitions)."""
    state = fingerprint(load_manifest(WarehousePaths.at(settings.home_path())))
    store, keys, rebuilt = _refresh(context, settings)
    points = _read(store, keys, POINTS_TABLE)
    # One pass over the points: per (partition, op) counts; the op totals, the measurement
    # total and the slice count are read off that small frame (each was its own pass).
    per_slice = points.group_by("system", "framework", "version", "op").agg(
        pl.len().alias("points"), pl.col("n").sum().alias("measurements"))
    per_op = per_slice.group_by("op").agg(pl.col("points", "measurements").sum()).sort("op")
    return dg.MaterializeResult(
        metadata={
            **_table_metadata(store, PERF_POINTS_TABLE, points, keys, rebuilt),
            "measurements": dg.MetadataValue.int(int(per_slice["measurements"].sum()) if points.height else 0),
            "warehouse_fingerprint": state,
            "slices": dg.MetadataValue.int(per_slice.height),
            "per_op": dg.MetadataValue.md(markdown_table(per_op, PREVIEW_ROWS)),
        }
    )


@dg.asset_check(asset=perf_points, blocking=True, partitions_def=SLICE_PARTITIONS)
def unique_keys(context: dg.AssetCheckExecutionContext, settings: WarehouseSettings) -> dg.AssetCheckResult:
    """No two perf points share the same key columns."""
    dups = duplicate_keys(_points(context, settings))
    return dg.AssetCheckResult(
        passed=dups.height == 0,
        metadata={
            "duplicate_keys": dg.MetadataValue.int(dups.height),
            "sample": dg.MetadataValue.md(markdown_table(dups, PREVIEW_ROWS)),
        },
    )


@dg.asset_check(asset=perf_points, partitions_def=SLICE_PARTITIONS)
def latency_monotonic(context: dg.AssetCheckExecutionContext, settings: WarehouseSettings) -> dg.AssetCheckResult:
    """Warn where latency drops as isl or kv_len grows by more than the noise tolerance."""
    drops = decreasing_latency(_points(context, settings), settings.monotonic_tolerance)
    sample = drops.sort("drop_rel", descending=True).select(
        "system", "framework", "version", "op", "num_heads", "batch_size", "prefix",
        "prev_seq", "seq", "prev_latency_ms", "latency_ms", "drop_rel",
    )  # fmt: skip
    return dg.AssetCheckResult(
        passed=drops.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "tolerance": dg.MetadataValue.float(settings.monotonic_tolerance),
            "decreasing_points": dg.MetadataValue.int(drops.height),
            "sample": dg.MetadataValue.md(markdown_table(sample, PREVIEW_ROWS)),
        },
    )


@dg.asset_check(asset=perf_points, partitions_def=SLICE_PARTITIONS)
def repeat_spread(context: dg.AssetCheckExecutionContext, settings: WarehouseSettings) -> dg.AssetCheckResult:
    """Warn where repeated measurements of one shape spread more than the threshold."""
    points = _points(context, settings)
    wide = high_spread(points, settings.spread_max)
    sample = wide.select(
        "system", "framework", "version", "op", "num_heads", "batch_size", "isl", "prefix", "kv_len",
        "n", "latency_min_ms", "latency_ms", "latency_max_ms", "spread_rel",
    )  # fmt: skip
    return dg.AssetCheckResult(
        passed=wide.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "threshold": dg.MetadataValue.float(settings.spread_max),
            "repeated_points": dg.MetadataValue.int(points.filter(pl.col("n") > 1).height),
            "points_over_threshold": dg.MetadataValue.int(wide.height),
            "sample": dg.MetadataValue.md(markdown_table(sample, PREVIEW_ROWS)),
        },
    )


@dg.asset_check(asset=perf_points, partitions_def=SLICE_PARTITIONS)
def below_roofline(context: dg.AssetCheckExecutionContext, settings: WarehouseSettings) -> dg.AssetCheckResult:
    """Warn about points measured far below the raw roofline of their shape (physically impossible);
    calibration and grids leave them out (estimator.lookup.limits, docs/limits.md)."""
    from estimator.lookup.limits import ROOFLINE_FLOOR, impossible_points, raw_roofline_ms

    points = _points(context, settings)
    bad = points.filter(impossible_points(points))
    sample = bad.with_columns(pl.Series("roofline_ms", raw_roofline_ms(bad))).select(
        "system", "framework", "version", "op", "num_heads", "batch_size", "isl", "prefix", "kv_len",
        "latency_ms", "roofline_ms",
    )  # fmt: skip
    return dg.AssetCheckResult(
        passed=bad.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "floor": dg.MetadataValue.float(ROOFLINE_FLOOR),
            "impossible_points": dg.MetadataValue.int(bad.height),
            "sample": dg.MetadataValue.md(markdown_table(sample, PREVIEW_ROWS)),
        },
    )


@dg.asset(group_name=GRIDS, deps=[perf_points], **PARTITIONED)
def sol_calibration(context: dg.AssetExecutionContext, settings: WarehouseSettings) -> dg.MaterializeResult:
    """Fitted SOL efficiencies and overhead per system/framework/version/op."""
    store, keys, rebuilt = _refresh(context, settings)
    calibration = _read(store, keys, CALIBRATION_TABLE)
    fits = calibration.select("system", "framework", "version", "op", "n_points", "fit_median_pct", "fit_p90_pct").unique(maintain_order=True)
    return dg.MaterializeResult(
        metadata={
            **_table_metadata(store, CALIBRATION_TABLE, calibration, keys, rebuilt),
            "fits": dg.MetadataValue.int(fits.height),
            "worst_fit_p90_pct": dg.MetadataValue.float(float(fits["fit_p90_pct"].max()) if fits.height else 0.0),
            "preview": dg.MetadataValue.md(markdown_table(fits, PREVIEW_ROWS)),
        }
    )


@dg.asset(group_name=GRIDS, deps=[perf_points, sol_calibration], **PARTITIONED)
def interpolation_grids(context: dg.AssetExecutionContext, settings: WarehouseSettings) -> dg.MaterializeResult:
    """Dense batch x sequence grid per slice, every cell tagged with its provenance."""
    store, keys, rebuilt = _refresh(context, settings)
    grids = _read(store, keys, GRIDS_TABLE)
    by_source = grids.group_by("source").agg(pl.len().alias("cells")).sort("source")
    total = max(grids.height, 1)
    metadata = {
        **_table_metadata(store, GRIDS_TABLE, grids, keys, rebuilt),
        "slices": dg.MetadataValue.int(grids.select(SLICE_KEYS).n_unique() if grids.height else 0),
        "build_errors": dg.MetadataValue.int(_read(store, keys, ERRORS_TABLE).height),
        "cells_by_source": dg.MetadataValue.md(
            markdown_table(by_source.with_columns((pl.col("cells") / total).alias("share")), PREVIEW_ROWS)
        ),
    }
    counts = dict(by_source.iter_rows())
    for source in Source:
        metadata[f"share_{source.value}"] = dg.MetadataValue.float(counts.get(source.value, 0) / total)
    if grids.height:
        shape = grids.group_by(SLICE_KEYS).agg(
            pl.col("batch_size").n_unique().alias("batch_values"), pl.col("seq_len").n_unique().alias("seq_values")
        )
        largest = shape.sort(pl.col("batch_values") * pl.col("seq_values"), descending=True).row(0, named=True)
        metadata["largest_grid"] = f"{largest['batch_values']} batch x {largest['seq_values']} sequence values"
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(asset=interpolation_grids, partitions_def=SLICE_PARTITIONS)
def every_slice_modelled(context: dg.AssetCheckExecutionContext, settings: WarehouseSettings) -> dg.AssetCheckResult:
    """Warn when a (system, framework, version) or one of its ops could not be modelled
    (no system spec, too few points, a fit that does not converge): its queries fail with
    the reason listed here; every other slice is served as usual."""
    errors = _read(_store(settings), _keys(context), ERRORS_TABLE)
    return dg.AssetCheckResult(
        passed=errors.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "slices_not_modelled": dg.MetadataValue.int(errors.height),
            "build_errors": dg.MetadataValue.md(markdown_table(errors, PREVIEW_ROWS)),
        },
    )


GRIDS_ASSETS = [perf_points, sol_calibration, interpolation_grids]
GRIDS_CHECKS = [unique_keys, latency_monotonic, repeat_spread, below_roofline, every_slice_modelled]
