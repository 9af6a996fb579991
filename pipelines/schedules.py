"""The daily rebuild of the derived tables, and the automation sensor that keeps them current."""

from __future__ import annotations

import dagster as dg

from assets.constants import GRIDS, REPORTS

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


def derived_automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """Evaluates the derived assets' automation condition (assets.constants.DERIVED_AUTOMATION):
    after a sensor-launched ingest it requests perf points, calibration, grids, the accuracy
    report and the views, so Dagster itself brings them up to date (only stale partitions
    are rebuilt, estimator.store)."""
    return dg.AutomationConditionSensorDefinition(
        "derived_automation",
        target=dg.AssetSelection.groups(GRIDS, REPORTS),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
    )
