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
| PERFWH_MAX_CONCURRENT         | the machine's cores (partitions built at once)       |
"""

from __future__ import annotations

import os

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.resources import WarehouseSettings
from warehouse.paths import WarehousePaths, resolve_home

from .executors import max_concurrent
from .state import ENV_LANDING, resolve_landing

ENV_THRESHOLDS = {
    "quarantine_share_max": "PERFWH_QUARANTINE_SHARE_MAX",
    "monotonic_tolerance": "PERFWH_MONOTONIC_TOLERANCE",
    "spread_max": "PERFWH_SPREAD_MAX",
}
ENV_SENSOR_INTERVAL = "PERFWH_SENSOR_INTERVAL_S"
ENV_DERIVED_CRON = "PERFWH_DERIVED_CRON"
DEFAULT_SENSOR_INTERVAL_S = 30
DEFAULT_DERIVED_CRON = "0 4 * * *"


def _float(name: str) -> float | None:
    text = os.environ.get(name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"${name} must be a number, got {text!r}") from None
    if not 0 <= value < float("inf"):  # nan or inf would silently switch the check off, < 0 fire it always
        raise ValueError(f"${name} must be a finite number >= 0, got {text!r}")
    return value


def warehouse_settings(
    home: str | None = None, landing: str | None = None, *, use_env_var: bool = True
) -> WarehouseSettings:
    """Explicit arguments, then environment variables, then the defaults above.

    With use_env_var, a landing taken from $PERFWH_LANDING stays a `dg.EnvVar`
    (the UI shows where it came from); without, it is read here.
    """
    landing_value: str | dg.EnvVar
    if not landing and use_env_var and os.environ.get(ENV_LANDING):
        landing_value = dg.EnvVar(ENV_LANDING)
    else:
        landing_value = resolve_landing(landing)
    thresholds = {k: v for k, name in ENV_THRESHOLDS.items() if (v := _float(name)) is not None}
    return WarehouseSettings(home=str(resolve_home(home)), landing=landing_value, max_concurrent=max_concurrent(),
                             **thresholds)


def duckdb_resource(settings: WarehouseSettings) -> DuckDBResource:
    """Read-only DuckDB resource on the warehouse's perf.duckdb (other readers stay possible)."""
    return DuckDBResource(
        database=str(WarehousePaths.at(settings.home_path()).duckdb), connection_config={"access_mode": "READ_ONLY"}
    )


def sensor_interval_s() -> int:
    text = os.environ.get(ENV_SENSOR_INTERVAL) or str(DEFAULT_SENSOR_INTERVAL_S)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"${ENV_SENSOR_INTERVAL} must be a positive integer of seconds, got {text!r}")
    return int(text)


def derived_cron() -> str:
    return os.environ.get(ENV_DERIVED_CRON) or DEFAULT_DERIVED_CRON
