"""The daily rebuild of the derived tables."""

from __future__ import annotations

import dagster as dg

from .jobs import derived_job


def build_derived_schedule(cron: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="daily_derived",
        job=derived_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Re-materializes perf points, calibration, grids, accuracy report and views.",
    )
