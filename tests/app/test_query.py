"""perfwh query / accuracy end to end on a small warehouse built by the real ingest."""

import json
import re

import polars as pl
import pytest

from perfwh.cli import main

from tests.estimator.conftest import synthetic_points, write_collector_csv


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from warehouse.ingest import ingest_paths

    root = tmp_path_factory.mktemp("wh")
    raw = root / "raw" / "h200_sxm" / "trtllm" / "1.0"
    pts = synthetic_points(gemm_types=("bfloat16", "fp8_block"), drop={("dsa_context", 64, 4, 256)})
    files = write_collector_csv(pts, raw)
    report = ingest_paths(files, root / "home")
    assert report.rows_quarantined == 0
    return root / "home"


def test_query_prints_latency_source_and_neighbours(home, capsys):
    rc = main(["query", "dsa_context", "--home", str(home), "-b", "3", "-s", "100", "--num-heads", "48"])
    out = capsys.readouterr().out
    assert rc == 0
    assert re.search(r"ms, 80% in [0-9.]+-[0-9.]+ ms, interpolated \(expected error [0-9.]+%\)", out)
    assert "neighbour heads=32" in out


def test_query_json_and_stale_grid_rebuild(home, capsys):
    rc = main(["query", "mla_generation", "--home", str(home), "-b", "2", "-s", "64", "--num-heads", "64",
               "--gemm-type", "fp8_block", "--json"])
    first = json.loads(capsys.readouterr().out)
    assert rc == 0 and first["source"] == "measured" and first["slice"]["gemm_type"] == "fp8_block"
    from estimator.derived.store import DerivedStore

    grids = DerivedStore(home).read_all("grids")
    assert grids.height > 0
    assert set(grids["source"].unique()) <= {"measured", "interpolated", "extrapolated", "transferred"}


def test_grids_rebuilt_when_measurements_change(home, tmp_path, capsys):
    from warehouse.ingest import ingest_paths

    from estimator.lookup.database import PerfDatabase
    from estimator.derived.partition import INPUTS_KEY
    from estimator.derived.store import DerivedStore

    PerfDatabase(home=home)
    store = DerivedStore(home)
    key = ("h200_sxm", "trtllm", "1.0")
    grids_file = store.root / "h200_sxm" / "trtllm" / "1.0" / "grids.parquet"
    before = pl.read_parquet_metadata(grids_file)[INPUTS_KEY]
    capsys.readouterr()
    extra = synthetic_points(ops=("mla_context",), kv_dtypes=("fp8",))
    ingest_paths(write_collector_csv(extra, tmp_path / "h200_sxm" / "trtllm" / "1.0"), home)
    db = PerfDatabase(home=home)
    assert "rebuilding derived tables of 1 of 1 partition(s)" in capsys.readouterr().err  # says so
    after = pl.read_parquet_metadata(grids_file)[INPUTS_KEY]
    assert after != before and DerivedStore(home).stale() == [] and key in store.partitions()
    assert db.estimate("mla_context", batch_size=2, s=64, num_heads=64, kv_cache_dtype="fp8").source.value == "measured"


def test_batch_csv_mode_keeps_extra_columns(home, tmp_path):
    src = tmp_path / "in.csv"
    pl.DataFrame({"architecture": ["DeepseekV32ForCausalLM"] * 3, "gemm_type": ["bfloat16", "fp8_block", "bfloat16"],
                  "kv_cache_dtype": ["bfloat16"] * 3, "num_heads": [32, 64, 128], "batch_size": [2, 3, 16],
                  "isl": [1, 1, 1], "step": [64, 100, 3000], "note": ["a", "b", "c"]}).write_csv(src)
    out = tmp_path / "out.csv"
    rc = main(["query", "dsa_generation", "--home", str(home), "--points", str(src), "--out", str(out)])
    assert rc == 0
    res = pl.read_csv(out, schema_overrides={"version": pl.String})
    assert res.columns == ["architecture", "gemm_type", "kv_cache_dtype", "num_heads", "batch_size", "isl", "step",
                           "note", "latency_ms", "source", "sol_ms", "version", "low_ms", "high_ms"]
    assert res["source"].to_list() == ["measured", "interpolated", "extrapolated"]
    assert res["version"].to_list() == ["1.0"] * 3 and (res["sol_ms"] > 0).all()
    assert (res["latency_ms"] > 0).all()
    assert ((res["low_ms"] < res["latency_ms"]) & (res["latency_ms"] < res["high_ms"])).all()


@pytest.mark.parametrize("argv, message", [
    (["query", "gqa_context", "-b", "1", "-s", "1", "--num-heads", "1"], "valid: context_dsa"),
    (["query", "dsa_context", "--system", "mi300", "-b", "1", "-s", "1", "--num-heads", "1"], "unknown system 'mi300'; valid: a100_pcie"),
    (["query", "dsa_context", "--backend", "onnx", "-b", "1", "-s", "1", "--num-heads", "1"], "valid: perfwh"),
    (["query", "dsa_context", "--version", "0.1", "-b", "1", "-s", "1", "--num-heads", "1"], "valid: 1.0"),
    (["query", "dsa_context", "-b", "0", "-s", "1", "--num-heads", "1"], "batch_size"),
    (["query", "dsa_context", "-s", "1", "--num-heads", "1"], "missing -b/--batch-size"),
    (["query", "dsa_context", "-b", "1", "-s", "1", "--num-heads", "1", "--kv-cache-dtype", "int4"], "fp8"),
])
def test_query_bad_input_exits_2_naming_valid_values(home, capsys, argv, message):
    assert main(argv + ["--home", str(home)]) == 2
    assert message in capsys.readouterr().err


def test_accuracy_command_prints_table(home, capsys, tmp_path):
    rc = main(["accuracy", "--home", str(home), "--backend", "trtllm", "--plot", str(tmp_path / "acc.png")])
    assert (tmp_path / "acc.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert rc == 0
    assert "| dsa_context | R | interp |" in out and "| mla_generation | SOL | sol |" in out
    assert "nearest" in out
    assert "80% interval coverage on held-out points" in out and "| dsa_generation | interpolated |" in out


def test_accuracy_json_carries_errors_and_coverage(home, capsys):
    assert main(["accuracy", "--home", str(home), "--backend", "trtllm", "--no-baseline", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == {"errors", "coverage"}
    cov = {(r["op"], r["provenance"]): r for r in got["coverage"]}
    assert cov[("dsa_generation", "interpolated")]["n"] > 0
    assert all(0 <= r["coverage_pct"] <= 100 for r in got["coverage"])


def test_store_rebuild_and_grid_summary(home):
    from estimator.grids.schema import grid_summary
    from estimator.derived.store import DerivedStore

    store = DerivedStore(home)
    key = ("h200_sxm", "trtllm", "1.0")
    tables = store.build(key, store.partitions()[key])
    cal, grids = tables["sol_calibration"], tables["grids"]
    assert store.read(key, "grids").equals(grids) and tables["build_errors"].height == 0
    summary = grid_summary(grids)
    assert summary["cells"] == grids.height and sum(summary["cells_by_source"].values()) == grids.height
    assert summary["cells_by_source"]["measured"] > 0 and summary["share_by_source"]["sol"] == 0.0
    assert set(cal["param"].unique()) == {"eff_compute", "eff_bandwidth", "overhead_ms", "combine_p"}


def test_json_has_null_not_nan_where_there_is_no_interval(home, capsys, monkeypatch):
    """An answer without an interval model has NaN bounds; `--json` printed them as NaN, which strict JSON
    parsers (jq, JSON.parse) refuse."""
    import json
    import math

    from estimator.lookup import intervals

    monkeypatch.setattr(intervals.IntervalLookup, "bounds", lambda self, *a: (math.nan, math.nan, math.nan))
    assert main(["query", "dsa_context", "--home", str(home), "-b", "2", "-s", "64", "--num-heads", "32",
                 "--json"]) == 0

    def refuse(name):
        raise AssertionError(f"{name} in the JSON")

    out = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert out["low_ms"] is None and out["high_ms"] is None and out["latency_ms"] > 0


def test_transfer_without_its_table_claims_no_interval(home, tmp_path, capsys):
    """h100_sxm has no data here, so h200_sxm's answers it; the warehouse has no transfer_intervals
    table (`perfwh materialize` never builds it). The answer printed h200_sxm's own interval (A30 from
    H200 read '80% in' a band 0.6% wide): now none, and the reason with the command that fits the table."""
    args = ["query", "dsa_context", "--home", str(home), "--system", "h100_sxm", "-b", "3", "-s", "100",
            "--num-heads", "48"]
    assert main(args) == 0
    out = capsys.readouterr().out
    first, note = out.splitlines()[:2]
    assert re.fullmatch(r"dsa_context on h100_sxm / trtllm 1\.0: [0-9.]+ ms, no 80% interval \(transferred\)", first)
    assert note.startswith("  no 80% interval: h100_sxm is answered from h200_sxm's data and the warehouse has no "
                           "transfer_intervals table; the source's own interval would claim h200_sxm's native")
    assert note.endswith("Fit the table with `perfwh accuracy --fit-transfer-intervals --home WAREHOUSE`")
    assert main([*args, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["low_ms"] is None and got["high_ms"] is None and got["expected_error_pct"] is None
    assert got["interval_note"] == note.strip() and got["latency_ms"] > 0
    src = tmp_path / "pts.csv"
    pl.DataFrame({"batch_size": [3, 8], "isl": [100, 1000], "num_heads": [48, 128]}).write_csv(src)
    assert main(["query", "dsa_context", "--home", str(home), "--system", "h100_sxm", "--points", str(src)]) == 0
    cap = capsys.readouterr()
    rows = pl.read_csv(cap.out.encode())
    assert rows["low_ms"].is_nan().all() and rows["high_ms"].is_nan().all() and rows["latency_ms"].min() > 0
    assert cap.err.strip() == note.strip()
    # the native answer keeps its interval and has no note
    assert main(["query", "dsa_context", "--home", str(home), "-b", "3", "-s", "100", "--num-heads", "48",
                 "--json"]) == 0
    native = json.loads(capsys.readouterr().out)
    assert native["low_ms"] < native["latency_ms"] < native["high_ms"] and native["interval_note"] is None


def test_a_collector_log_as_points_answers_and_keeps_its_version(home, tmp_path):
    """A collector log has a `version` column (the collector's): estimate_many refuses a frame that has
    one, which made every collector log fail as --points; the CLI keeps it as collector_version."""
    pts = synthetic_points(ops=("dsa_generation",)).head(3)
    raw = write_collector_csv(pts, tmp_path / "raw")[0]
    out = tmp_path / "out.csv"
    rc = main(["query", "dsa_generation", "--home", str(home), "--points", str(raw), "--out", str(out)])
    assert rc == 0
    res = pl.read_csv(out, schema_overrides={"version": pl.String, "collector_version": pl.String})
    assert res.columns[-6:] == ["latency_ms", "source", "sol_ms", "version", "low_ms", "high_ms"]
    assert "collector_version" in res.columns and "latency" in res.columns
    assert res["source"].to_list() == ["measured"] * 3


def test_accuracy_leaves_out_slices_the_estimator_does_not_model(tmp_path, capsys):
    """A B200-like warehouse that also holds nvfp4 GEMM slices: the run reports on the others
    (it failed with `error: nvfp4`) and says on stderr what it left out."""
    from warehouse.ingest import ingest_paths

    pts = synthetic_points(ops=("dsa_generation",))
    fp4 = pts.with_columns(pl.lit("nvfp4").alias("gemm_type"))
    files = write_collector_csv(pl.concat([pts, fp4]), tmp_path / "raw" / "h200_sxm" / "trtllm" / "1.0")
    ingest_paths(files, tmp_path / "home")
    rc = main(["accuracy", "--home", str(tmp_path / "home"), "--backend", "trtllm", "--tables", "dsa_generation",
               "--no-baseline", "--no-coverage", "--json"])
    out = capsys.readouterr()
    assert rc == 0
    errors = json.loads(out.out)["errors"]
    assert {r["class"] for r in errors} >= {"R", "SOL"} and all(r["n"] > 0 for r in errors)
    assert f"{fp4.height} points of slices the estimator does not model left out" in out.err
    assert "nvfp4/bfloat16" in out.err


def test_fit_transfer_intervals_gives_transferred_answers_an_interval(tmp_path, capsys):
    """`perfwh accuracy --fit-transfer-intervals` runs the protocol on every pair of the warehouse and
    writes the tables; a transferred answer then carries an 80% interval and no note (it had none)."""
    from warehouse.ingest import ingest_paths

    pts = synthetic_points(ops=("dsa_context", "mla_generation"))
    files = write_collector_csv(pts, tmp_path / "raw" / "h200_sxm" / "trtllm" / "1.0")
    files += write_collector_csv(pts.with_columns(pl.col("latency_ms") * 1.08),
                                 tmp_path / "raw" / "h100_sxm" / "trtllm" / "1.0", device="NVIDIA H100 80GB HBM3")
    home = tmp_path / "home"
    ingest_paths(files, home)
    query = ["query", "mla_generation", "--home", str(home), "--system", "h100_sxm", "--from", "h200_sxm",
             "-b", "3", "-s", "3000", "--num-heads", "48", "--json"]
    assert main(query) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["low_ms"] is None and "fit-transfer-intervals" in before["interval_note"]
    assert main(["accuracy", "--home", str(home), "--fit-transfer-intervals", "--json"]) == 2
    assert "--json do not apply with --fit-transfer-intervals" in capsys.readouterr().err
    assert main(["accuracy", "--home", str(home), "--fit-transfer-intervals"]) == 0
    cap = capsys.readouterr()
    assert "fitting transfer intervals on 2 ordered pair(s) of systems" in cap.err
    assert "[1/2] h100_sxm <- h200_sxm" in cap.err and "[2/2] h200_sxm <- h100_sxm" in cap.err
    assert all(t in cap.out for t in ("transfer_intervals", "transfer_overheads", "transfer_terms"))
    assert main(query) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["interval_note"] is None and after["latency_ms"] == before["latency_ms"]
    assert after["low_ms"] <= after["latency_ms"] <= after["high_ms"] and after["low_ms"] < after["high_ms"]


def test_fit_transfer_intervals_needs_two_systems(home, capsys):
    assert main(["accuracy", "--home", str(home), "--fit-transfer-intervals"]) == 2
    assert "a transfer table needs at least two such systems" in capsys.readouterr().err
