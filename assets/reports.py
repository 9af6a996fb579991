"""Reports and the query surface: accuracy cross-validation, DuckDB views.

Unpartitioned, downstream of every derived partition: after partition runs finish,
their automation condition runs them once (not once per partition)."""


import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from estimator.accuracy.protocol import format_table, missed_targets
from estimator.derived.accuracy_report import (
    ACCURACY_TABLE, adopt_ahead, compute_report, is_current, report_inputs, report_path, report_slice, write_report,
)
from estimator.derived.store import DerivedStore
from warehouse.derived import read_derived
from warehouse.location import is_object_home
from warehouse.read import table_counts, view_row_counts
from warehouse.views import refresh_views

from .constants import DERIVED_AUTOMATION, PREVIEW_ROWS, REPORTS, VIEWS_POOL
from .grids import interpolation_grids, perf_points, sol_calibration
from .ingest import raw_log_files
from .metadata import markdown_table
from .resources import WarehouseSettings


class AccuracyConfig(dg.Config):
    """Which slice `perfwh accuracy` cross-validates. Empty system/backend: H200 /
    TensorRT-LLM (the protocol's slice) when the warehouse has it, else the
    system/backend with the most module-table points; empty version: the latest."""

    system: str = ""
    backend: str = ""
    version: str = ""
    seed: int = 0


def accuracy_slice(home, config: AccuracyConfig) -> tuple[str, str, str]:
    """(system, backend, version) the config names, defaults filled by the estimator (from the
    derived partitions' point counts: no pass over every measurement)."""
    DerivedStore(home, progress=False, say=lambda line: None).refresh()  # a no-op after the derived partitions' run
    return report_slice(home, config.system, config.backend, config.version)


@dg.asset(group_name=REPORTS, deps=[perf_points, sol_calibration, interpolation_grids], kinds={"parquet", "polars"},
          automation_condition=DERIVED_AUTOMATION)
def accuracy_report(config: AccuracyConfig, settings: WarehouseSettings) -> dg.MaterializeResult:
    """Cross-validated estimator error (median / p90 %) per table, class and method."""
    home = settings.home_path()
    key = accuracy_slice(home, config)
    # The same freshness rule as the derived partitions: recomputed only when the slice's inputs
    # (or the seed) changed since the report on disk was computed.
    inputs = report_inputs(home, key, config.seed)
    target = report_path(home)
    if is_current(home, inputs):
        computed = "no: inputs unchanged"
    elif adopt_ahead(home, key, inputs):  # `perfwh materialize` computed it beside the partition build
        computed = "ahead, beside the derived partitions"
    else:
        write_report(home, compute_report(home, key, config.seed), inputs)
        computed = "in this step"
    summary = pl.read_parquet(target)
    points = DerivedStore(home, progress=False).read(key, "perf_points")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(summary.height),
            "path": dg.MetadataValue.path(str(target)),
            "slice": "{} / {} {}".format(*key),
            "points": dg.MetadataValue.int(points.height),
            "recomputed": dg.MetadataValue.bool(not computed.startswith("no")),
            "computed": computed,
            "report": dg.MetadataValue.md(format_table(summary)),
        }
    )


@dg.asset_check(asset=accuracy_report)
def accuracy_targets(settings: WarehouseSettings) -> dg.AssetCheckResult:
    """Warn when a table/class misses the estimator's median or p90 error target."""
    summary = read_derived(settings.home_path(), ACCURACY_TABLE)
    missed = missed_targets(summary)
    return dg.AssetCheckResult(
        passed=missed.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rows_with_target": dg.MetadataValue.int(summary.filter(pl.col("method") != "nearest").height),
            "missed": dg.MetadataValue.int(missed.height),
            "sample": dg.MetadataValue.md(markdown_table(missed, PREVIEW_ROWS)),
        },
    )


@dg.asset(
    group_name=REPORTS,
    deps=[raw_log_files, perf_points, sol_calibration, interpolation_grids, accuracy_report],
    kinds={"duckdb"},
    automation_condition=DERIVED_AUTOMATION,
    pool=VIEWS_POOL,
)
def warehouse_views(settings: WarehouseSettings, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """perf.duckdb: views over the Parquet store and every derived table, refreshed."""
    path = refresh_views(settings.home_path())
    if is_object_home(settings.home_path()):  # perf.duckdb cannot read S3 offline: count through `perfwh sql`'s views
        counts = table_counts(settings.home_path())
    else:
        with duckdb.get_connection() as con:
            counts = view_row_counts(con)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "views": dg.MetadataValue.int(counts.height),
            "rows": dg.MetadataValue.md(markdown_table(counts, 100)),
            **{
                f"rows_{view}": dg.MetadataValue.int(rows)
                for view, rows in counts.filter(pl.col("view").is_in(["measurements", "perf_points", "quarantine"])).iter_rows()
            },
        }
    )


REPORTS_ASSETS = [accuracy_report, warehouse_views]
REPORTS_CHECKS = [accuracy_targets]
