"""The landing sensor: ingest runs for new or changed raw logs, the new files of a tick in one run.

Watches a landing folder (cursor: key -> sha256) or an S3 prefix (cursor: key ->
ETag, listed without downloading). The new files of a tick go to one run
(at most $PERFWH_SENSOR_MAX_FILES files a run), a changed known file to its own;
at most $PERFWH_SENSOR_MAX_RUNS runs per tick, the rest next tick (warehouse.landing_plan).
"""

import os

import dagster as dg

from assets.constants import RAW_LOG_PARTITIONS
from assets.resources import WarehouseSettings
from warehouse.landing import (
    changed_since, check_home_outside, decode_cursor, landing_source, pending, scan_landing_all,
)
from warehouse.landing_plan import DEFAULT_MAX_FILES_PER_RUN, DEFAULT_MAX_RUNS_PER_TICK, plan_batches
from warehouse.landing_s3 import S3Landing, is_s3
from warehouse.manifest import load_manifest
from warehouse.paths import WarehousePaths

from .jobs import ingest_job
from .materialize import RANGE_END, RANGE_START

ENV_MAX_RUNS = "PERFWH_SENSOR_MAX_RUNS"
ENV_MAX_FILES = "PERFWH_SENSOR_MAX_FILES"
BATCH_TAG = "perfwh/batch"


def _positive(name: str, default: int) -> int:
    text = os.environ.get(name) or str(default)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"${name} must be a positive integer, got {text!r}")
    return int(text)


def max_runs_per_tick() -> int:
    return _positive(ENV_MAX_RUNS, DEFAULT_MAX_RUNS_PER_TICK)


def max_files_per_run() -> int:
    return _positive(ENV_MAX_FILES, DEFAULT_MAX_FILES_PER_RUN)


def landing_changes(
    settings: WarehouseSettings, seen: dict[str, str], log=None
) -> tuple[dict[str, str], dict[str, str]]:
    """(current, changes): every landing key's content token, and those to ingest."""
    if is_s3(settings.landing):
        current = {o.key: o.etag for o in S3Landing.parse(settings.landing).list()}
        return current, {k: v for k, v in current.items() if seen.get(k) != v}
    root, only = landing_source(settings.landing)
    if only is None:  # a folder, not the published tables
        check_home_outside(root, settings.home_path())
    files, skipped = scan_landing_all(root, only)
    for path, reason in skipped:  # links, unreadable folders: passed over, the tick goes on
        if log is not None:
            log.warning(f"landing: skipped {path}: {reason}")
    current = {f.key: f.sha256 for f in files}
    todo = pending(changed_since(files, seen), load_manifest(WarehousePaths.at(settings.home_path())))
    return current, {f.key: f.sha256 for f in todo}


def build_landing_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="landing_sensor",
        job=ingest_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Watches the landing folder or S3 prefix; the new files of a tick in one run; "
        "cursor = JSON map key -> sha256 (folder) or ETag (S3).",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, settings: WarehouseSettings) -> dg.SensorResult:
        seen = decode_cursor(context.cursor)
        current, changes = landing_changes(settings, seen, context.log)
        known = set(context.instance.get_dynamic_partitions(RAW_LOG_PARTITIONS.name))
        batches, deferred = plan_batches(changes, known, max_runs_per_tick(), max_files_per_run())
        # Every landing file becomes a partition (the UI lists them); a batch's new keys are
        # added last and in batch order, so each batch's new keys form one partition range.
        batch_new = [k for b in batches for k in b.new]
        new_keys = sorted(k for k in current if k not in known and k not in deferred and k not in set(batch_new))
        new_keys += batch_new
        # Runs ingest only: `raw_log_files` (a listing and hash of the whole landing) is left
        # to `perfwh materialize` and the UI, or every run would re-hash every landed file.
        only = [dg.AssetKey("measurements")]
        requests = []
        for b in batches:
            tags = {BATCH_TAG: b.name}
            if len(b.new) > 1:
                requests.append(dg.RunRequest(
                    run_key=b.run_key, tags={**tags, RANGE_START: b.new[0], RANGE_END: b.new[-1]},
                    asset_selection=only,
                ))  # fmt: skip
            else:
                key = (*b.new, *b.known)[0]
                requests.append(dg.RunRequest(
                    run_key=b.run_key, partition_key=key, tags={**tags, "perfwh/raw_log": key}, asset_selection=only,
                ))  # fmt: skip
        # Files with nothing to ingest (content already held) enter the cursor too.
        cursor = {**seen, **{k: v for k, v in current.items() if k not in deferred}}
        if deferred:
            context.log.info(f"{len(deferred)} changed file(s) left for the next tick (run limit)")
        return dg.SensorResult(
            run_requests=requests,
            cursor=encode(cursor),
            dynamic_partitions_requests=[RAW_LOG_PARTITIONS.build_add_request(new_keys)] if new_keys else [],
        )

    return landing_sensor


def encode(cursor: dict[str, str]) -> str:
    import json

    return json.dumps(cursor, sort_keys=True, separators=(",", ":"))
