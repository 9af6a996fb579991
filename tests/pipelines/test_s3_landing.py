"""The landing sensor on an S3 prefix (a local moto server): ETag cursor, the new files of a tick in one run,
ingest runs that fetch what they ingest, changed and unchanged re-uploads."""

from __future__ import annotations

import json
import uuid

import dagster as dg
import pytest

from pipelines.materialize import RANGE_END, RANGE_START
from tests.pipelines.fixtures import context_latency, context_row, DSA, write_dsa_context, write_dsa_generation
from tests.s3server import s3_env, s3_server  # noqa: F401  (fixtures)
from warehouse.landing_s3 import S3Landing

CTX = "h200_sxm/trtllm/1.0/dsa_context_module_perf.txt"
GEN = "h200_sxm/trtllm/1.0/dsa_generation_module_perf.txt"
OTHER = "h100_sxm/trtllm/1.0/dsa_context_module_perf.txt"


@pytest.fixture
def s3_landing(tmp_path, s3_env, monkeypatch):  # noqa: F811
    """A bucket with two logs in one slice folder and one in another; (client, bucket, defs, settings)."""
    from assets.resources import WarehouseSettings
    from pipelines.definitions import build_defs

    bucket = f"landing-{uuid.uuid4().hex[:8]}"
    s3_env.create_bucket(Bucket=bucket)
    local = tmp_path / "src"
    ctx, gen = write_dsa_context(local), write_dsa_generation(local)
    h100 = ctx.read_bytes().replace(b"NVIDIA H200", b"NVIDIA H100 80GB HBM3")
    for key, body in ((CTX, ctx.read_bytes()), (GEN, gen.read_bytes()), (OTHER, h100)):
        s3_env.put_object(Bucket=bucket, Key=f"landing/{key}", Body=body)
    s3_env.put_object(Bucket=bucket, Key="landing/README.md", Body=b"not a raw log")
    monkeypatch.setenv("PERFWH_LANDING_CACHE", str(tmp_path / "cache"))
    settings = WarehouseSettings(home=str(tmp_path / "wh"), landing=f"s3://{bucket}/landing/")
    return s3_env, bucket, build_defs(settings), settings


def tick(defs, instance, cursor):
    sensor = defs.resolve_sensor_def("landing_sensor")
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"settings": defs.resources["settings"]})
    return sensor(ctx)


def run_all(defs, instance, result):
    if result.dynamic_partitions_requests:
        instance.add_dynamic_partitions("raw_log_file", list(result.dynamic_partitions_requests[0].partition_keys))
    job = defs.resolve_job_def("ingest_job")
    for r in result.run_requests:
        out = job.execute_in_process(instance=instance, tags=r.tags, partition_key=r.partition_key)
        assert out.success


def op_counts(settings):
    from warehouse.read import scan_measurements

    frame = scan_measurements(settings.home_path()).group_by("system", "op").len().collect()
    return {(s, o): n for s, o, n in frame.iter_rows()}


def test_listing_uses_etags_and_skips_non_logs(s3_landing):
    client, bucket, _, _ = s3_landing
    objs = S3Landing.parse(f"s3://{bucket}/landing").list()
    assert [o.key for o in objs] == [OTHER, CTX, GEN]
    head = client.head_object(Bucket=bucket, Key=f"landing/{CTX}")
    assert objs[1].etag == head["ETag"].strip('"')


def test_sensor_batches_new_files_and_runs_ingest_from_s3(s3_landing, instance):
    client, bucket, defs, settings = s3_landing
    first = tick(defs, instance, None)
    (run,) = first.run_requests  # the tick's new files, both folders, in one run
    assert run.tags["perfwh/batch"] == "new" and (run.tags[RANGE_START], run.tags[RANGE_END]) == (OTHER, GEN)
    cursor = json.loads(first.cursor)
    assert set(cursor) == {CTX, GEN, OTHER}
    run_all(defs, instance, first)
    assert op_counts(settings) == {
        ("h200_sxm", "dsa_context"): 20, ("h200_sxm", "dsa_generation"): 20, ("h100_sxm", "dsa_context"): 20,
    }  # fmt: skip
    # Nothing new: no runs. The same bytes uploaded again: same ETag, no run.
    body = client.get_object(Bucket=bucket, Key=f"landing/{CTX}")["Body"].read()
    client.put_object(Bucket=bucket, Key=f"landing/{CTX}", Body=body)
    again = tick(defs, instance, first.cursor)
    assert again.run_requests == []
    # Changed content: one run for that known partition; its rows replace the old ones.
    lines = body.decode().splitlines()
    changed = "\n".join([*lines[:-1], context_row("dsa_context_module", DSA, 8, 4096, context_latency(8, 4096) * 2)])
    client.put_object(Bucket=bucket, Key=f"landing/{CTX}", Body=(changed + "\n").encode())
    third = tick(defs, instance, again.cursor)
    assert [r.partition_key for r in third.run_requests] == [CTX]
    run_all(defs, instance, third)
    from warehouse.read import scan_measurements
    import polars as pl

    rows = scan_measurements(settings.home_path()).filter(
        (pl.col("system") == "h200_sxm") & (pl.col("op") == "dsa_context") & (pl.col("batch_size") == 8) & (pl.col("isl") == 4096)
    ).collect()
    assert rows["latency_ms"].to_list() == [pytest.approx(context_latency(8, 4096) * 2)]


def test_a_deleted_object_fails_only_its_run_with_a_message(s3_landing, instance):
    client, bucket, defs, _ = s3_landing
    first = tick(defs, instance, None)
    instance.add_dynamic_partitions("raw_log_file", list(first.dynamic_partitions_requests[0].partition_keys))
    client.delete_object(Bucket=bucket, Key=f"landing/{OTHER}")
    job = defs.resolve_job_def("ingest_job")
    out = job.execute_in_process(instance=instance, partition_key=OTHER, raise_on_error=False)
    assert not out.success
    failure = out.get_step_failure_events()[0].step_failure_data.error.message
    assert "no raw log left" in failure and OTHER in failure
