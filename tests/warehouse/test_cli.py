"""`perfwh ingest / sql / tables` as a user runs them (subprocess: exit codes, no tracebacks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO, dsa_context_row, write_log


def perfwh(*args, home=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if home is not None:
        env["PERFWH_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "perfwh.cli", *map(str, args)], env=env, capture_output=True, text=True
    )


def test_ingest_then_query(home, raw_dir):
    write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(isl=1024), dsa_context_row(latency="x")])
    out = perfwh("ingest", raw_dir, home=home)
    assert out.returncode == 0, out.stderr
    assert "1 ingested" in out.stdout and "2 read = 1 accepted + 1 quarantined" in out.stdout
    again = perfwh("ingest", raw_dir, home=home)
    assert "skipped-unchanged" in again.stdout and "1 unchanged" in again.stdout

    q = perfwh("sql", "select op, isl, latency_ms from measurements", "--format", "json", home=home)
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout) == [{"op": "dsa_context", "isl": 1024, "latency_ms": 1.0}]
    csv = perfwh("sql", "select reason from quarantine", "--format", "csv", "--home", home)
    assert csv.stdout.splitlines() == ["reason", "latency: not a number (x)"]

    bad = perfwh("sql", "select * from nowhere", home=home)
    assert bad.returncode == 2 and "nowhere" in bad.stderr and "Traceback" not in bad.stderr

    tables = perfwh("tables", home=home)
    assert tables.returncode == 0
    for view in ("measurements", "perf_points", "quarantine", "ingest_ledger", "dsa_context", "mla_generation_kernel"):
        assert f"| {view} " in tables.stdout


def test_bad_arguments_give_one_line_errors(home, tmp_path):
    cases = [
        (("ingest", tmp_path / "missing"), "no such file or folder"),
        (("ingest",), "nothing to ingest"),
        (("sql", "select 1"), "no warehouse at"),
        (("tables",), "no warehouse at"),
        (("ingest", tmp_path, "--system", "h200_sxm"), "--system only applies"),
    ]
    for args, fragment in cases:
        out = perfwh(*args, home=home)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert fragment in out.stderr
        assert "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_from_aiconfigurator_folder(home, tmp_path):
    import polars as pl

    d = tmp_path / "systems" / "data" / "h200_sxm" / "mla" / "trtllm" / "1.0"
    d.mkdir(parents=True)
    pl.DataFrame(
        {"framework": ["TRTLLM"], "version": ["1.0"], "device": ["NVIDIA H200"], "op_name": ["mla_context"],
         "kernel_source": ["default"], "mla_dtype": ["bfloat16"], "kv_cache_dtype": ["bfloat16"],
         "num_heads": [128], "batch_size": [1], "isl": [16], "tp_size": [1], "step": [0], "latency": [0.02]}
    ).write_parquet(d / "context_mla_perf.parquet")  # fmt: skip
    pl.DataFrame({"x": [1]}).write_parquet(d / "mla_bmm_perf.parquet")
    out = perfwh("ingest", "--from-aiconfigurator", tmp_path / "systems" / "data", home=home)
    assert out.returncode == 0, out.stderr
    assert "1 to ingest, 1 other tables not modelled here (skipped)" in out.stderr
    q = perfwh("sql", "select system, op from measurements", "--format", "csv", home=home)
    assert q.stdout.splitlines()[1] == "h200_sxm,mla_context_kernel"
