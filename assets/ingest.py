"""Ingestion assets: the landing folder's raw logs and their measurements."""


import warnings

import dagster as dg
import polars as pl

from warehouse.derived import write_derived
from warehouse.ingest import ingest_paths
from warehouse.landing import INGEST_STATUSES, ingest_frame, landing_frame
from warehouse.manifest import load_manifest
from warehouse.paths import WarehousePaths
from warehouse.quality import (
    bad_latency_rows,
    overall_quarantine_share,
    quarantine_reasons,
    quarantine_shares,
    source_quarantine,
    unbalanced_sources,
)
from warehouse.read import scan_measurements

from .constants import INGEST, PREVIEW_ROWS, RAW_LOG_PARTITIONS
from .metadata import markdown_table
from .resources import WarehouseSettings


@dg.asset(group_name=INGEST, kinds={"parquet", "polars"})
def raw_log_files(settings: WarehouseSettings) -> dg.MaterializeResult:
    """The raw logs in the landing folder with their sha256 (table `raw_log_files`)."""
    root, files = settings.scan()
    manifest = load_manifest(WarehousePaths.at(settings.home_path()))
    frame = landing_frame(files, manifest)
    target = write_derived(settings.home_path(), "raw_log_files", frame, refresh_views=False)
    new = frame.filter(~frame["ingested"])
    return dg.MaterializeResult(
        metadata={
            "landing": dg.MetadataValue.path(str(root)),
            "files_seen": dg.MetadataValue.int(frame.height),
            "files_not_ingested": dg.MetadataValue.int(new.height),
            "bytes": dg.MetadataValue.int(int(frame["size_bytes"].sum())),
            "path": dg.MetadataValue.path(str(target)),
            "preview": dg.MetadataValue.md(
                markdown_table(frame.select("key", "size_bytes", "ingested", "sha256"), PREVIEW_ROWS)
            ),
        }
    )


# A range of partitions (perfwh materialize: every new file) runs as one run;
# backfill_policy is a beta parameter in dagster 1.13.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=dg.BetaWarning)

    @dg.asset(
        group_name=INGEST,
        partitions_def=RAW_LOG_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[raw_log_files],
        kinds={"parquet", "polars"},
    )
    def measurements(context: dg.AssetExecutionContext, settings: WarehouseSettings) -> dg.MaterializeResult:
        """Raw logs validated into measurement Parquet parts, ledger and quarantine (one partition per file)."""
        return _ingest(context, settings)


def _ingest(context: dg.AssetExecutionContext, settings: WarehouseSettings) -> dg.MaterializeResult:
    home = settings.home_path()
    raws, missing = [], []
    for key in context.partition_keys:
        try:
            raws.append(settings.raw_log(key))
        except FileNotFoundError as exc:
            context.log.warning(str(exc))
            missing.append(key)
    if not raws:
        raise dg.Failure(description=f"no raw log left for partition(s) {', '.join(missing)}")
    report = ingest_paths([r.path for r in raws], home)
    by_path = {str(r.path): r for r in raws}
    files = ingest_frame(report.files, {p: r.key for p, r in by_path.items()})
    metadata = {
        "files": dg.MetadataValue.int(len(report.files)),
        **{f"files_{status}": dg.MetadataValue.int(report.count(status)) for status in INGEST_STATUSES},
        "rows_read": dg.MetadataValue.int(report.rows_read),
        "rows_accepted": dg.MetadataValue.int(report.rows_accepted),
        "rows_quarantined": dg.MetadataValue.int(report.rows_quarantined),
        "quarantine_share": dg.MetadataValue.float(report.rows_quarantined / report.rows_read if report.rows_read else 0.0),
        "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
        "warehouse": dg.MetadataValue.path(str(report.home)),
        "preview": dg.MetadataValue.md(markdown_table(files, PREVIEW_ROWS)),
    }
    if len(raws) == 1:
        metadata["path"] = dg.MetadataValue.path(str(raws[0].path))
        metadata["sha256"] = raws[0].sha256
        metadata["status"] = report.files[0].status
    if missing:
        metadata["missing_files"] = dg.MetadataValue.md("\n".join(f"- {k}" for k in missing))
    dirty = [by_path[f.path] for f in report.files if f.rows_quarantined]
    if dirty:
        reasons = quarantine_reasons(pl.concat([source_quarantine(home, r.sha256) for r in dirty]))
        metadata["quarantine_reasons"] = dg.MetadataValue.md(markdown_table(reasons, PREVIEW_ROWS))
    if report.failed:
        metadata["failed_files"] = dg.MetadataValue.md("\n".join(f"- {f.path}: {f.message}" for f in report.failed))
        lines = "; ".join(f"{f.path}: {f.message}" for f in report.failed)
        raise dg.Failure(description=f"{len(report.failed)} raw log(s) could not be read: {lines}", metadata=metadata)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(asset=measurements, blocking=True)
def ledger_balanced(settings: WarehouseSettings) -> dg.AssetCheckResult:
    """Every ingested file: rows read = rows accepted + rows quarantined."""
    ledger = load_manifest(WarehousePaths.at(settings.home_path())).ledger_frame()
    bad = unbalanced_sources(ledger)
    return dg.AssetCheckResult(
        passed=bad.height == 0,
        metadata={
            "files": dg.MetadataValue.int(ledger.height),
            "unbalanced_files": dg.MetadataValue.int(bad.height),
            "rows_read": dg.MetadataValue.int(int(ledger["rows_read"].sum())),
            "rows_accepted": dg.MetadataValue.int(int(ledger["rows_accepted"].sum())),
            "rows_quarantined": dg.MetadataValue.int(int(ledger["rows_quarantined"].sum())),
            "sample": dg.MetadataValue.md(
                markdown_table(bad.select("path", "rows_read", "rows_accepted", "rows_quarantined"), PREVIEW_ROWS)
            ),
        },
    )


@dg.asset_check(asset=measurements, blocking=True)
def latency_valid(settings: WarehouseSettings) -> dg.AssetCheckResult:
    """No accepted row has a null, NaN, infinite or non-positive latency."""
    bad = bad_latency_rows(scan_measurements(settings.home_path()))
    return dg.AssetCheckResult(
        passed=bad.height == 0,
        metadata={
            "bad_rows": dg.MetadataValue.int(bad.height),
            "sample": dg.MetadataValue.md(
                markdown_table(bad.select("source_file", "source_line", "op", "latency_ms"), PREVIEW_ROWS)
            ),
        },
    )


@dg.asset_check(asset=measurements)
def quarantine_share(settings: WarehouseSettings) -> dg.AssetCheckResult:
    """Warn when a file quarantines more than the configured share of its rows."""
    ledger = load_manifest(WarehousePaths.at(settings.home_path())).ledger_frame()
    shares = quarantine_shares(ledger)
    over = shares.filter(shares["quarantine_share"] > settings.quarantine_share_max)
    return dg.AssetCheckResult(
        passed=over.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "threshold": dg.MetadataValue.float(settings.quarantine_share_max),
            "overall_share": dg.MetadataValue.float(overall_quarantine_share(ledger)),
            "files_over_threshold": dg.MetadataValue.int(over.height),
            "files": dg.MetadataValue.md(markdown_table(over, PREVIEW_ROWS)),
        },
    )


INGEST_ASSETS = [raw_log_files, measurements]
INGEST_CHECKS = [ledger_balanced, latency_valid, quarantine_share]
