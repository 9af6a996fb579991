"""Settings from the environment, with documented defaults.

| variable                      | default                                              |
|-------------------------------|------------------------------------------------------|
| PERFWH_HOME                   | ~/.local/share/perfwh                                |
| PERFWH_LANDING                | <repo>/data/raw if it holds raw logs, else           |
|                               | aiconfigurator:h200_sxm,h100_sxm (installed tables)  |
| PERFWH_QUARANTINE_SHARE_MAX   | 0.01                                                 |
| PERFWH_MONOTONIC_TOLERANCE    | 0.05                                                 |
| PERFWH_SPREAD_MAX             | 0.25                                                 |
| PERFWH_SENSOR_INTERVAL_S      | 30                                                   |
| PERFWH_DERIVED_CRON           | 0 4 * * *  (daily, UTC)                              |
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.resources import WarehouseSettings
from warehouse.ingest import discover
from warehouse.landing import PUBLISHED_PREFIX
from warehouse.paths import resolve_home

REPO = Path(__file__).resolve().parents[1]
REPO_LANDING = REPO / "data" / "raw"
PUBLISHED_FALLBACK = PUBLISHED_PREFIX + "h200_sxm,h100_sxm"

ENV_LANDING = "PERFWH_LANDING"
ENV_THRESHOLDS = {
    "quarantine_share_max": "PERFWH_QUARANTINE_SHARE_MAX",
    "monotonic_tolerance": "PERFWH_MONOTONIC_TOLERANCE",
    "spread_max": "PERFWH_SPREAD_MAX",
}
ENV_SENSOR_INTERVAL = "PERFWH_SENSOR_INTERVAL_S"
ENV_DERIVED_CRON = "PERFWH_DERIVED_CRON"
DEFAULT_SENSOR_INTERVAL_S = 30
DEFAULT_DERIVED_CRON = "0 4 * * *"


def default_landing() -> str:
    """The repo's data/raw when it holds raw logs, else the installed aiconfigurator tables."""
    if REPO_LANDING.is_dir() and discover([REPO_LANDING]):
        return str(REPO_LANDING)
    return PUBLISHED_FALLBACK


def _float(name: str) -> float | None:
    text = os.environ.get(name)
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"${name} must be a number, got {text!r}") from None


def warehouse_settings(home: str | None = None, landing: str | None = None) -> WarehouseSettings:
    """Explicit arguments, then environment variables, then the defaults above."""
    landing_value: str | dg.EnvVar
    if landing:
        published = landing.startswith(PUBLISHED_PREFIX)
        landing_value = landing if published else str(Path(landing).expanduser().resolve())
    elif os.environ.get(ENV_LANDING):
        landing_value = dg.EnvVar(ENV_LANDING)
    else:
        landing_value = default_landing()
    thresholds = {k: v for k, name in ENV_THRESHOLDS.items() if (v := _float(name)) is not None}
    return WarehouseSettings(home=str(resolve_home(home)), landing=landing_value, **thresholds)


def duckdb_resource(settings: WarehouseSettings) -> DuckDBResource:
    """Read-only DuckDB resource on the warehouse's perf.duckdb (other readers stay possible)."""
    return DuckDBResource(
        database=str(settings.home_path() / "perf.duckdb"), connection_config={"access_mode": "READ_ONLY"}
    )


def sensor_interval_s() -> int:
    text = os.environ.get(ENV_SENSOR_INTERVAL) or str(DEFAULT_SENSOR_INTERVAL_S)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"${ENV_SENSOR_INTERVAL} must be a positive integer of seconds, got {text!r}")
    return int(text)


def derived_cron() -> str:
    return os.environ.get(ENV_DERIVED_CRON) or DEFAULT_DERIVED_CRON
