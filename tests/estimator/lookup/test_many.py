"""Batch mode as strict as the scalar path: estimate_many and `perfwh query --points` (docs/limits.md)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from estimator.lookup.limits import OutOfRangeError

from ..conftest import synthetic_points, write_collector_csv

ROOT = Path(__file__).resolve().parents[3]
BASE = {"batch_size": [1, 2], "isl": [64, 256], "num_heads": [32, 32]}


@pytest.mark.parametrize("extra, message", [
    ({"gemm_type": ["bfloat16", None]}, "row 1: column gemm_type is empty"),
    ({"kv_cache_dtype": ["", "bfloat16"]}, "row 0: column kv_cache_dtype is empty"),
    ({"attn_dtype": ["bfloat16", " "]}, "row 1: column attn_dtype is empty"),
    ({"gemm_type": ["bfloat16", "fp9"]}, "row 1: unknown GEMMQuantMode 'fp9'"),
    ({"index_topk": [2048, None]}, "row 1: column index_topk is empty"),
    ({"index_topk": [2048.0, float("nan")]}, "row 1: column index_topk must hold positive integers; it has nan"),
    ({"index_topk": [2048, -5]}, "row 1: column index_topk must hold positive integers; it has -5"),
    ({"index_topk": [0, 2048]}, "row 0: column index_topk must hold positive integers; it has 0"),
    ({"index_topk": [1.5, 2048.0]}, "row 0: column index_topk must hold positive integers; it has 1.5"),
    ({"index_topk": [True, True]}, "column index_topk must hold integers; it has type Boolean"),
    ({"index_n_heads": [64, -64]}, "row 1: column index_n_heads must hold positive integers; it has -64"),
    ({"index_n_heads": [0, 64]}, "row 0: column index_n_heads must hold positive integers; it has 0"),
    ({"num_heads": [32, None]}, "row 1: column num_heads is empty"),
])
def test_every_column_is_validated_and_nulls_name_row_and_column(db, extra, message):
    with pytest.raises(ValueError) as info:
        db.estimate_many("dsa_context", pl.DataFrame({**BASE, **extra}))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs", [dict(index_topk=float("nan")), dict(index_topk=-5), dict(index_topk=0),
                                    dict(index_topk=1.5), dict(index_topk=True), dict(index_n_heads=-64),
                                    dict(index_n_heads=0)])
def test_bad_keyword_options_are_rejected_like_the_scalar_path(db, kwargs):
    name, value = next(iter(kwargs.items()))
    with pytest.raises(ValueError, match=f"{name} must be a positive integer, got {value!r}"):
        db.estimate_many("dsa_context", pl.DataFrame(BASE), **kwargs)
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        db.estimate("dsa_context", batch_size=1, s=64, num_heads=32, **kwargs)


def test_no_points_give_no_rows_with_every_output_column(db):
    """An empty frame died in numpy ('zero-size array to reduction operation minimum')."""
    empty = pl.DataFrame(schema={"batch_size": pl.Int64, "isl": pl.Int64, "num_heads": pl.Int64})
    out = db.estimate_many("dsa_context", empty)
    assert out.height == 0
    assert out.columns == db.estimate_many("dsa_context", pl.DataFrame(BASE)).columns


@pytest.mark.parametrize("frame, kind", [
    ([{"batch_size": 1, "isl": 64, "num_heads": 32}], "list"),
    (BASE, "dict"),
    (pl.DataFrame(BASE).lazy(), r"LazyFrame \(collect\(\) it first\)"),
])
def test_points_that_are_not_a_dataframe_are_a_type_error(db, frame, kind):
    """A list, dict or LazyFrame failed with AttributeError on `.columns`/`.height`."""
    with pytest.raises(TypeError, match=f"takes a polars DataFrame of points, got {kind}"):
        db.estimate_many("dsa_context", frame)


def test_refusals_name_the_row(db):
    with pytest.raises(OutOfRangeError, match="row 1: isl=170000 exceeds the context length 163840"):
        db.estimate_many("dsa_context", pl.DataFrame({**BASE, "isl": [64, 170000]}))
    with pytest.raises(OutOfRangeError, match="row 0: column batch_size has 4294967296, above the largest"):
        db.estimate_many("dsa_context", pl.DataFrame({**BASE, "batch_size": [2**32, 1]}))


def test_missing_columns_take_documented_defaults_and_output_has_sol_ms_and_version(db):
    plain = db.estimate_many("dsa_context", pl.DataFrame(BASE))
    explicit = db.estimate_many("dsa_context", pl.DataFrame({**BASE, "gemm_type": ["bfloat16"] * 2,
                                                             "kv_cache_dtype": ["bfloat16"] * 2, "prefix": [0, 0]}))
    assert plain.columns == list(BASE) + ["latency_ms", "source", "sol_ms", "version", "low_ms", "high_ms"]
    assert plain["latency_ms"].to_list() == explicit["latency_ms"].to_list()
    est = db.estimate("dsa_context", batch_size=2, s=256, num_heads=32)
    assert plain["sol_ms"][1] == pytest.approx(est.sol_ms, rel=1e-5)
    assert plain["version"].cast(pl.String).to_list() == [est.version] * 2


# ---- the command line, run as a user runs it ------------------------------------------------

@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from warehouse.ingest import ingest_paths

    root = tmp_path_factory.mktemp("batch")
    files = write_collector_csv(synthetic_points(ops=("dsa_context",)), root / "raw" / "h200_sxm" / "trtllm" / "1.0")
    ingest_paths(files, root / "home")
    from estimator.derived.store import DerivedStore

    DerivedStore(root / "home").refresh()  # built here: the queries below then print only their own error
    return root / "home"


def perfwh(home, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "perfwh.cli", "query", "dsa_context", "--home", str(home), *args],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("batch_size,isl,num_heads\n", "has a header but no rows"),
    ("batch_size,isl,num_heads\n1,64,32\n2,64,32,9\n", "is not a readable CSV"),
    ("batch_size,isl,num_heads\n1,64,32\n2,64\n", "line 3: column num_heads is empty"),
    ('batch_size,isl,num_heads\n1,"64,32\n2,64,32\n', "is not a readable CSV"),
    ("batch_size,isl,num_heads,gemm_type\n1,64,32,bfloat16\n2,64,32,\n", "line 3: column gemm_type is empty"),
    ("batch_size,isl,num_heads,index_topk\n1,64,32,-5\n", "line 2: column index_topk must hold positive integers"),
])
def test_bad_points_files_give_one_line_errors(home, tmp_path, content, message):
    src = tmp_path / "in.csv"
    src.write_text(content)
    r = perfwh(home, "--points", str(src))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and message in r.stderr and r.stderr.startswith("perfwh query: error: points file")


def test_folders_as_points_or_out_give_one_line_errors(home, tmp_path):
    r = perfwh(home, "--points", str(tmp_path))
    assert r.returncode == 2 and r.stderr.strip().endswith("is a folder; give a CSV file") and "Traceback" not in r.stderr
    src = tmp_path / "in.csv"
    src.write_text("batch_size,isl,num_heads\n1,64,32\n")
    r = perfwh(home, "--points", str(src), "--out", str(tmp_path))
    assert r.returncode == 2 and r.stderr.strip().endswith("is a folder; give a file path") and "Traceback" not in r.stderr


def test_json_gives_json_with_the_new_columns(home, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("batch_size,isl,num_heads\n2,64,32\n2,100000,32\n")
    r = perfwh(home, "--points", str(src), "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["source"] for row in rows] == ["measured", "sol"]
    assert all(row["version"] == "1.0" and row["sol_ms"] > 0 for row in rows)
    assert rows[1]["latency_ms"] == pytest.approx(rows[1]["sol_ms"])


def test_scalar_refusal_is_one_line(home):
    r = perfwh(home, "-b", "1", "-s", "99999999999999999999999999", "--num-heads", "32")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr == ("perfwh query: error: s=99999999999999999999999999 is above the largest supported value "
                        "2147483647 (2^31-1)\n")


@pytest.mark.parametrize("extra, message", [
    ({"latency_ms": [1.0, 2.0]}, "writes column(s) latency_ms, which the frame already has"),
    ({"source": ["a", "b"], "version": ["x", "y"]}, "writes column(s) source, version, which the frame"),
    ({"seq_len": [100, 200]}, "got both isl and seq_len columns; keep one"),
])
def test_a_frame_whose_columns_would_be_overwritten_or_ignored_is_refused(db, extra, message):
    """A measured latency_ms was replaced by the estimate, and seq_len beside isl was ignored, silently."""
    with pytest.raises(ValueError) as info:
        db.estimate_many("dsa_context", pl.DataFrame({**BASE, **extra}))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_text_options_must_be_text(db):
    """kernel_source=3 was answered (as a 'transferred' slice); a struct column died unhashable in a dict."""
    with pytest.raises(ValueError, match="column kernel_source must hold strings; it has type Struct"):
        db.estimate_many("dsa_context", pl.DataFrame({**BASE, "kernel_source": [{"a": 1}, {"a": 2}]}))
    with pytest.raises(TypeError, match="kernel_source must be a string, got int 3"):
        db.estimate_many("dsa_context", pl.DataFrame(BASE), kernel_source=3)
    with pytest.raises(TypeError, match="architecture must be a string, got int 3"):
        db.estimate("dsa_context", batch_size=1, s=64, num_heads=32, architecture=3)
    with pytest.raises(ValueError, match="unknown GEMMQuantMode ''"):  # '' was read as the default
        db.estimate_many("dsa_context", pl.DataFrame(BASE), gemm_type="")


@pytest.mark.parametrize("content, flags, message", [
    ("batch_size,isl,num_heads\n1,64,32\n", ["-b", "8"], "-b/--batch-size do(es) not apply with --points"),
    ("batch_size,isl,num_heads\n1,64,32\n", ["-s", "8", "--prefix", "0"], "-s/--seq, --prefix do(es) not apply"),
    ("batch_size,isl,num_heads\n1,64,32\n", ["--method", "nearest"], "--method nearest applies to one point only"),
    ("batch_size,isl,num_heads\n1,64,32\n", ["--num-heads", "64"], "--num-heads fills a missing num_heads column"),
    ("batch_size,isl,isl,num_heads\n1,64,5,32\n", [], "has column(s) isl more than once"),
    ("batch_size,isl,num_heads,prefix,step\n1,64,32,0,100\n", [], "has both step and prefix"),
    ("batch_size,isl,num_heads,latency_ms\n1,64,32,9.5\n", [], "writes column(s) latency_ms, which the frame"),
])
def test_points_flags_and_columns_that_would_be_ignored_are_refused(home, tmp_path, content, flags, message):
    """-b, -s, --prefix and --method nearest were ignored with --points (nearest answered interpolated), a
    duplicated column answered from its first copy, step overrode prefix, an input latency_ms was replaced."""
    src = tmp_path / "in.csv"
    src.write_text(content)
    r = perfwh(home, "--points", str(src), *flags)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and message in r.stderr


def test_num_heads_still_fills_a_missing_column(home, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("batch_size,isl\n2,64\n")
    r = perfwh(home, "--points", str(src), "--num-heads", "32", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 1 and rows[0]["source"] == "measured" and rows[0]["latency_ms"] > 0
