"""Transfer through PerfDatabase(from_system=...), the leave-one-system-out protocol
(estimator/accuracy/transfer.py) and its CLI."""

from __future__ import annotations

import json

import polars as pl
import pytest

from estimator.physics import sol
from estimator.physics.calibrate import CalibrationParams
from estimator.common import Source
from estimator.lookup.database import PerfDatabase
from estimator.grids.build import build_grids
from estimator.physics.specs import load_system
from estimator.accuracy.transfer import summarize_transfer, transfer_protocol

from ..conftest import fixed_calibration, synthetic_points, write_collector_csv

H100, H200 = load_system("h100_sxm"), load_system("h200_sxm")
BW_RATIO = H200.hbm_bytes_per_s / H100.hbm_bytes_per_s  # ~1.43: H100 streams that much slower


def _params(eb, ef=1.0, overhead=1e-6):
    return CalibrationParams(eff={g: (ef, eb) for g in sol.GROUPS}, overhead_ms=overhead, combine_p=1.0)



# ---- PerfDatabase ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_systems():
    """h200 synthetic points, and h100 points of the same shapes 1.3x slower (not what the physics says)."""
    h200 = synthetic_points(ops=("mla_generation",))
    h100 = h200.with_columns(pl.lit("h100_sxm").alias("system"), pl.col("latency_ms") * 1.3)
    return pl.concat([h200, h100])


def test_database_from_system_answers_transferred_and_names_source_and_version(two_systems):
    cal = fixed_calibration(two_systems)
    grids = build_grids(two_systems, cal)
    own = PerfDatabase("h100_sxm", calibration=cal, grids=grids)
    moved = PerfDatabase("h100_sxm", calibration=cal, grids=grids, from_system="h200_sxm")
    h200 = PerfDatabase("h200_sxm", calibration=cal, grids=grids)
    q = dict(batch_size=8, s=1024, num_heads=128)
    assert own.estimate("mla_generation", **q).source is Source.measured
    est = moved.estimate("mla_generation", **q)
    assert est.source is Source.transferred and est.system == "h100_sxm"
    assert est.transferred_from == "system=h100_sxm<-h200_sxm (trtllm 1.0)" and est.version == "1.0"
    # the h200 measurement, moved: slower on h100 (less bandwidth), never by more than the bandwidth ratio
    src = h200.estimate("mla_generation", **q).latency_ms
    assert src < est.latency_ms < src * BW_RATIO
    many = moved.estimate_many("mla_generation", pl.DataFrame({"batch_size": [8], "kv_len": [1024],
                                                                "num_heads": [128]}))
    assert many["source"][0] == "transferred"
    assert many["latency_ms"][0] == pytest.approx(est.latency_ms, rel=1e-5)


# ---- the protocol ----------------------------------------------------------------------------------------
def test_protocol_never_sees_the_target_rows(two_systems):
    a = transfer_protocol(two_systems, "h100_sxm", "h200_sxm")
    changed = two_systems.with_columns(pl.when(pl.col("system") == "h100_sxm").then(pl.col("latency_ms") * 10)
                                       .otherwise(pl.col("latency_ms")).alias("latency_ms"))
    b = transfer_protocol(changed, "h100_sxm", "h200_sxm")
    assert a.height == b.height == two_systems.filter(pl.col("system") == "h100_sxm").height
    assert a["pred_ms"].to_list() == b["pred_ms"].to_list()  # predictions depend on the source only
    assert b["measured_ms"].to_numpy() == pytest.approx(a["measured_ms"].to_numpy() * 10)
    assert (a["source"] == "transferred").all()
    # baseline (a) is the source's latency of the same shape: the h100 rows are 1.3x it
    assert (a["measured_ms"] / a["copy_ms"]).to_numpy() == pytest.approx(1.3)
    table = summarize_transfer(a)
    assert table["copy_median_pct"][0] == pytest.approx(100 * (1 - 1 / 1.3))
    assert table["n"][0] == a.height


def test_protocol_refuses_a_pair_without_common_data(two_systems):
    with pytest.raises(ValueError, match="no \\(backend, version\\) with module points on both"):
        transfer_protocol(two_systems, "h100_sxm", "b200_sxm")
    with pytest.raises(ValueError, match="same system"):
        transfer_protocol(two_systems, "h100_sxm", "h100_sxm")


def test_cli_accuracy_transfer_and_query_from(two_systems, tmp_path, capsys):
    from perfwh.cli import main
    from warehouse.ingest import ingest_paths

    home = tmp_path / "wh"
    for (system,), sub in two_systems.group_by("system"):
        for path in write_collector_csv(sub, tmp_path / "raw" / system):
            if system == "h100_sxm":  # the collector names the system by its device string
                path.write_text(path.read_text().replace("NVIDIA H200", "NVIDIA H100 80GB HBM3"))
    ingest_paths([tmp_path / "raw"], home)
    out = tmp_path / "errors.parquet"
    assert main(["accuracy", "--transfer", "h100_sxm", "--from", "h200_sxm", "--home", str(home), "--json",
                 "--errors-out", str(out)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["target"], r["from_system"], r["op"]) for r in rows] == [("h100_sxm", "h200_sxm", "mla_generation")]
    assert rows[0]["n"] == pl.read_parquet(out).height == 48
    assert main(["query", "mla_generation", "--system", "h100_sxm", "--from", "h200_sxm", "-b", "8", "-s", "1024",
                 "--num-heads", "128", "--home", str(home)]) == 0
    text = capsys.readouterr().out
    assert "(transferred)" in text and "h100_sxm<-h200_sxm (trtllm 1.0)" in text
    assert main(["accuracy", "--transfer", "b200_sxm", "--home", str(home)]) == 2
    assert "no module points for b200_sxm" in capsys.readouterr().err


# ---- the published tables (skips without aiconfigurator-core) --------------------------------------------
@pytest.mark.slow
def test_h100_from_h200_trtllm_generation_beats_both_baselines(tmp_path):
    """Issue 11's target pair on aiconfigurator-core 0.12's published TensorRT-LLM 1.3.0rc20 tables."""
    from warehouse.aiconfigurator import find_published_tables
    from warehouse.ingest import ingest_paths
    from warehouse.read import read_perf_points

    try:
        found = find_published_tables(None, ["h100_sxm", "h200_sxm"])
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    tables = [p for p in found.tables if "trtllm" in p.parts and "1.3.0rc20" in p.parts
              and p.stem in ("dsa_generation_module_perf", "mla_generation_module_perf")]
    if len(tables) != 4:
        pytest.skip(f"expected the 4 TensorRT-LLM 1.3.0rc20 generation tables, found {len(tables)}")
    ingest_paths(tables, tmp_path / "wh")
    table = summarize_transfer(transfer_protocol(read_perf_points(tmp_path / "wh"), "h100_sxm", "h200_sxm"))
    assert sorted(table["op"].to_list()) == ["dsa_generation", "mla_generation"]
    for r in table.iter_rows(named=True):
        assert r["transfer_median_pct"] <= 5.0 and r["transfer_p90_pct"] <= 15.0, r
        assert r["beats_both"], r


def test_kernel_source_map_keeps_the_name_else_the_most_similar():
    from estimator.accuracy.transfer import kernel_source_map

    def frame(names, counts=None):
        counts = counts or [1] * len(names)
        return pl.DataFrame({"framework": "sglang", "version": "1", "op": "dsa_generation",
                             "kernel_source": [n for n, c in zip(names, counts) for _ in range(c)]})

    src = frame(["sglang_dsa_indexer_fa3", "sglang_dsa_skip_indexer_fa3", "shared"], [1, 1, 1])
    tgt = frame(["sglang_dsa_indexer_trtllm", "sglang_dsa_skip_indexer_trtllm", "shared"])
    got = dict(kernel_source_map(tgt, src).select("kernel_source", "from_kernel_source").iter_rows())
    assert got == {"sglang_dsa_indexer_trtllm": "sglang_dsa_indexer_fa3",
                   "sglang_dsa_skip_indexer_trtllm": "sglang_dsa_skip_indexer_fa3", "shared": "shared"}
