"""The Delta Lake store: injective partitions, ledger semantics, lock-free writers, time travel, integrity."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO, dsa_context_row, write_log
from warehouse.ingest import ingest_paths
from warehouse.read import read_measurements, read_perf_points, snapshot, sql
from warehouse.tables import StorageError
from warehouse.verify import verify_home
from warehouse.views import refresh_views


def _rows(version: str, n: int, latency: float = 1.0) -> list[str]:
    return [dsa_context_row(isl=i + 1, latency=latency).replace("TRTLLM,1.0,", f"TRTLLM,{version},") for i in range(n)]


def test_versions_that_escape_alike_stay_apart_and_long_ones_fit(home, tmp_path):
    """D3: `1.0 beta`/`1.0_beta`, `v1/2`/`v1_2` and a 300-character version each keep their rows."""
    versions = ["1.0 beta", "1.0_beta", "v1/2", "v1_2", "2024-01-01 10:00:00", "x" * 300]
    for i, v in enumerate(versions):
        write_log(tmp_path / "raw" / f"d{i}" / "h200_sxm" / "trtllm" / "dsa_context_module_perf.txt", _rows(v, 2 + i))
    report = ingest_paths([tmp_path / "raw"], home)
    assert not report.failed and report.rows_accepted == sum(2 + i for i in range(len(versions)))
    py = read_measurements(home).group_by("version").len().sort("version")
    db = sql("select version, count(*) as len from measurements group by 1 order by 1", home)
    assert py.rows() == db.rows()
    assert dict(py.rows()) == {v: 2 + i for i, v in enumerate(versions)}


def test_lost_transaction_log_refuses_and_deletes_nothing(home, raw_dir):
    """D2: with a table's _delta_log gone, ingest stops with one line and every data file stays."""
    f = write_log(raw_dir / "dsa_context_module_perf.txt", _rows("1.0", 5))
    ingest_paths([f], home)
    data = sorted(p for p in (home / "measurements").rglob("*.parquet"))
    assert data
    shutil.rmtree(home / "measurements" / "_delta_log")
    write_log(f, _rows("1.0", 6, latency=2.0))
    with pytest.raises(StorageError, match="no readable Delta transaction log"):
        ingest_paths([f], home)
    assert all(p.exists() for p in data)
    out = subprocess.run(
        [sys.executable, "-m", "perfwh.cli", "ingest", str(f), "--home", str(home)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert out.returncode != 0 and "Traceback" not in out.stderr and "_delta_log" in out.stderr


@pytest.mark.parametrize("table", ["ledger", "measurements"])
def test_damaged_commit_file_is_one_line_naming_the_table(table, home, raw_dir):
    """A _delta_log JSON that does not parse raised delta-rs' DeltaError (with a Rust backtrace)
    through every command."""
    f = write_log(raw_dir / "dsa_context_module_perf.txt", _rows("1.0", 5))
    ingest_paths([f], home)
    last = sorted((home / table / "_delta_log").glob("*.json"))[-1]
    last.write_text("{garbage\n")  # read by a new process (this one keeps the tables it opened)
    for args in (["sql", "select 1"], ["verify"], ["ingest", str(f)]):
        out = subprocess.run(
            [sys.executable, "-m", "perfwh.cli", *args, "--home", str(home)],
            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
        )  # fmt: skip
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert f"{home / table}: its Delta transaction log cannot be read" in out.stderr


def test_changed_file_equal_to_another_drops_its_old_rows(home, raw_dir):
    """D4: P rewritten with Q's content is a duplicate of Q, and P's earlier rows leave."""
    p = write_log(raw_dir / "a" / "dsa_context_module_perf.txt", _rows("1.0", 3, latency=1.0))
    q = write_log(raw_dir / "b" / "dsa_context_module_perf.txt", _rows("1.0", 4, latency=2.0))
    ingest_paths([raw_dir], home)
    assert read_measurements(home).height == 7
    p.write_bytes(q.read_bytes())
    report = ingest_paths([p], home)
    assert [r.status for r in report.files] == ["skipped-duplicate"]
    m = read_measurements(home)
    assert m.height == 4 and set(m.get_column("source_file")) == {str(q)}
    live = sql("select path from ingest_ledger where status = 'ingested'", home).get_column("path").to_list()
    assert live == [str(q)]


def _jsonl(path: Path, n: int) -> Path:
    rec = {
        "run_id": "r1", "device": "NVIDIA H200", "framework": "perfwh", "version": "0.1", "op": "dsa_context",
        "kernel_source": "triton", "model": "deepseek-ai/DeepSeek-V3.2", "architecture": "DeepseekV32ForCausalLM",
        "attn_dtype": "bfloat16", "kv_cache_dtype": "bfloat16", "gemm_type": "bfloat16", "num_heads": 128,
        "batch_size": 1, "prefix": 0, "tp_size": 1, "latency_ms": 1.0,
    }  # fmt: skip
    path.write_text("".join(json.dumps({**rec, "isl": 128 * (i + 1)}) + "\n" for i in range(n)))
    return path


def test_csv_ingested_before_its_jsonl_twin_is_not_counted_twice(home, raw_dir):
    """D5: the CSV came first; once the JSONL twin arrives the CSV's rows leave."""
    write_log(raw_dir / "dsa_context_module_perf.txt", _rows("1.0", 5))
    ingest_paths([raw_dir], home)
    assert read_measurements(home).height == 5
    _jsonl(raw_dir / "dsa_context_module_perf.jsonl", 5)
    report = ingest_paths([raw_dir], home)
    assert sorted(r.status for r in report.files) == ["ingested", "skipped-mirror"]
    m = read_measurements(home)
    assert m.height == 5 and set(m.get_column("source_file")) == {str(raw_dir / "dsa_context_module_perf.jsonl")}
    assert read_perf_points(home).get_column("n").to_list() == [1] * 5


def test_concurrent_writers_without_a_lock_all_commit(home, tmp_path):
    """Three processes ingesting different files at once: every row once, ledger = rows visible."""
    groups = []
    for w in range(3):
        d = tmp_path / f"raw{w}"
        for i in range(4):
            write_log(d / f"v{w}_{i}" / "h200_sxm" / "trtllm" / "dsa_context_module_perf.txt", _rows(f"{w}.{i}", 50 + i))
        groups.append(d)
    ingest_paths([groups[0] / "v0_0"], home)  # the tables exist before the race
    code = "import sys; from warehouse.ingest import ingest_paths; ingest_paths([sys.argv[1]], sys.argv[2])"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(d), str(home)], env=env) for d in groups]
    assert [p.wait() for p in procs] == [0, 0, 0]
    total = 3 * sum(50 + i for i in range(4))
    m = read_measurements(home)
    assert m.height == total and m.select("source_file", "source_line").is_duplicated().sum() == 0
    ledger = sql("select count(*), sum(rows_accepted) from ingest_ledger where status = 'ingested'", home).row(0)
    assert ledger == (12, total)
    assert sql("select count(*) from measurements", home).item() == total


def test_snapshot_and_as_of_read_one_version(home, raw_dir):
    """A pinned snapshot keeps its rows while later commits land; --as-of reads an old version."""
    f = write_log(raw_dir / "a" / "dsa_context_module_perf.txt", _rows("1.0", 3))
    ingest_paths([f], home)
    snap = snapshot(home)
    first = sql("select ledger_version from warehouse_version", home).item()
    write_log(f, _rows("1.0", 8, latency=3.0))
    ingest_paths([f], home)
    assert read_measurements(snap).height == 3 and read_measurements(home).height == 8
    assert sql("select count(*) from measurements", snap).item() == 3
    assert sql("select count(*) from measurements", home, as_of=first).item() == 3
    assert read_perf_points(snap).get_column("latency_ms").to_list() == [1.0] * 3
    with pytest.raises(ValueError, match="no version"):
        sql("select 1", home, as_of=9999)


def test_as_of_past_the_latest_version_names_the_range(home, raw_dir):
    """--as-of 999 said 'LogSegment end version 1 not the same as the specified end version 999' (delta-rs)."""
    ingest_paths([write_log(raw_dir / "dsa_context_module_perf.txt", _rows("1.0", 3))], home)
    latest = sql("select ledger_version from warehouse_version", home).item()
    with pytest.raises(ValueError) as info:
        sql("select 1", home, as_of=999)
    assert str(info.value) == f"ledger: no version 999 (the versions are 0..{latest})"


def test_sql_cannot_write_files_or_run_several_statements(home, raw_dir, tmp_path):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", _rows("1.0", 3))
    ingest_paths([f], home)
    part = snapshot(home).files("measurements")[0]
    before = Path(part).read_bytes()
    with pytest.raises(duckdb.Error, match="disabled"):
        sql(f"COPY (select 1 as x) TO '{part}' (FORMAT parquet)", home)
    assert Path(part).read_bytes() == before
    with pytest.raises(ValueError, match="one SQL statement"):
        sql("select 1; select 2", home)
    out = subprocess.run(
        [sys.executable, "-m", "perfwh.cli", "sql", f"COPY (select 1) TO '{part}'", "--home", str(home)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert Path(part).read_bytes() == before


def test_verify_names_damaged_files_and_repair_reingests(home, raw_dir):
    """D7: flipped bytes and a missing file are named; --repair rewrites them from the raw logs."""
    a = write_log(raw_dir / "a" / "dsa_context_module_perf.txt", _rows("1.0", 40))
    write_log(raw_dir / "b" / "dsa_context_module_perf.txt", _rows("2.0", 30))
    ingest_paths([raw_dir], home)
    files = snapshot(home).files("measurements")
    flipped, gone = sorted(files, key=lambda p: "a" in p and str(a) in p)
    data = bytearray(Path(flipped).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(flipped).write_bytes(bytes(data))
    Path(gone).unlink()
    bad, _ = verify_home(home)
    assert {(Path(b.file).name, b.problem) for b in bad} == {
        (Path(flipped).name, "checksum differs"), (Path(gone).name, "missing"),
    }  # fmt: skip
    # D6: the damaged table fails alone; the ledger and quarantine views still answer.
    assert sql("select count(*) from ingest_ledger", home).item() == 2
    assert sql("select count(*) from quarantine", home).item() == 0
    with pytest.raises(duckdb.Error, match="measurements"):
        sql("select count(*) from measurements", home)
    refresh_views(home)  # perf.duckdb for the duckdb CLI: same isolation
    con = duckdb.connect(str(home / "perf.duckdb"), read_only=True)
    try:
        assert con.sql("select count(*) from ingest_ledger").fetchall() == [(2,)]
        with pytest.raises(duckdb.Error):
            con.sql("select count(*) from measurements").fetchall()
    finally:
        con.close()
    found, left = verify_home(home, repair=True)
    assert len(found) == 2 and left == []
    assert read_measurements(home).height == 70
    out = subprocess.run(
        [sys.executable, "-m", "perfwh.cli", "verify", "--home", str(home)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def test_derived_table_records_the_version_it_was_built_from(home, raw_dir):
    from warehouse.derived import derived_version, write_derived

    f = write_log(raw_dir / "dsa_context_module_perf.txt", _rows("1.0", 3))
    ingest_paths([f], home)
    snap = snapshot(home)
    write_log(f, _rows("1.0", 5, latency=2.0))
    ingest_paths([f], home)  # a later commit lands while the derived table is built
    write_derived(snap, "perf_points_copy", read_perf_points(snap))
    assert derived_version(home, "perf_points_copy") == snap.version < snapshot(home).version
    assert sql("select count(*) from perf_points_copy", home).item() == 3


def test_sql_serves_the_last_commit_when_a_run_died_before_its_view_refresh(home, raw_dir):
    """D9: perf.duckdb lags a killed run, `perfwh sql` and Python do not, and the old files stay readable."""
    a = write_log(raw_dir / "a" / "dsa_context_module_perf.txt", _rows("1.0", 3))
    ingest_paths([a], home)
    write_log(a, _rows("1.0", 5, latency=2.0))
    ingest_paths([a], home, refresh=False)  # as if killed after the commit, before the refresh
    assert sql("select count(*) from measurements", home).item() == read_measurements(home).height == 5
    con = duckdb.connect(str(home / "perf.duckdb"), read_only=True)
    try:
        assert con.sql("select count(*) from measurements").fetchall() == [(3,)]  # stale, still whole
    finally:
        con.close()


def test_cli_sql_as_of_version_and_time(home, raw_dir):
    import time
    from datetime import datetime, timezone

    f = write_log(raw_dir / "dsa_context_module_perf.txt", _rows("1.0", 3))
    ingest_paths([f], home)
    first = snapshot(home).version
    time.sleep(1.1)
    between = datetime.now(timezone.utc).isoformat()
    time.sleep(1.1)
    write_log(f, _rows("1.0", 7, latency=2.0))
    ingest_paths([f], home)
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def count(*extra):
        out = subprocess.run(
            [sys.executable, "-m", "perfwh.cli", "sql", "select count(*) as n from measurements",
             "--format", "csv", "--home", str(home), *extra], capture_output=True, text=True, env=env,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[-1])

    assert (count(), count("--as-of", str(first)), count("--as-of", between)) == (7, 3, 3)
    bad = subprocess.run(
        [sys.executable, "-m", "perfwh.cli", "sql", "select 1", "--as-of", "yesterday", "--home", str(home)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "--as-of" in bad.stderr


@pytest.mark.parametrize("name, escape", [("50%41", "%41"), ("sp%ace", "%ac")])
def test_home_with_a_percent_escape_is_refused_in_one_line(name, escape, raw_dir, tmp_path):
    """delta-rs percent-decodes a local table path however it is quoted: a first ingest into ".../50%41"
    looked for ".../50A/..." and died in a Rust traceback; "sp%ace" in "non-unicode characters"."""
    home = tmp_path / name
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row()])
    out = subprocess.run([sys.executable, "-m", "perfwh.cli", "ingest", str(f), "--home", str(home)],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert f"warehouse home {home}: delta-rs reads '{escape}' in a folder name" in out.stderr
    with pytest.raises(StorageError, match="choose a path without '%' followed by two hex digits"):
        ingest_paths([f], home)


@pytest.mark.parametrize("name", ["home with space", "hôme-ünïcode", "100%full"])
def test_home_on_a_path_that_needs_escaping(name, raw_dir, tmp_path):
    """The ledger's file URIs are percent-encoded: a home with a space used to take the rows, then
    fail every read ('No such file ... home%20with%20space/ledger/...')."""
    home = tmp_path / name
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(isl=s) for s in (1024, 2048)])
    assert ingest_paths([f], home).rows_accepted == 2
    assert sql("select count(*) from measurements", home).item() == 2
    assert [r.status for r in ingest_paths([f], home).files] == ["skipped-unchanged"]
    assert verify_home(home) == ([], [])


def test_a_lost_derived_table_fails_its_view_instead_of_leaving_its_partition_out(raw_dir, home, capsys):
    """Deleting one partition's grids.parquet made `select count(*) from grids` silently count
    the other partitions only."""
    import polars as pl

    from perfwh.cli import main

    ingest_paths([write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row()])], home)
    parts = home / "derived" / "partitions" / "h200_sxm" / "trtllm"
    for version, tables in (("1.0", ("grids", "build_errors")), ("2.0", ("build_errors",)), ("3.0", ("grids",))):
        (parts / version).mkdir(parents=True)
        for t in tables:
            pl.DataFrame({"x": [1]}).write_parquet(parts / version / f"{t}.parquet")
    lost = parts / "2.0" / "grids.parquet"  # 3.0 has no build_errors yet: still being built, not lost
    with pytest.raises(duckdb.Error, match=f"grids: {lost} is missing; `perfwh materialize` rebuilds it"):
        sql("select count(*) from grids", home)
    assert sql("select count(*) from build_errors", home).item() == 2  # the other derived views still work
    refresh_views(home)
    with pytest.raises(duckdb.Error, match=f"{lost} is missing"):
        duckdb.connect(str(home / "perf.duckdb"), read_only=True).sql("select count(*) from grids").fetchall()
    assert main(["tables", "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{lost} is missing" in err and "Traceback" not in err
