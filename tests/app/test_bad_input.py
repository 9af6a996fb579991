"""Bad input gets one line and a non-zero exit, never a traceback (issue 14, item 5)."""

from __future__ import annotations

import os

import polars as pl
import pytest

from perfwh.cli import main
from tests.conftest import HEADER, dsa_context_row, write_log
from warehouse.ingest import ingest_paths
from warehouse.read import sql


def _one_line_error(capsys, argv, code=2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return err


@pytest.fixture
def a_file(tmp_path):
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    return f


@pytest.mark.parametrize("argv", [
    ["ingest", "x.txt"],
    ["materialize", "--landing", "."],
    ["tables"],
    ["sql", "select 1"],
    ["coverage"],
    ["query", "dsa_context", "-b", "1", "-s", "1024", "--num-heads", "128"],
    ["verify"],
])
def test_home_that_is_a_file(argv, a_file, capsys):
    err = _one_line_error(capsys, [*argv, "--home", str(a_file)])
    assert f"--home {a_file} is a file, not a warehouse folder" in err


def test_perfwh_home_env_that_is_a_file(a_file, capsys, monkeypatch):
    monkeypatch.setenv("PERFWH_HOME", str(a_file))
    assert "$PERFWH_HOME" in _one_line_error(capsys, ["tables"])


@pytest.fixture
def warehouse(raw_dir, home):
    write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(isl=s) for s in (1024, 2048, 4096)])
    ingest_paths([raw_dir], home)
    from estimator.derived.store import DerivedStore

    DerivedStore(home).refresh()  # built here: the queries below then print only their own error
    return home


@pytest.mark.parametrize("content, says", [
    (b"", "is empty"),
    (b"batch_size,isl,num_heads\n", "has a header but no rows"),
    (bytes(range(256)) * 4, "is not a readable CSV"),
    (b"foo,bar\n1,2\n", "needs columns batch_size"),
    (b"batch_size,isl,num_heads\nx,1024,128\n", "must hold integers"),
])
def test_bad_points_file(content, says, warehouse, tmp_path, capsys):
    points = tmp_path / "points.csv"
    points.write_bytes(content)
    err = _one_line_error(capsys, ["query", "dsa_context", "--home", str(warehouse), "--points", str(points)])
    assert says in err


def test_points_file_missing_or_a_folder(warehouse, tmp_path, capsys):
    assert "does not exist" in _one_line_error(
        capsys, ["query", "dsa_context", "--home", str(warehouse), "--points", str(tmp_path / "none.csv")])
    assert "is a folder" in _one_line_error(
        capsys, ["query", "dsa_context", "--home", str(warehouse), "--points", str(tmp_path)])


def test_ingest_of_nothing_says_so(tmp_path, home, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_logs = tmp_path / "docs"
    no_logs.mkdir()
    (no_logs / "notes.md").write_text("hello\n")
    for folder in (empty, no_logs):
        assert main(["ingest", str(folder), "--home", str(home)]) == 1
        err = capsys.readouterr().err
        assert f"warning: no raw logs found in {folder}" in err and "Traceback" not in err


def test_ingest_of_garbage_warns_and_fails(tmp_path, home, capsys):
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(os.urandom(2000).replace(b"\n", b"") + b"\n" + os.urandom(500))
    assert main(["ingest", str(garbage), "--home", str(home)]) == 1
    err = capsys.readouterr().err
    assert f"warning: {garbage}: no row accepted" in err and "Traceback" not in err


def test_unrecognised_header_is_named(raw_dir, home):
    f = raw_dir / "dsa_context_module_perf.txt"
    f.write_text("foo,bar,baz\n1,2,3\n")
    ingest_paths([f], home)
    reasons = sql("select source_line, reason from quarantine order by source_line", home).rows()
    assert reasons[0][0] == 1 and reasons[0][1].startswith("unrecognised header")
    assert reasons[1] == (2, "no header line before this row")


def test_a_data_row_before_the_header_is_not_called_a_header(raw_dir, home):
    f = raw_dir / "dsa_context_module_perf.txt"
    f.write_text(dsa_context_row() + "\n" + HEADER + "\n" + dsa_context_row() + "\n")
    ingest_paths([f], home)
    assert sql("select reason from quarantine", home).rows() == [("no header line before this row",)]


def test_materialize_of_an_empty_landing_or_garbage(tmp_path, capsys):
    empty = tmp_path / "landing"
    empty.mkdir()
    assert main(["materialize", "--landing", str(empty), "--home", str(tmp_path / "wh1")]) == 1
    captured = capsys.readouterr()
    assert "warning: no raw logs in the landing folder" in captured.err
    assert "Traceback" not in captured.err + captured.out
    (empty / "dsa_context_module_perf.txt").write_bytes(b"\xff\xfe\x00garbage\n" * 5)
    assert main(["materialize", "--landing", str(empty), "--home", str(tmp_path / "wh2")]) == 1
    captured = capsys.readouterr()
    assert "warning: no accepted measurements" in captured.err
    assert "derived tables not built" in captured.out
    assert "Traceback" not in captured.err + captured.out


def test_materialize_landing_is_a_file(a_file, tmp_path, capsys):
    assert main(["materialize", "--landing", str(a_file), "--home", str(tmp_path / "wh")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"landing: {a_file}", f"perfwh materialize: error: landing folder {a_file} is a file, not a folder"]


@pytest.mark.parametrize("make", [lambda p: p, lambda p: p.mkdir() or p], ids=["absent", "empty-folder"])
def test_verify_of_no_warehouse_is_an_error_not_a_clean_bill(make, tmp_path, capsys):
    """`verify` of a mistyped home used to print "0 bad data files" and exit 0."""
    home = make(tmp_path / "typo")
    err = _one_line_error(capsys, ["verify", "--home", str(home)])
    assert f"no warehouse at {home}: nothing to verify" in err


@pytest.mark.parametrize("content, says", [
    ("root:x:0:0:root:/root:/bin/bash\n", "is not a collector spec: it needs a `shapes:` list"),
    ("shapes: [[dsa_context, 128]]\n", "is not a collector spec: it needs a `shapes:` list"),
    ("shapes: [unclosed\n", "is not a YAML collector spec"),
    ("sm_count: 132\nhbm_bandwidth_tbs: 3.35\n", "is not a collector spec: it needs a `shapes:` list"),  # a GPU spec
    ("", "is not a collector spec: it needs a `shapes:` list"),
    ("ops:\n  dsa_context: {num_heads: [128]}\n", "is a grid spec (`ops:`): only a spec's explicit `shapes:` are "
     "excluded, so it would exclude nothing"),
])
def test_plan_exclude_that_is_not_a_spec(content, says, tmp_path, capsys):
    """A non-spec --exclude file died in spec_keys with AttributeError/IndexError tracebacks."""
    spec = tmp_path / "not-a-spec.yaml"
    spec.write_text(content)
    err = _one_line_error(capsys, ["plan", "--system", "h100_sxm", "--exclude", str(spec),
                                   "--home", str(tmp_path / "wh"), "--out", str(tmp_path / "plan.yaml")])
    assert f"--exclude {spec} {says}" in err


def test_plan_exclude_of_a_plan_with_no_shapes_excludes_nothing(tmp_path):
    """`perfwh plan` writes a bare `shapes:` when nothing is worth measuring; as --exclude that plan was
    refused as 'not a collector spec'."""
    from perfwh.plan import spec_keys, spec_yaml

    empty = tmp_path / "empty-plan.yaml"
    empty.write_text(spec_yaml(pl.DataFrame(), "# perfwh plan: 0 shapes"))
    assert spec_keys(empty) == set()
    one = tmp_path / "plan.yaml"
    one.write_text("shapes:\n  - [mla_generation, 16, fp8_block, bfloat16, 3, 1, 1024]\n")
    assert spec_keys(one) == {("mla_generation", 16, "fp8_block", "bfloat16", 3, 1, 1024)}


def test_ingest_of_an_empty_path_does_not_ingest_the_working_folder(tmp_path, home, capsys, monkeypatch):
    """`perfwh ingest ''` read Path('') as '.', and ingested whatever logs the working folder held."""
    write_log(tmp_path / "cwd" / "dsa_context_module_perf.txt", [dsa_context_row()])
    monkeypatch.chdir(tmp_path / "cwd")
    err = _one_line_error(capsys, ["ingest", "", "--home", str(home)])
    assert "empty path '': give a file or folder ('.' for the current folder)" in err
    from warehouse.tables import Store

    assert not Store(home).exists()  # no ledger: nothing was ingested


def test_ingest_of_a_missing_path_blames_the_path_not_the_warehouse(tmp_path, home, capsys):
    missing = tmp_path / "missing.txt"
    err = _one_line_error(capsys, ["ingest", str(missing), "--home", str(home)])
    assert err == f"perfwh ingest: error: no such file or folder: {missing}\n"


@pytest.mark.parametrize("flag", ["--plot", "--errors-out"])
def test_accuracy_outputs_are_checked_before_the_run(flag, tmp_path, capsys):
    """`accuracy --plot /tmp` ran the whole cross-validation, then matplotlib saved /tmp.png."""
    folder = tmp_path / "out"
    folder.mkdir()
    no_home = str(tmp_path / "wh")  # checked first: no warehouse is needed to refuse the path
    err = _one_line_error(capsys, ["accuracy", flag, str(folder), "--home", no_home])
    assert f"{flag} {folder} is a folder; give the file to write" in err
    assert not (tmp_path / "out.png").exists()
    err = _one_line_error(capsys, ["accuracy", flag, str(tmp_path / "none" / "x"), "--home", no_home])
    assert f"folder {tmp_path / 'none'} does not exist" in err


def test_query_out_without_points_is_refused(tmp_path, capsys):
    """`query ... --out F` without --points printed the answer and never wrote F."""
    out = tmp_path / "answer.csv"
    err = _one_line_error(capsys, ["query", "dsa_context", "-b", "1", "-s", "1024", "--num-heads", "128",
                                   "--out", str(out), "--home", str(tmp_path / "wh")])
    assert f"--out {out} applies with --points only" in err


def test_query_points_out_in_a_missing_folder_is_refused_before_the_database(tmp_path, capsys):
    """`query --points P --out /missing/a.csv` loaded the database (maybe rebuilding derived tables),
    estimated every point, then failed with 'No such file or directory (os error 2)'."""
    points = tmp_path / "points.csv"
    points.write_text("batch_size,isl,num_heads\n1,1024,128\n")
    out = tmp_path / "missing" / "answer.csv"
    # no warehouse at --home: the output check comes first, so it is what the one line names
    err = _one_line_error(capsys, ["query", "dsa_context", "--points", str(points), "--out", str(out),
                                   "--home", str(tmp_path / "wh")])
    assert err == f"perfwh query: error: --out {out}: folder {out.parent} does not exist\n"


def test_sql_negative_max_rows_is_refused(warehouse, capsys):
    """--max-rows -1 printed the table with a '(1 rows; showing -1)' footer."""
    err = _one_line_error(capsys, ["sql", "select 1", "--max-rows", "-1", "--home", str(warehouse)])
    assert "--max-rows must be >= 0, got -1" in err


@pytest.mark.parametrize("argv", [
    ["query", "dsa_context", "-b", "1", "-s", "1024", "--num-heads", "128", "--home", ""],
    ["sql", "select 1", "--home", " "],
    ["materialize", "--landing", ""],
])
def test_an_empty_home_or_landing_is_not_the_default(argv, tmp_path, capsys, monkeypatch):
    """`--home "$WH"` with WH unset answered from $PERFWH_HOME (another warehouse) without a word."""
    monkeypatch.setenv("PERFWH_HOME", str(tmp_path / "other"))
    flag = argv[argv.index("") - 1] if "" in argv else "--home"
    err = _one_line_error(capsys, argv)
    assert f"{flag} is empty: give a folder, or leave the option out for the default" in err


def test_ingest_of_a_fifo_or_device_is_an_error_not_an_unreadable_folder(tmp_path, home, capsys):
    """`perfwh ingest /dev/null` (or a FIFO) exited 0 saying 'unreadable folder (Not a directory)'."""
    fifo = tmp_path / "dsa_context_module_perf.txt"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/null"):
        err = _one_line_error(capsys, ["ingest", str(path), "--home", str(home)])
        assert f"{path}: not a regular file or folder" in err


def test_plan_out_in_a_missing_folder_is_refused_first(tmp_path, capsys):
    """plan --out /missing/plan.yaml planned first, then failed with a raw '[Errno 2] ...'."""
    out = tmp_path / "missing" / "plan.yaml"
    err = _one_line_error(capsys, ["plan", "--system", "h100_sxm", "--out", str(out), "--home", str(tmp_path / "wh")])
    assert f"--out {out}: folder {out.parent} does not exist" in err


@pytest.mark.parametrize("argv, says", [
    (["accuracy", "--version", "9.9"], "unknown version '9.9' for h200_sxm/trtllm; valid: 1.0"),
    (["accuracy", "--tables", "dsa_prefill"], "unknown op 'dsa_prefill'; valid: "),
    (["accuracy", "--tables", "mla_generation"], "no points for mla_generation in h200_sxm/trtllm 1.0; ops with "
                                                 "points: dsa_context"),
    (["accuracy", "--backend", "TensorRT-LLM", "--version", "9.9"], "unknown version '9.9' for h200_sxm/trtllm"),
])
def test_accuracy_arguments_are_named_before_the_run(argv, says, warehouse, capsys):
    """--version 9.9 and --tables of an op without points said 'no points for tables ...'; a typo in
    --tables gave no list of ops; --seed -1 died in numpy ('expected non-negative integer');
    --backend tensorrt-llm (an alias query takes) found no data."""
    assert main([*argv, "--home", str(warehouse)]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_accuracy_seed_is_a_non_negative_integer(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["accuracy", "--seed", "-1", "--home", str(tmp_path)])
    assert info.value.code == 2
    assert "argument --seed: expected an integer >= 0, got '-1'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["accuracy"], ["accuracy", "--transfer", "h100_sxm"],
                                  ["support", "--model-path", "deepseek-ai/DeepSeek-V3.2"]])
def test_a_missing_warehouse_is_named(argv, tmp_path, capsys, monkeypatch):
    """accuracy said 'no data for h200_sxm/trtllm; have: nothing' and support 'no warehouse at
    $PERFWH_HOME / default' for a mistyped $PERFWH_HOME."""
    missing = tmp_path / "typo"
    monkeypatch.setenv("PERFWH_HOME", str(missing))
    err = _one_line_error(capsys, argv)
    assert f"no warehouse at {missing}: run `perfwh ingest PATH` first" in err


def test_a_warehouse_with_no_measurements_says_so(tmp_path, capsys):
    """An empty home said 'no data for backend 'trtllm' in the warehouse; backends with data: ' (no list)."""
    empty = tmp_path / "landing"
    empty.mkdir()
    home = tmp_path / "wh"
    assert main(["ingest", str(empty), "--home", str(home)]) == 1  # 'no raw logs found', but the home exists
    capsys.readouterr()
    err = _one_line_error(capsys, ["query", "dsa_context", "-b", "1", "-s", "1024", "--num-heads", "128",
                                   "--home", str(home)])
    assert err == ("perfwh query: error: no data for backend 'trtllm': the warehouse holds no measurements yet "
                   "(`perfwh ingest PATH`)\n")


def test_sql_on_a_derived_view_not_built_yet_says_why(warehouse, tmp_path, capsys):
    """On a home that was only ingested into, `select * from build_errors` (a documented view) gave
    DuckDB's bare 'Table with name build_errors does not exist!'."""
    home = tmp_path / "ingested-only"
    ingest_paths([warehouse.parent / "raw"], home)
    err = _one_line_error(capsys, ["sql", "select * from build_errors", "--home", str(home)])
    assert err.endswith("Table with name build_errors does not exist! (build_errors is a derived table, not built "
                        "in this warehouse yet: `perfwh materialize` builds the derived tables)\n")
    err = _one_line_error(capsys, ["sql", "select * from no_such_view", "--home", str(home)])
    assert err.endswith("Table with name no_such_view does not exist!\n")


def test_a_warehouse_inside_the_ingested_folder_is_not_read_as_raw_logs(raw_dir, tmp_path, capsys):
    """`perfwh ingest DIR --home DIR/wh` twice read the warehouse's own measurement Parquet files as
    published tables: every measurement counted twice (and the ledger's files failed as bad tables)."""
    write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(isl=s) for s in (1024, 2048, 4096)])
    root = tmp_path / "raw"
    home = root / "wh"
    assert main(["ingest", str(root), "--home", str(home)]) == 0
    main(["ingest", str(root), "--home", str(home)])
    err = capsys.readouterr().err
    assert f"inside the warehouse home {home}: its own data files are not raw logs" in err
    assert sql("select count(*) from measurements", home).item() == 3
    err = _one_line_error(capsys, ["materialize", "--landing", str(root), "--home", str(root / "wh2")])
    assert f"the warehouse {root / 'wh2'} lies inside the landing folder {root}" in err
    assert not (root / "wh2").exists()
