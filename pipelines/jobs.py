"""Jobs, selected by group so that no job lists assets by hand."""

from __future__ import annotations

import dagster as dg

from assets.constants import GRIDS, INGEST, REPORTS, TRANSFER
from assets.ingest import measurements

from .executors import job_executor

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups(INGEST),
    description="List the landing folder and ingest one raw log (one partition per file).",
    executor_def=job_executor(),
)

derived_job = dg.define_asset_job(
    "derived_job",
    selection=dg.AssetSelection.groups(GRIDS),
    description="Rebuild perf points, SOL calibration and grids of (system, framework, version) partitions "
    "(one partition, or a range: one run, the range's stale partitions built in parallel).",
    executor_def=job_executor(),
)

reports_job = dg.define_asset_job(
    "reports_job",
    # The measurement checks run again here: blocking, they gate the reports.
    selection=dg.AssetSelection.groups(REPORTS) | dg.AssetSelection.checks_for_assets(measurements),
    description="Accuracy report and DuckDB views over every derived partition.",
    executor_def=job_executor(),
)

transfer_job = dg.define_asset_job(
    "transfer_job",
    selection=dg.AssetSelection.groups(TRANSFER),
    description="On demand: the transfer tables (80% intervals of transferred answers, launch-overhead ratios) "
    "from the leave-one-system-out protocol over every pair of systems.",
)
