"""The code location: one `defs`, merged from per-area Definitions."""

from __future__ import annotations

import dagster as dg

from assets.grids import GRIDS_ASSETS, GRIDS_CHECKS
from assets.ingest import INGEST_ASSETS, INGEST_CHECKS
from assets.reports import REPORTS_ASSETS, REPORTS_CHECKS
from assets.resources import WarehouseSettings
from assets.transfer import TRANSFER_ASSETS

from .jobs import derived_job, ingest_job, reports_job, transfer_job
from .schedules import derived_automation_sensor
from .sensors import build_landing_sensor, max_runs_per_tick
from .slices import build_slices_schedule, build_slices_sensor
from .settings import derived_cron, duckdb_resource, sensor_interval_s, warehouse_settings


def ingest_defs(sensor_interval: int) -> dg.Definitions:
    return dg.Definitions(
        assets=INGEST_ASSETS,
        asset_checks=INGEST_CHECKS,
        jobs=[ingest_job],
        sensors=[build_landing_sensor(sensor_interval)],
    )


def grids_defs(cron: str, sensor_interval: int) -> dg.Definitions:
    return dg.Definitions(
        assets=GRIDS_ASSETS,
        asset_checks=GRIDS_CHECKS,
        jobs=[derived_job],
        schedules=[build_slices_schedule(cron)],
        sensors=[build_slices_sensor(sensor_interval, max_runs_per_tick())],
    )


def reports_defs() -> dg.Definitions:
    return dg.Definitions(assets=REPORTS_ASSETS, asset_checks=REPORTS_CHECKS, jobs=[reports_job],
                          sensors=[derived_automation_sensor()])


def transfer_defs() -> dg.Definitions:
    return dg.Definitions(assets=TRANSFER_ASSETS, jobs=[transfer_job])


def build_defs(settings: WarehouseSettings | None = None) -> dg.Definitions:
    """All definitions with `settings` (default: from the environment, see pipelines.settings)."""
    settings = settings or warehouse_settings()
    resources = dg.Definitions(resources={"settings": settings, "duckdb": duckdb_resource(settings)})
    return dg.Definitions.merge(
        ingest_defs(sensor_interval_s()), grids_defs(derived_cron(), sensor_interval_s()), reports_defs(),
        transfer_defs(), resources
    )


defs = build_defs()
