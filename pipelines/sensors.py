"""The landing-folder sensor: one ingest run per new or changed raw log."""


import dagster as dg

from assets.constants import RAW_LOG_PARTITIONS
from assets.resources import WarehouseSettings
from warehouse.landing import changed_since, decode_cursor, encode_cursor, landing_source, pending, scan_landing_all
from warehouse.manifest import load_manifest
from warehouse.paths import WarehousePaths

from .jobs import ingest_job


def build_landing_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="landing_sensor",
        job=ingest_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Watches the landing folder; cursor = JSON map file key -> sha256.",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, settings: WarehouseSettings) -> dg.SensorResult:
        files, skipped = scan_landing_all(*landing_source(settings.landing))
        for path, reason in skipped:  # links, unreadable folders: passed over, the tick goes on
            context.log.warning(f"landing: skipped {path}: {reason}")
        seen = decode_cursor(context.cursor)
        changed = changed_since(files, seen)
        todo = pending(changed, load_manifest(WarehousePaths.at(settings.home_path())))
        known = set(context.instance.get_dynamic_partitions(RAW_LOG_PARTITIONS.name))
        new_keys = [f.key for f in files if f.key not in known]
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=f.sha256, partition_key=f.key, tags={"perfwh/raw_log": f.key})
                for f in todo
            ],
            cursor=encode_cursor(changed, seen),
            dynamic_partitions_requests=[RAW_LOG_PARTITIONS.build_add_request(new_keys)] if new_keys else [],
        )

    return landing_sensor
