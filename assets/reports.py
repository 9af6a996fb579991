"""Reports and the query surface: accuracy cross-validation, DuckDB views.

Unpartitioned, downstream of every derived partition: after partition runs finish,
their automation condition runs them once (not once per partition)."""


import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from estimator.accuracy.protocol import default_slice, format_table, missed_targets, run_accuracy, summarize
from estimator.derived.partition import INPUTS_KEY
from estimator.derived.store import DerivedStore
from warehouse.atomic import write_parquet_atomic
from warehouse.derived import read_derived
from warehouse.paths import WarehousePaths
from warehouse.location import is_object_home
from warehouse.read import read_perf_points, table_counts, view_row_counts
from warehouse.views import refresh_views

from .constants import DERIVED_AUTOMATION, PREVIEW_ROWS, REPORTS, VIEWS_POOL
from .grids import interpolation_grids, perf_points, sol_calibration
from .ingest import raw_log_files
from .metadata import markdown_table
from .resources import WarehouseSettings

ACCURACY_TABLE = "accuracy_report"


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
    store = DerivedStore(home, progress=False, say=lambda line: None)
    store.refresh()  # a no-op after the derived partitions' run
    slices = store.slice_counts()
    return default_slice(home, config.system, config.backend, config.version, slices=slices)


@dg.asset(group_name=REPORTS, deps=[perf_points, sol_calibration, interpolation_grids], kinds={"parquet", "polars"},
          automation_condition=DERIVED_AUTOMATION)
def accuracy_report(config: AccuracyConfig, settings: WarehouseSettings) -> dg.MaterializeResult:
    """Cross-validated estimator error (median / p90 %) per table, class and method."""
    home = settings.home_path()
    system, backend, version = accuracy_slice(home, config)
    # The same freshness rule as the derived partitions: recomputed only when the slice's inputs
    # (or the seed) changed since the report on disk was computed.
    inputs = f"{DerivedStore(home, progress=False).inputs_of((system, backend, version))}:{config.seed}"
    target = WarehousePaths.at(home).derived_table(ACCURACY_TABLE)
    current = target.exists() and pl.read_parquet_metadata(target).get(INPUTS_KEY) == inputs
    if current:
        summary = pl.read_parquet(target)
        points = DerivedStore(home, progress=False).read((system, backend, version), "perf_points")
    else:
        points = read_perf_points(home, system=system, framework=backend, version=version)
        summary = summarize(run_accuracy(points, seed=config.seed)).with_columns(
            pl.lit(system).alias("system"), pl.lit(backend).alias("framework"), pl.lit(version).alias("version")
        )
        write_parquet_atomic(summary, WarehousePaths.at(home).ensure().derived_table(ACCURACY_TABLE),
                             metadata={INPUTS_KEY: inputs})
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(summary.height),
            "path": dg.MetadataValue.path(str(target)),
            "slice": f"{system} / {backend} {version}",
            "points": dg.MetadataValue.int(points.height),
            "recomputed": dg.MetadataValue.bool(not current),
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
