"""The automation sensor that keeps the reports current (the daily pass over the derived
partitions is pipelines.slices)."""

from __future__ import annotations

import dagster as dg

from assets.constants import REPORTS


def derived_automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """Evaluates the reports' automation condition (assets.constants.DERIVED_AUTOMATION): after
    derived partition runs (pipelines.slices) it requests the accuracy report and the views
    once, so Dagster itself brings them up to date."""
    return dg.AutomationConditionSensorDefinition(
        "derived_automation",
        target=dg.AssetSelection.groups(REPORTS),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
    )
