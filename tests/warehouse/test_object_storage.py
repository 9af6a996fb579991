"""`--home s3://bucket/prefix` against a local S3-compatible server (moto, its own process):
ingest, replace, concurrent writer processes, kill -9, SQL, query and verify, with the
endpoint and credentials taken from the standard AWS environment only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, dsa_context_row, write_log
from tests.pipelines.fixtures import context_latency, write_landing
from tests.s3server import s3_env, s3_server  # noqa: F401  (fixtures)
from tests.warehouse.test_properties import _log, damaged_line
from warehouse.ingest import ingest_paths
from warehouse.location import ObjectHome, cache_dir
from warehouse.paths import WarehousePaths
from warehouse.read import read_measurements, read_perf_points, snapshot, sql
from warehouse.verify import verify_home


@pytest.fixture
def s3_home(s3_env, tmp_path, monkeypatch):  # noqa: F811
    """A fresh bucket; the home is a prefix in it. Derived tables cache under tmp_path."""
    bucket = f"wh-{uuid.uuid4().hex[:10]}"
    s3_env.create_bucket(Bucket=bucket)
    monkeypatch.setenv("PERFWH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # a home mistaken for a relative folder would show up here
    return f"s3://{bucket}/team/warehouse"


def _keys(client, home: str) -> list[str]:
    h = ObjectHome(home)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=h.bucket, Prefix=h.key + "/")
    return [o["Key"][len(h.key) + 1:] for page in pages for o in page.get("Contents", [])]


def _rows(version: str, n: int, latency: float = 1.0) -> list[str]:
    return [dsa_context_row(isl=i + 1, latency=latency).replace("TRTLLM,1.0,", f"TRTLLM,{version},") for i in range(n)]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "perfwh.cli", *args], capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300,
    )  # fmt: skip


def test_ingest_sql_and_verify_on_object_storage(s3_home, s3_env, tmp_path):  # noqa: F811
    write_landing(tmp_path / "landing")
    report = ingest_paths([tmp_path / "landing"], s3_home)
    assert [f.status for f in report.files] == ["ingested"] * 3
    assert (report.rows_accepted, report.rows_quarantined) == (60, 3)
    keys = _keys(s3_env, s3_home)
    for table in ("measurements", "quarantine", "ledger"):
        assert any(k.startswith(f"{table}/_delta_log/") for k in keys), table
    assert any(k.startswith("measurements/source_sha256=") and k.endswith(".parquet") for k in keys)
    # Nothing local but the cache (no folder named after the URL). Its perf.duckdb holds the
    # ledger and derived tables; DuckDB cannot read S3 offline, so the data views say where to go.
    assert not (tmp_path / "s3:").exists()
    con = duckdb.connect(str(WarehousePaths.at(s3_home).duckdb), read_only=True)
    assert con.sql("select count(*) from ingest_ledger").fetchall() == [(3,)]
    with pytest.raises(duckdb.Error, match="perfwh sql --home " + s3_home):
        con.sql("select count(*) from measurements").fetchall()
    con.close()
    by_op = sql("select op, count(*) as n from measurements group by 1 order by 1", s3_home)
    assert by_op.rows() == [("dsa_context", 20), ("dsa_generation", 20), ("mla_context", 20)]
    assert sql("select count(*) from quarantine", s3_home).item() == 3
    assert read_measurements(s3_home, op="dsa_context").height == 20
    assert read_perf_points(s3_home).height == 60
    assert verify_home(ObjectHome(s3_home)) == ([], [])
    again = ingest_paths([tmp_path / "landing"], s3_home)
    assert {f.status for f in again.files} == {"skipped-unchanged"}


def test_replace_and_time_travel_on_object_storage(s3_home, tmp_path):
    f = write_log(tmp_path / "raw" / "h200_sxm" / "trtllm" / "1.0" / "dsa_context_module_perf.txt", _rows("1.0", 4))
    ingest_paths([f], s3_home)
    first = snapshot(s3_home)
    write_log(f, _rows("1.0", 6, latency=2.5))
    report = ingest_paths([f], s3_home)
    assert [r.status for r in report.files] == ["replaced"]
    now = read_measurements(s3_home)
    assert now.height == 6 and set(now.get_column("latency_ms")) == {2.5}
    assert read_measurements(first).height == 4
    assert sql("select count(*) from measurements", s3_home, as_of=first.version).item() == 4
    live = sql("select count(*) from ingest_ledger where status = 'ingested'", s3_home).item()
    assert live == 1


def test_concurrent_writer_processes_on_object_storage(s3_home, tmp_path):
    """Three processes (think: hosts) ingesting different files into one s3 home at once:
    every commit lands (conditional-put conflicts retried), nothing lost or doubled."""
    groups = []
    for w in range(3):
        d = tmp_path / f"raw{w}"
        for i in range(4):
            write_log(d / f"v{w}_{i}" / "h200_sxm" / "trtllm" / "dsa_context_module_perf.txt", _rows(f"{w}.{i}", 30 + i))
        groups.append(d)
    ingest_paths([groups[0] / "v0_0"], s3_home)  # the tables exist before the race
    code = "import sys; from warehouse.ingest import ingest_paths; ingest_paths([sys.argv[1]], sys.argv[2])"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(d), s3_home], env=env) for d in groups]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    total = 3 * sum(30 + i for i in range(4))
    m = read_measurements(s3_home)
    assert m.height == total and m.select("source_file", "source_line").is_duplicated().sum() == 0
    ledger = sql("select count(*), sum(rows_accepted) from ingest_ledger where status = 'ingested'", s3_home)
    assert ledger.row(0) == (12, total)
    assert sql("select count(*) from measurements", s3_home).item() == total


def test_kill_9_mid_ingest_on_object_storage_then_rerun(s3_home, tmp_path):
    raw = tmp_path / "raw"
    for i in range(5):
        write_log(raw / f"v{i}" / "h200_sxm" / "trtllm" / "dsa_context_module_perf.txt", _rows(f"{i}.0", 40))
    code = (
        "import sys, time; from warehouse.ingest import ingest_paths\n"
        "def progress(n, total, path, result):\n"
        "    if result is not None and result.status == 'ingested' and n == 2:\n"
        "        print('committed', flush=True); time.sleep(120)\n"
        "ingest_paths([sys.argv[1]], sys.argv[2], progress=progress, batch_files=2)"
    )  # batches of two files: the child stalls once the first batch is committed
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", code, str(raw), s3_home], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "committed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert read_measurements(s3_home).height == 80
    report = ingest_paths([raw], s3_home)
    assert sorted(r.status for r in report.files) == ["ingested"] * 3 + ["skipped-unchanged"] * 2
    assert read_measurements(s3_home).height == 200
    assert sql("select sum(rows_accepted) from ingest_ledger where status = 'ingested'", s3_home).item() == 200


def test_cli_ingest_sql_query_verify_and_repair(s3_home, s3_env, tmp_path):  # noqa: F811
    write_landing(tmp_path / "landing")
    out = _cli("ingest", str(tmp_path / "landing"), "--home", s3_home)
    assert out.returncode == 0, out.stderr
    assert f"warehouse {s3_home}" in out.stdout
    out = _cli("sql", "select count(*) as n from measurements", "--home", s3_home, "--format", "csv")
    assert out.returncode == 0 and out.stdout.split() == ["n", "60"], out.stderr
    # perfwh sql cannot write into the store, not even through an s3:// URL.
    out = _cli("sql", f"copy measurements to '{s3_home}/measurements/x.parquet'", "--home", s3_home)
    assert out.returncode == 2 and "disabled" in out.stderr and "Traceback" not in out.stderr
    # The estimator reads the object home; its derived tables are cached locally.
    out = _cli("query", "dsa_context", "-b", "2", "-s", "1024", "--num-heads", "128", "--json", "--home", s3_home)
    assert out.returncode == 0, out.stderr
    import json

    est = json.loads(out.stdout)
    assert est["source"] == "measured" and est["latency_ms"] == pytest.approx(context_latency(2, 1024))
    cached = cache_dir(ObjectHome(s3_home)) / "derived"
    assert {p.stem for p in cached.rglob("*.parquet")} >= {"sol_calibration", "grids"}
    # A damaged object: verify names it; --repair re-ingests its raw log.
    home = ObjectHome(s3_home)
    part = snapshot(s3_home).files("measurements")[0]
    key = part[len("s3://" + home.bucket + "/"):]
    s3_env.put_object(Bucket=home.bucket, Key=key, Body=b"not parquet")
    out = _cli("verify", "--home", s3_home, "--format", "csv")
    assert out.returncode == 1 and "size differs" in out.stdout and part in out.stdout
    out = _cli("verify", "--repair", "--home", s3_home)
    assert out.returncode == 0 and "1 repaired, 0 left" in out.stderr, out.stderr
    assert sql("select count(*) from measurements", s3_home).item() == 60


def test_unreachable_or_missing_bucket_is_one_line(s3_home, tmp_path, monkeypatch):
    f = write_log(tmp_path / "raw" / "dsa_context_module_perf.txt", _rows("1.0", 2))
    missing = "s3://no-such-bucket-" + uuid.uuid4().hex[:8] + "/wh"
    out = _cli("ingest", str(f), "--home", missing)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "NoSuchBucket" in out.stderr
    out = _cli("sql", "select 1", "--home", s3_home)
    assert out.returncode == 2 and "no warehouse at " + s3_home in out.stderr
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    out = _cli("sql", "select 1", "--home", s3_home)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    out = _cli("sql", "select 1", "--home", "s3:///nobucket")
    assert out.returncode == 2 and "s3://bucket/prefix" in out.stderr


def test_home_kinds():
    h = ObjectHome("s3://bkt/a/b/")
    assert (str(h), h.bucket, h.key, h.name, str(h / "ledger")) == ("s3://bkt/a/b", "bkt", "a/b", "b", "s3://bkt/a/b/ledger")
    assert WarehousePaths.at("s3://bkt/a/b").home == h and not WarehousePaths.at("s3://bkt/a/b").is_local
    for bad in ("s3://", "s3://bkt/a/../b", "s3://bkt//a"):
        with pytest.raises(ValueError, match="s3://bucket/prefix"):
            ObjectHome(bad)


def test_materialize_on_object_storage(s3_home, tmp_path, monkeypatch):
    """The Dagster graph on an s3 home: ingest runs commit to the bucket; the derived tables,
    Dagster's instance and perf.duckdb live in the home's local cache."""
    from pipelines.materialize import run_materialize

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    write_landing(tmp_path / "landing")
    summary = run_materialize(s3_home, str(tmp_path / "landing"))
    assert summary.ingested.rows_accepted == 60 and not summary.failed_runs
    local = WarehousePaths.at(s3_home).local
    assert local == cache_dir(ObjectHome(s3_home)) and summary.dagster_home == local / "dagster"
    assert {"perf_points", "sol_calibration", "accuracy_report"} <= {p.stem for p in (local / "derived").rglob("*.parquet")}
    assert sql("select count(*) from perf_points", s3_home).item() == 60


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(lines=st.lists(damaged_line(), max_size=30), crlf=st.booleans())
def test_random_damage_keeps_the_books_balanced_on_object_storage(s3_home, lines, crlf):
    """The damaged-log property of test_properties.py on an s3 home: per file rows read =
    accepted + quarantined, and SQL over the bucket shows exactly those rows."""
    home = f"{s3_home}/{uuid.uuid4().hex[:8]}"
    with _log(lines, crlf, True) as (f, _):
        (res,) = ingest_paths([f], home).files
    assert res.status == "ingested" and res.rows_read == res.rows_accepted + res.rows_quarantined
    counts = sql("select (select count(*) from measurements), (select count(*) from quarantine)", home)
    assert counts.row(0) == (res.rows_accepted, res.rows_quarantined)


def test_lost_transaction_log_in_the_bucket_refuses_and_deletes_nothing(s3_home, s3_env, tmp_path):  # noqa: F811
    """D2 on an s3 home: with measurements/_delta_log gone, ingest stops with one line and
    every data object stays."""
    f = write_log(tmp_path / "raw" / "h200_sxm" / "trtllm" / "1.0" / "dsa_context_module_perf.txt", _rows("1.0", 5))
    ingest_paths([f], s3_home)
    home = ObjectHome(s3_home)
    data = [k for k in _keys(s3_env, s3_home) if k.startswith("measurements/source_sha256=")]
    for key in _keys(s3_env, s3_home):
        if key.startswith("measurements/_delta_log/"):
            s3_env.delete_object(Bucket=home.bucket, Key=f"{home.key}/{key}")
    write_log(f, _rows("1.0", 6, latency=2.0))
    out = _cli("ingest", str(f), "--home", s3_home)
    assert out.returncode == 2 and "no readable Delta transaction log" in out.stderr and "Traceback" not in out.stderr
    assert [k for k in _keys(s3_env, s3_home) if k.startswith("measurements/source_sha256=")] == data
