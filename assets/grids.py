"""Derived perf tables: perf points, SOL calibration, interpolation grids.

All three are built by `estimator.store.DerivedStore`, one (system, framework,
version) partition at a time and only where the partition's inputs changed;
the first asset of a run does the builds, the next two find their partitions
current and report them. `DERIVED_AUTOMATION` brings them up to date after a
sensor-launched ingest, so the UI never shows them stale.
"""


import dagster as dg
import polars as pl

from estimator.common import Source
from estimator.slices import SLICE_KEYS
from estimator.store import CALIBRATION_TABLE, ERRORS_TABLE, GRIDS_TABLE, POINTS_TABLE, DerivedStore
from warehouse.landing import fingerprint
from warehouse.manifest import load_manifest
from warehouse.paths import WarehousePaths
from warehouse.quality import decreasing_latency, duplicate_keys, high_spread

from .constants import DERIVED_AUTOMATION, GRIDS, PREVIEW_ROWS
from .ingest import measurements
from .metadata import markdown_table
from .resources import WarehouseSettings

PERF_POINTS_TABLE = POINTS_TABLE


def _store(settings: WarehouseSettings) -> DerivedStore:
    return DerivedStore(settings.home_path(), progress=False, say=lambda line: None)


def _refresh(settings: WarehouseSettings) -> tuple[DerivedStore, list]:
    store = _store(settings)
    return store, store.refresh()


def _table_metadata(settings: WarehouseSettings, store: DerivedStore, name: str, frame: pl.DataFrame,
                    rebuilt: list) -> dict:
    return {
        "dagster/row_count": dg.MetadataValue.int(frame.height),
        "path": dg.MetadataValue.path(str(store.root / "<system>" / "<framework>" / "<version>" / f"{name}.parquet")),
        "partitions": dg.MetadataValue.int(len(store.partitions())),
        "partitions_rebuilt": dg.MetadataValue.int(len(rebuilt)),
        "rebuilt": dg.MetadataValue.md("\n".join(f"- {'/'.join(k)}" for k in rebuilt) or "_none_"),
    }


def _points(settings: WarehouseSettings) -> pl.DataFrame:
    """The materialized perf_points table (what downstream assets and checks see)."""
    return _store(settings).read_all(POINTS_TABLE)


@dg.asset(group_name=GRIDS, deps=[measurements], kinds={"parquet", "polars"}, automation_condition=DERIVED_AUTOMATION)
def perf_points(settings: WarehouseSettings) -> dg.MaterializeResult:
    """One row per measured shape: median of repeats, n, spread (builds every stale partition)."""
    state = fingerprint(load_manifest(WarehousePaths.at(settings.home_path())))
    store, rebuilt = _refresh(settings)
    points = store.read_all(POINTS_TABLE)
    per_op = points.group_by("op").agg(pl.len().alias("points"), pl.col("n").sum().alias("measurements")).sort("op")
    return dg.MaterializeResult(
        metadata={
            **_table_metadata(settings, store, PERF_POINTS_TABLE, points, rebuilt),
            "measurements": dg.MetadataValue.int(int(points["n"].sum()) if points.height else 0),
            "warehouse_fingerprint": state,
            "slices": dg.MetadataValue.int(points.select("system", "framework", "version", "op").n_unique()),
            "per_op": dg.MetadataValue.md(markdown_table(per_op, PREVIEW_ROWS)),
        }
    )


@dg.asset_check(asset=perf_points, blocking=True)
def unique_keys(settings: WarehouseSettings) -> dg.AssetCheckResult:
    """No two perf points share the same key columns."""
    dups = duplicate_keys(_points(settings))
    return dg.AssetCheckResult(
        passed=dups.height == 0,
        metadata={
            "duplicate_keys": dg.MetadataValue.int(dups.height),
            "sample": dg.MetadataValue.md(markdown_table(dups, PREVIEW_ROWS)),
        },
    )


@dg.asset_check(asset=perf_points)
def latency_monotonic(settings: WarehouseSettings) -> dg.AssetCheckResult:
    """Warn where latency drops as isl or kv_len grows by more than the noise tolerance."""
    drops = decreasing_latency(_points(settings), settings.monotonic_tolerance)
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


@dg.asset_check(asset=perf_points)
def repeat_spread(settings: WarehouseSettings) -> dg.AssetCheckResult:
    """Warn where repeated measurements of one shape spread more than the threshold."""
    points = _points(settings)
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


@dg.asset_check(asset=perf_points)
def below_roofline(settings: WarehouseSettings) -> dg.AssetCheckResult:
    """Warn about points measured far below the raw roofline of their shape (physically impossible);
    calibration and grids leave them out (estimator.limits, docs/limits.md)."""
    from estimator.limits import ROOFLINE_FLOOR, impossible_points, raw_roofline_ms

    points = _points(settings)
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


@dg.asset(group_name=GRIDS, deps=[perf_points], kinds={"parquet", "polars"}, automation_condition=DERIVED_AUTOMATION)
def sol_calibration(settings: WarehouseSettings) -> dg.MaterializeResult:
    """Fitted SOL efficiencies and overhead per system/framework/version/op."""
    store, rebuilt = _refresh(settings)
    calibration = store.read_all(CALIBRATION_TABLE)
    fits = calibration.select("system", "framework", "version", "op", "n_points", "fit_median_pct", "fit_p90_pct").unique(maintain_order=True)
    return dg.MaterializeResult(
        metadata={
            **_table_metadata(settings, store, CALIBRATION_TABLE, calibration, rebuilt),
            "fits": dg.MetadataValue.int(fits.height),
            "worst_fit_p90_pct": dg.MetadataValue.float(float(fits["fit_p90_pct"].max()) if fits.height else 0.0),
            "preview": dg.MetadataValue.md(markdown_table(fits, PREVIEW_ROWS)),
        }
    )


@dg.asset(group_name=GRIDS, deps=[perf_points, sol_calibration], kinds={"parquet", "polars"},
          automation_condition=DERIVED_AUTOMATION)
def interpolation_grids(settings: WarehouseSettings) -> dg.MaterializeResult:
    """Dense batch x sequence grid per slice, every cell tagged with its provenance."""
    store, rebuilt = _refresh(settings)
    grids = store.read_all(GRIDS_TABLE)
    by_source = grids.group_by("source").agg(pl.len().alias("cells")).sort("source")
    total = max(grids.height, 1)
    metadata = {
        **_table_metadata(settings, store, GRIDS_TABLE, grids, rebuilt),
        "slices": dg.MetadataValue.int(grids.select(SLICE_KEYS).n_unique() if grids.height else 0),
        "build_errors": dg.MetadataValue.int(store.read_all(ERRORS_TABLE).height),
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


@dg.asset_check(asset=interpolation_grids)
def every_slice_modelled(settings: WarehouseSettings) -> dg.AssetCheckResult:
    """Warn when a (system, framework, version) or one of its ops could not be modelled
    (no system spec, too few points, a fit that does not converge): its queries fail with
    the reason listed here; every other slice is served as usual."""
    errors = _store(settings).read_all(ERRORS_TABLE)
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
