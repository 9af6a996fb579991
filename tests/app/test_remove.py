"""`perfwh remove` and the landing folder's policy for deleted raw logs."""

from __future__ import annotations

import pytest

from perfwh.cli import main
from tests.conftest import dsa_context_row, dsa_generation_row, write_log
from warehouse.ingest import ingest_paths
from warehouse.read import snapshot, sql
from warehouse.remove import on_delete_policy, remove_sources, retire_deleted


@pytest.fixture
def two_logs(raw_dir, home):
    a = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(isl=s) for s in (1024, 2048)])
    b = write_log(raw_dir / "dsa_generation_module_perf.txt", [dsa_generation_row(kv_len=k) for k in (1024, 4096, 8192)])
    ingest_paths([raw_dir], home)
    return a, b


def _ops(home, as_of=None):
    return sql("select op, count(*) from measurements group by op order by op", home, as_of=as_of).rows()


def test_remove_by_path_is_one_commit_and_keeps_history(two_logs, home, capsys):
    a, _ = two_logs
    before = snapshot(home).version
    assert main(["remove", str(a), "--home", str(home)]) == 0
    assert "removed" in capsys.readouterr().out
    assert snapshot(home).version == before + 1  # one ledger commit makes the rows leave
    assert _ops(home) == [("dsa_generation", 3)]
    assert _ops(home, as_of=before) == [("dsa_context", 2), ("dsa_generation", 3)]
    ledger = sql("select path, status from ingest_ledger order by path", home).rows()
    assert (str(a), "removed") in ledger
    # the views in perf.duckdb are refreshed too
    assert sql("select count(*) from dsa_context", home).item() == 0


def test_remove_by_sha_prefix_and_reingest_brings_it_back(two_logs, home):
    _, b = two_logs
    sha = sql(f"select sha256 from ingest_ledger where path = '{b}'", home).item()
    removed = remove_sources([sha[:12]], home)
    assert [(r.path, r.rows_accepted) for r in removed] == [(str(b), 3)]
    assert _ops(home) == [("dsa_context", 2)]
    ingest_paths([b], home)  # removal is of rows, not a ban on the content
    assert _ops(home) == [("dsa_context", 2), ("dsa_generation", 3)]


def test_remove_unknown_is_one_line(two_logs, home, capsys):
    assert main(["remove", "0123456789abcdef", "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a live source" in err


def test_landing_policy_keep_and_retire(two_logs, raw_dir, home):
    a, _ = two_logs
    a.unlink()
    assert retire_deleted(raw_dir, home, "keep") == []
    assert _ops(home) == [("dsa_context", 2), ("dsa_generation", 3)]
    gone = retire_deleted(raw_dir, home, "retire")
    assert [g.path for g in gone] == [str(a)]
    assert _ops(home) == [("dsa_generation", 3)]
    assert retire_deleted(raw_dir, home, "retire") == []  # nothing more to retire


def test_policy_setting(monkeypatch):
    assert on_delete_policy() == "keep"
    monkeypatch.setenv("PERFWH_ON_DELETE", "retire")
    assert on_delete_policy() == "retire"
    monkeypatch.setenv("PERFWH_ON_DELETE", "drop")
    with pytest.raises(ValueError, match="valid: keep, retire"):
        on_delete_policy()


def test_materialize_retires_a_deleted_landing_file_under_retire(raw_dir, tmp_path, monkeypatch, capsys):
    home = tmp_path / "wh"
    landing = raw_dir.parents[2]
    a = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(isl=s) for s in (1024, 2048, 4096)])
    write_log(raw_dir / "dsa_generation_module_perf.txt", [dsa_generation_row(kv_len=k) for k in (1024, 4096, 8192)])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    main(["materialize", "--landing", str(landing), "--home", str(home)])
    a.unlink()
    main(["materialize", "--landing", str(landing), "--home", str(home)])  # default policy: keep
    assert _ops(home) == [("dsa_context", 3), ("dsa_generation", 3)]
    monkeypatch.setenv("PERFWH_ON_DELETE", "retire")
    capsys.readouterr()
    main(["materialize", "--landing", str(landing), "--home", str(home)])
    assert f"retired {a}: deleted from the landing folder" in capsys.readouterr().err
    assert _ops(home) == [("dsa_generation", 3)]
