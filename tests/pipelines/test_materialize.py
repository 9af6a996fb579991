"""The whole asset graph on tmp dirs: fixture raw logs (one dirty), check results
and metadata; then `perfwh materialize` itself (re-run is a no-op, a changed file
is re-ingested)."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from assets.resources import WarehouseSettings
from tests.pipelines.conftest import make_dagster_home
from tests.pipelines.fixtures import BATCHES, DIRTY_ROWS, SEQS, write_dsa_generation, write_landing
from warehouse.read import sql

pytestmark = [
    pytest.mark.slow,
    # numpy warns inside the estimator's least-squares fit on tiny data sets.
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
]

CLEAN_ROWS = len(BATCHES) * len(SEQS)


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory):
    """Ingest the three fixture logs (one run over the partition range), then the derived job."""
    from pipelines.definitions import build_defs

    tmp = tmp_path_factory.mktemp("graph")
    landing = tmp / "landing"
    write_landing(landing)
    settings = WarehouseSettings(home=str(tmp / "wh"), landing=str(landing))
    defs = build_defs(settings)
    with dg.instance_for_test(temp_dir=str(make_dagster_home(tmp / "dagster_home"))) as instance:
        _, files = settings.scan()
        keys = [f.key for f in files]
        instance.add_dynamic_partitions("raw_log_file", keys)
        ingest = defs.resolve_job_def("ingest_job").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        )
        instance.add_dynamic_partitions("derived_slice", ["h200_sxm|trtllm|1.0"])
        derived = Runs([defs.resolve_job_def("derived_job").execute_in_process(instance=instance, partition_key="h200_sxm|trtllm|1.0"),
                        defs.resolve_job_def("reports_job").execute_in_process(instance=instance)])
        yield settings, keys, ingest, derived


class Runs(list):
    """The derived partition run and the reports run, read as one result."""

    success = property(lambda self: all(r.success for r in self))

    def get_asset_check_evaluations(self):
        return [e for r in self for e in r.get_asset_check_evaluations()]

    def get_asset_materialization_events(self):
        return [e for r in self for e in r.get_asset_materialization_events()]


def _checks(result) -> dict[str, tuple[bool, str, dict]]:
    return {
        e.check_name: (e.passed, e.severity.value, {k: v.value for k, v in e.metadata.items()})
        for e in result.get_asset_check_evaluations()
    }


def _metadata(result, asset: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    assert events, f"{asset} was not materialized"
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def test_runs_succeed_and_every_partition_is_materialized(graph_run):
    _, keys, ingest, derived = graph_run
    assert ingest.success and derived.success
    parts = {e.partition for e in ingest.get_asset_materialization_events() if e.asset_key.path == ["measurements"]}
    assert parts == set(keys)
    done = {e.asset_key.to_user_string() for e in derived.get_asset_materialization_events()}
    assert done == {"perf_points", "sol_calibration", "interpolation_grids", "accuracy_report", "warehouse_views"}


def test_ingest_metadata_accounts_for_every_row(graph_run):
    _, _, ingest, _ = graph_run
    meta = _metadata(ingest, "measurements")
    assert meta["files"] == 3 and meta["files_ingested"] == 3
    assert meta["rows_read"] == 3 * CLEAN_ROWS + DIRTY_ROWS
    assert meta["rows_accepted"] == 3 * CLEAN_ROWS
    assert meta["rows_quarantined"] == DIRTY_ROWS
    assert "latency: NaN" in meta["quarantine_reasons"]
    files = _metadata(ingest, "raw_log_files")
    assert files["files_seen"] == 3 and files["files_not_ingested"] == 3


def test_blocking_checks_pass_and_quarantine_share_warns(graph_run):
    _, _, ingest, derived = graph_run
    for result in (ingest, derived):  # the measurement checks run in both jobs
        checks = _checks(result)
        assert checks["ledger_balanced"][0] and checks["latency_valid"][0]
        passed, severity, meta = checks["quarantine_share"]
        assert not passed and severity == "WARN"
        assert meta["files_over_threshold"] == 1
        assert "mla_context_module_perf.txt" in meta["files"]
    checks = _checks(derived)
    assert checks["unique_keys"][0] and checks["unique_keys"][1] == "ERROR"
    assert checks["latency_monotonic"][0], checks["latency_monotonic"][2]
    assert checks["repeat_spread"][0]
    assert "accuracy_targets" in checks


def test_derived_metadata(graph_run):
    settings, _, _, derived = graph_run
    points = _metadata(derived, "perf_points")
    assert points["dagster/row_count"] == 3 * CLEAN_ROWS
    assert len(points["warehouse_fingerprint"]) == 16
    grids = _metadata(derived, "interpolation_grids")
    assert grids["dagster/row_count"] > 0 and grids["slices"] == 3
    shares = sum(v for k, v in grids.items() if k.startswith("share_"))
    assert shares == pytest.approx(1.0)
    assert grids["share_measured"] == pytest.approx(1.0)  # the fixture grids are complete
    assert grids["share_sol"] == 0.0
    assert grids["largest_grid"] == f"{len(BATCHES)} batch x {len(SEQS)} sequence values"
    calibration = _metadata(derived, "sol_calibration")
    assert calibration["fits"] == 3
    report = _metadata(derived, "accuracy_report")
    assert report["slice"] == "h200_sxm / trtllm 1.0" and "| dsa_context |" in report["report"]
    views = _metadata(derived, "warehouse_views")
    assert views["rows_measurements"] == 3 * CLEAN_ROWS
    assert views["rows_quarantine"] == DIRTY_ROWS
    tables = set(sql("select view_name from duckdb_views() where not internal", settings.home).to_series())
    assert {"raw_log_files", "sol_calibration", "grids", "accuracy_report"} <= tables


def test_monotonic_check_warns_on_a_decreasing_line(tmp_path, dagster_home):
    from pipelines.definitions import build_defs

    landing = tmp_path / "landing"
    f = write_dsa_generation(landing)
    lines = f.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",0.01"  # batch 1, kv_len 512: far below kv_len 256
    f.write_text("\n".join(lines) + "\n")
    settings = WarehouseSettings(home=str(tmp_path / "wh"), landing=str(landing))
    defs = build_defs(settings)
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        instance.add_dynamic_partitions("raw_log_file", [f.relative_to(landing).as_posix()])
        key = f.relative_to(landing).as_posix()
        assert defs.resolve_job_def("ingest_job").execute_in_process(instance=instance, partition_key=key).success
        instance.add_dynamic_partitions("derived_slice", ["h200_sxm|trtllm|1.0"])
        result = dg.materialize(
            [a for a in defs.assets if a.key.to_user_string() in ("perf_points",)] + list(defs.asset_checks),
            instance=instance,
            resources={"settings": settings},
            selection=dg.AssetSelection.assets("perf_points"),
            partition_key="h200_sxm|trtllm|1.0",
        )
    passed, severity, meta = _checks(result)["latency_monotonic"]
    assert not passed and severity == "WARN"
    assert meta["decreasing_points"] == 1
    assert "0.01" in meta["sample"]


def test_perfwh_materialize_rerun_and_change(tmp_path, landing, dagster_home, capsys):
    from pipelines.materialize import run_materialize

    home = tmp_path / "wh"
    first = run_materialize(str(home), str(landing), progress=lambda line: None)
    assert first.ok and first.derived == "rebuilt"
    assert (first.ingested.ingested, first.ingested.rows_quarantined) == (3, DIRTY_ROWS)
    again = run_materialize(str(home), str(landing), progress=lambda line: None)
    assert again.derived == "up to date" and again.ingested.ingested == 0 and again.dagster_home is None
    write_dsa_generation(landing, scale=1.1)  # same shapes, new latencies
    changed = run_materialize(str(home), str(landing), progress=lambda line: None)
    assert changed.ingested.ingested == 1 and changed.derived == "rebuilt"
    assert first.partitions_rebuilt == changed.partitions_rebuilt == [("h200_sxm", "trtllm", "1.0")]
    ledger = sql("select status, count(*) as n from ingest_ledger group by status order by status", home)
    assert dict(ledger.iter_rows()) == {"ingested": 3, "superseded": 1}


def test_materialize_of_a_copied_warehouse_points_perf_duckdb_at_the_copy(tmp_path, landing, dagster_home):
    """perf.duckdb's views name absolute paths: a copy of a home (cp -a) kept reading the original's
    files through its perf.duckdb, and a materialize with nothing new left it so."""
    import shutil

    import duckdb

    from pipelines.materialize import run_materialize

    original, copy = tmp_path / "wh", tmp_path / "copy"
    assert run_materialize(str(original), str(landing), progress=lambda line: None).ok
    shutil.copytree(original, copy, symlinks=True)
    said = []
    again = run_materialize(str(copy), str(landing), progress=said.append)
    assert again.derived == "up to date" and again.dagster_home is None  # no run: only the views are rebuilt
    assert "perf.duckdb rebuilt: its views read another folder (a copied or moved warehouse)" in said
    shutil.rmtree(original)
    with duckdb.connect(str(copy / "perf.duckdb"), read_only=True) as con:
        assert con.sql("select count(*) from measurements").fetchall() == [(3 * CLEAN_ROWS,)]
        assert con.sql("select count(*) from grids").fetchall()[0][0] > 0


def test_cli_materialize_prints_summary(tmp_path, landing, dagster_home, capsys):
    from perfwh.cli import main

    assert main(["materialize", "--landing", str(landing), "--home", str(tmp_path / "wh")]) == 0
    out = capsys.readouterr()
    assert "3 raw logs seen, 3 ingested" in out.out
    assert f"{3 * CLEAN_ROWS:,} accepted + {DIRTY_ROWS:,} quarantined" in out.out
    assert "check measurements/quarantine_share: warning" in out.out
    assert "FAILED" not in out.err


def test_unreadable_file_fails_the_run_but_not_the_others(tmp_path, landing, dagster_home):
    from pipelines.materialize import run_materialize

    (landing / "h200_sxm" / "trtllm" / "1.0" / "dsa_generation_module_perf.parquet").write_bytes(b"not parquet")
    lines: list[str] = []
    summary = run_materialize(str(tmp_path / "wh"), str(landing), progress=lines.append)
    assert not summary.ok
    assert summary.failed_runs and summary.failed_runs[0].startswith("ingest_job")
    assert (summary.ingested.ingested, summary.ingested.failed) == (3, 1)
    assert summary.derived == "rebuilt"  # the three good files are committed and served
    assert any("dsa_generation_module_perf.parquet" in line for line in lines if line.startswith("failed files"))


def test_ingest_job_over_the_shared_data_set(shared_data, tmp_path, dagster_home):
    """One run over the whole partition range of ../shared/data: every row accounted for."""
    from pipelines.definitions import build_defs

    settings = WarehouseSettings(home=str(tmp_path / "wh"), landing=str(shared_data))
    defs = build_defs(settings)
    _, files = settings.scan()
    keys = [f.key for f in files]
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        instance.add_dynamic_partitions("raw_log_file", keys)
        result = defs.resolve_job_def("ingest_job").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        )
    assert result.success
    meta = _metadata(result, "measurements")
    assert meta["files"] == len(keys) and meta["files_failed"] == 0
    assert meta["rows_read"] == meta["rows_accepted"] + meta["rows_quarantined"] > 100_000
    checks = _checks(result)
    assert checks["ledger_balanced"][0] and checks["latency_valid"][0]
