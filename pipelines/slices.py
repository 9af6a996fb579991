"""Derived slice partitions: registration and runs for the stale ones only.

Dagster's partition mappings cannot map raw-log partitions (one per file) to
slice partitions (system|framework|version: which slices a log feeds is in the
data), so this sensor asks the store (estimator.derived.store, the one freshness rule)
which slices exist and which are stale, registers new slice keys, and requests
one `derived_job` run per stale slice: its run key carries the inputs hash, so a
slice is requested once per change. Runs for different slices write disjoint
folders and run side by side (the daemon's run queue bounds how many).
"""

from __future__ import annotations

import dagster as dg

from assets.constants import SLICE_PARTITIONS
from assets.resources import WarehouseSettings
from estimator.derived.store import DerivedStore
from estimator.derived.partition import slice_key
from warehouse.manifest import load_manifest

from .jobs import derived_job
from .materialize import RANGE_END, RANGE_START

SLICE_TAG = "perfwh/slice"
BUSY = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED]


def slice_plan(settings: WarehouseSettings, known: set[str]) -> tuple[list[str], dict[str, str]]:
    """(slice keys to register, {stale slice key: its inputs hash}); both empty before any ingest."""
    store = DerivedStore(settings.home_path(), progress=False, say=lambda line: None)
    if not store.paths.home.exists() or not load_manifest(store.paths).sources:
        return [], {}
    new = [slice_key(k) for k in store.partitions() if slice_key(k) not in known]
    return new, {slice_key(k): h for k, h in store.stale_inputs().items()}


def slice_run_requests(stale: dict[str, str], limit: int) -> list[dg.RunRequest]:
    return [dg.RunRequest(run_key=f"{k}@{h}", partition_key=k, tags={SLICE_TAG: k})
            for k, h in sorted(stale.items())[:limit]]


def build_slices_sensor(minimum_interval_seconds: int, max_runs: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="derived_slices",
        job=derived_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Registers every (system, framework, version) slice of the warehouse as a partition "
        "and requests a derived_job run for each slice whose inputs changed (once per change).",
    )
    def derived_slices(context: dg.SensorEvaluationContext, settings: WarehouseSettings):
        busy = context.instance.get_runs(dg.RunsFilter(job_name="ingest_job", statuses=BUSY), limit=1)
        if busy:
            return dg.SkipReason("an ingest run is in progress; slices are planned once it ends")
        known = set(context.instance.get_dynamic_partitions(SLICE_PARTITIONS.name))
        new, stale = slice_plan(settings, known)
        if not new and not stale:
            return dg.SkipReason("every derived slice is current")
        return dg.SensorResult(
            run_requests=slice_run_requests(stale, max_runs),
            dynamic_partitions_requests=[SLICE_PARTITIONS.build_add_request(new)] if new else [],
        )

    return derived_slices


def build_slices_schedule(cron: str) -> dg.ScheduleDefinition:
    """The daily pass over every registered slice (one run over their range; the store
    rebuilds only the stale ones, e.g. after a method or system-spec change)."""

    @dg.schedule(name="daily_derived", job=derived_job, cron_schedule=cron, execution_timezone="UTC",
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Re-materializes the stale derived partitions (one run over every slice).")
    def daily_derived(context: dg.ScheduleEvaluationContext):
        keys = context.instance.get_dynamic_partitions(SLICE_PARTITIONS.name)
        if not keys:
            return dg.SkipReason("no derived slice registered yet")
        return dg.RunRequest(tags={RANGE_START: keys[0], RANGE_END: keys[-1]})

    return daily_derived
