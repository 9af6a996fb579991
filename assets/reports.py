"""Reports and the query surface: accuracy cross-validation, DuckDB views."""


import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from estimator.accuracy import run_accuracy, summarize
from warehouse.derived import write_derived
from warehouse.quality import view_row_counts
from warehouse.read import read_perf_points
from warehouse.views import refresh_views

from .constants import PREVIEW_ROWS, REPORTS
from .grids import interpolation_grids, perf_points, sol_calibration
from .ingest import raw_log_files
from .metadata import markdown_table
from .resources import WarehouseSettings

ACCURACY_TABLE = "accuracy_report"


@dg.asset(group_name=REPORTS, deps=[perf_points, sol_calibration, interpolation_grids], kinds={"parquet", "polars"})
def accuracy_report(settings: WarehouseSettings) -> dg.MaterializeResult:
    """Cross-validated estimator error (median / p90 %) per table, class and method."""
    summary = summarize(run_accuracy(read_perf_points(settings.home_path())))
    target = write_derived(settings.home_path(), ACCURACY_TABLE, summary, refresh_views=False)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(summary.height),
            "path": dg.MetadataValue.path(str(target)),
            "report": dg.MetadataValue.md(markdown_table(summary, 100)),
        }
    )


@dg.asset(
    group_name=REPORTS,
    deps=[raw_log_files, perf_points, sol_calibration, interpolation_grids, accuracy_report],
    kinds={"duckdb"},
)
def warehouse_views(settings: WarehouseSettings, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """perf.duckdb: views over the Parquet store and every derived table, refreshed."""
    path = refresh_views(settings.home_path())
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
REPORTS_CHECKS: list = []
