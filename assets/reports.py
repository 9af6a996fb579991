"""Reports and the query surface: accuracy cross-validation, DuckDB views."""


import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from estimator.accuracy import MODULE_TABLES, TARGETS, format_table, latest_version, run_accuracy, summarize
from warehouse.derived import read_derived, write_derived
from warehouse.quality import view_row_counts
from warehouse.read import available_slices, read_perf_points
from warehouse.views import refresh_views

from .constants import PREVIEW_ROWS, REPORTS
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


PROTOCOL_SLICE = ("h200_sxm", "trtllm")


def accuracy_slice(home, config: AccuracyConfig) -> tuple[str, str, str]:
    """(system, backend, version) to cross-validate; an explicit choice is never replaced."""
    system, backend = config.system, config.backend
    if not (system and backend):
        have = available_slices(home).filter(pl.col("op").is_in(list(MODULE_TABLES)))
        if system:
            have = have.filter(pl.col("system") == system)
        if backend:
            have = have.filter(pl.col("framework") == backend)
        if have.height == 0:
            raise ValueError(f"no module-table points for system {system or 'any'} / backend {backend or 'any'}")
        pairs = have.group_by("system", "framework").agg(pl.col("points").sum()).sort(
            ["points", "system", "framework"], descending=[True, False, False]
        )
        protocol = pairs.filter((pl.col("system") == PROTOCOL_SLICE[0]) & (pl.col("framework") == PROTOCOL_SLICE[1]))
        system, backend = (protocol if protocol.height else pairs).select("system", "framework").row(0)
    return system, backend, config.version or latest_version(home, system, backend)


@dg.asset(group_name=REPORTS, deps=[perf_points, sol_calibration, interpolation_grids], kinds={"parquet", "polars"})
def accuracy_report(config: AccuracyConfig, settings: WarehouseSettings) -> dg.MaterializeResult:
    """Cross-validated estimator error (median / p90 %) per table, class and method."""
    home = settings.home_path()
    system, backend, version = accuracy_slice(home, config)
    points = read_perf_points(home, system=system, framework=backend, version=version)
    summary = summarize(run_accuracy(points, seed=config.seed)).with_columns(
        pl.lit(system).alias("system"), pl.lit(backend).alias("framework"), pl.lit(version).alias("version")
    )
    target = write_derived(home, ACCURACY_TABLE, summary, refresh_views=False)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(summary.height),
            "path": dg.MetadataValue.path(str(target)),
            "slice": f"{system} / {backend} {version}",
            "points": dg.MetadataValue.int(points.height),
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


def missed_targets(summary: pl.DataFrame) -> pl.DataFrame:
    """Rows of a `summarize` table (method != nearest) above `estimator.accuracy.TARGETS`."""
    targets = pl.DataFrame(
        [(t, c, m, p) for (t, c), (m, p) in TARGETS.items()],
        schema={"table": pl.String, "class": pl.String, "target_median_pct": pl.Float64, "target_p90_pct": pl.Float64},
        orient="row",
    )
    return summary.filter(pl.col("method") != "nearest").join(targets, on=["table", "class"]).filter(
        (pl.col("median_pct") > pl.col("target_median_pct")) | (pl.col("p90_pct") > pl.col("target_p90_pct"))
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
REPORTS_CHECKS = [accuracy_targets]
