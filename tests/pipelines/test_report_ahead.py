"""The accuracy report computed ahead, beside the partition build (pipelines.ahead): computed once, by
the worker, only when its slice changed; adopted only for the inputs it was computed from."""

from __future__ import annotations

import subprocess

import dagster as dg
import polars as pl
import pytest

from estimator.derived.accuracy_report import (
    adopt_ahead, ahead_path, compute_ahead, compute_report, is_current, report_inputs, report_path,
)
from tests.pipelines.fixtures import write_dsa_context, write_dsa_generation
from warehouse.ingest import ingest_paths

pytestmark = [
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
]

PROTOCOL = ("h200_sxm", "trtllm", "1.0")  # the fixture logs' slice: the report's default


@pytest.fixture
def in_step(monkeypatch) -> list:
    """The slices whose report this process computed (the asset's own computation)."""
    calls = []

    def counting(home, key, seed):
        calls.append(key)
        return compute_report(home, key, seed)

    monkeypatch.setattr("assets.reports.compute_report", counting)
    return calls


@pytest.fixture
def workers(monkeypatch) -> list:
    """The report workers started (Dagster starts processes of its own too)."""
    started = []
    real = subprocess.Popen

    def popen(cmd, *args, **kwargs):
        process = real(cmd, *args, **kwargs)
        if "estimator.derived.accuracy_report" in cmd:
            started.append(process)
        return process

    monkeypatch.setattr("pipelines.ahead.subprocess.Popen", popen)
    return started


@pytest.fixture
def told(monkeypatch) -> list:
    """The slices a worker was told to compute."""
    from pipelines.ahead import ReportAhead

    slices = []
    start = ReportAhead.start

    def recording(self):
        if start(self):
            slices.append(self.key)
            return True
        return False

    monkeypatch.setattr(ReportAhead, "start", recording)
    return slices


def _report_metadata(dagster_home) -> dict:
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    event = instance.get_latest_materialization_event(dg.AssetKey("accuracy_report"))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _materialize(home, landing):
    from pipelines.materialize import run_materialize

    summary = run_materialize(str(home), str(landing), progress=lambda line: None)
    assert summary.ok, summary.failed_runs
    return summary


def _own_collector_log(landing, scale: float = 1.0):
    """A second slice, h200_sxm / perfwh 0.1: not the report's."""
    f = write_dsa_generation(landing / "own", scale=scale)
    f.write_text(f.read_text().replace("TRTLLM,1.0,", "perfwh,0.1,"))
    return f


@pytest.mark.slow
def test_changed_slice_is_computed_once_by_the_worker(tmp_path, landing, dagster_home, in_step, workers, told):
    home = tmp_path / "wh"
    _materialize(home, landing)  # first build: no partition to choose the slice from yet, the asset computes it
    assert in_step == [PROTOCOL] and workers == [] and told == []
    assert _report_metadata(dagster_home)["computed"] == "in this step"
    in_step.clear()

    write_dsa_generation(landing, scale=1.1)  # the report's slice changes
    changed = _materialize(home, landing)
    assert changed.partitions_rebuilt == [PROTOCOL]
    assert len(workers) == 1 and told == [PROTOCOL]  # the raw log's path names the slice: started before the ingest
    assert in_step == []  # computed by the worker only
    meta = _report_metadata(dagster_home)
    assert meta["recomputed"] and meta["computed"] == "ahead, beside the derived partitions"
    # what was adopted is what the asset would have computed, keyed by the new inputs
    assert pl.read_parquet(report_path(home)).equals(compute_report(home, PROTOCOL, 0))
    assert is_current(home, report_inputs(home, PROTOCOL, 0))
    assert not list(ahead_path(home, PROTOCOL, "").parent.iterdir())


@pytest.mark.slow
def test_report_is_not_recomputed_when_another_slice_changed(tmp_path, landing, dagster_home, in_step, workers,
                                                            told):
    home = tmp_path / "wh"
    _own_collector_log(landing)
    _materialize(home, landing)
    in_step.clear()
    before = pl.read_parquet(report_path(home))

    _own_collector_log(landing, scale=1.1)
    changed = _materialize(home, landing)
    assert changed.partitions_rebuilt == [("h200_sxm", "perfwh", "0.1")]
    assert told == [] and in_step == []
    # its landing path (own/h200_sxm/trtllm/1.0/...) looked like the report's slice: a worker was
    # started before the ingest, then stopped once the rows turned out to be another slice's
    assert len(workers) == 1 and workers[0].poll() is not None
    meta = _report_metadata(dagster_home)
    assert not meta["recomputed"] and meta["computed"] == "no: inputs unchanged"
    assert pl.read_parquet(report_path(home)).equals(before)


def test_a_report_computed_ahead_is_adopted_only_for_its_inputs(tmp_path):
    home = tmp_path / "wh"
    ingest_paths([write_dsa_context(tmp_path / "aic"), write_dsa_generation(tmp_path / "aic")], home)
    staged = compute_ahead(home, PROTOCOL, 0)
    assert staged.exists() and not report_path(home).exists()
    assert not adopt_ahead(home, PROTOCOL, report_inputs(home, PROTOCOL, 1))  # another seed: not this one
    assert not staged.exists() and not report_path(home).exists()  # and dropped

    compute_ahead(home, PROTOCOL, 0)
    assert adopt_ahead(home, PROTOCOL, report_inputs(home, PROTOCOL, 0))
    assert is_current(home, report_inputs(home, PROTOCOL, 0)) and not staged.exists()


def test_a_stopped_worker_leaves_nothing_to_adopt(tmp_path, monkeypatch):
    from pipelines.ahead import ReportAhead

    home = tmp_path / "wh"
    ingest_paths([write_dsa_context(tmp_path / "aic")], home)
    monkeypatch.setattr("pipelines.ahead.report_slice", lambda home: PROTOCOL)  # no partition built to choose from
    ahead = ReportAhead(home)
    assert ahead.start() and ahead.process.poll() is None
    ahead.stop()  # Ctrl-C or a failed derived run: before the worker is done
    assert ahead.process.poll() is not None
    assert not adopt_ahead(home, PROTOCOL, report_inputs(home, PROTOCOL, 0))
