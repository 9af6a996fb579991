"""Transfer to a system without data (estimator/physics/transfer.py; the protocol in estimator/accuracy/transfer.py): which part of a module's time moves,
the source choice, PerfDatabase(from_system=...), the leave-one-system-out protocol and its CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import polars as pl
import pytest

from estimator.physics import sol
from estimator.physics.calibrate import CalibrationParams, calibrated_ms
from estimator.common import Source
from estimator.lookup.database import PerfDatabase
from estimator.grids.build import build_grids
from estimator.slices import model_for
from estimator.physics.specs import load_system
from estimator.accuracy.transfer import summarize_transfer, transfer_protocol
from estimator.physics.transfer import TransferRule, nearest_source, source_system, spec_distance, transfer_params

from ..conftest import fixed_calibration, synthetic_points, write_collector_csv

H100, H200 = load_system("h100_sxm"), load_system("h200_sxm")
BW_RATIO = H200.hbm_bytes_per_s / H100.hbm_bytes_per_s  # ~1.43: H100 streams that much slower


def _decode(batch, kv_len, heads):
    return sol.kernels("mla_generation", model_for("mla_generation", "DeepseekV3ForCausalLM"), batch=batch,
                       isl=1, prefix=0, kv_len=kv_len, num_heads=heads)


def _params(eb, ef=1.0, overhead=1e-6):
    return CalibrationParams(eff={g: (ef, eb) for g in sol.GROUPS}, overhead_ms=overhead, combine_p=1.0)


def _moved(ks, params, source, target):
    """target / source calibrated SOL of kernels `ks`: how much a source answer is scaled."""
    return calibrated_ms(ks, target, transfer_params(params, source, target)) / calibrated_ms(ks, source, params)


# ---- the physics --------------------------------------------------------------------------------
def test_same_spec_changes_nothing():
    p = _params(0.4, ef=0.3, overhead=0.2)
    assert transfer_params(p, H200, H200) == p


def test_bandwidth_bound_at_full_efficiency_moves_with_the_bandwidth_ratio():
    # batch 256 x 128k keys, 8 heads: the decode attention streams ~39 GB; everything else is negligible
    assert _moved(_decode(256, 131072, 8), _params(1.0), H200, H100) == pytest.approx(BW_RATIO, rel=0.02)


def test_a_kernel_at_a_quarter_of_hbm_bandwidth_moves_a_quarter_as_much():
    # 25% efficiency: 1/4 of its time streams (moves with bandwidth), 3/4 does not (same BF16 peak: stays)
    got = _moved(_decode(256, 131072, 8), _params(0.25), H200, H100)
    assert got == pytest.approx(1 + 0.25 * (BW_RATIO - 1), rel=0.02)
    assert got < 1.15  # the raw roofline would move it by the whole 1.43


def test_overhead_bound_shape_is_copied_between_h200_and_h100():
    assert _moved(_decode(1, 16, 16), _params(1.0, overhead=500.0), H200, H100) == pytest.approx(1.0, abs=1e-3)


def test_compute_bound_moves_with_the_tensor_peak_only():
    double = replace(H200, name="h200x2", peak_bf16_flops_per_s=2 * H200.peak_bf16_flops_per_s,
                     peak_fp8_flops_per_s=2 * H200.peak_fp8_flops_per_s)
    # bandwidth efficiency huge: every kernel is compute-bound
    assert _moved(_decode(256, 131072, 128), _params(50.0, ef=0.5), H200, double) == pytest.approx(0.5, rel=0.02)


def test_efficiency_above_one_moves_with_the_whole_peak_ratio():
    rule = TransferRule(H200, H100)
    assert rule.params(_params(1.7)).eff["mla_decode"] == (1.0, 1.7)  # not clipped, not split
    assert rule.params(_params(0.5)).eff["mla_decode"][1] < 0.6  # split: H100 streams slower


# ---- the source -----------------------------------------------------------------------------------
def test_nearest_source_by_spec():
    assert nearest_source("h100_sxm", ["h200_sxm", "b200_sxm", "a100_sxm"]) == "h200_sxm"
    assert nearest_source("gb200", ["h200_sxm", "b200_sxm"]) == "b200_sxm"
    assert nearest_source("b300_sxm", ["h200_sxm", "gb200", "b200_sxm"]) == "b200_sxm"
    assert spec_distance(H100, H200) < spec_distance(H100, load_system("b200_sxm"))
    with pytest.raises(ValueError, match="no data for system 'h100_sxm'"):
        nearest_source("h100_sxm", ["h100_sxm", "x9000"])


def test_source_system_explicit_own_or_nearest():
    assert source_system("h100_sxm", ["h100_sxm", "h200_sxm"]) == "h100_sxm"
    assert source_system("h100_sxm", ["h100_sxm", "h200_sxm"], "h200_sxm") == "h200_sxm"
    assert source_system("gb200", ["h200_sxm", "b200_sxm"]) == "b200_sxm"
    with pytest.raises(ValueError, match="no trtllm data for system 'b200_sxm'"):
        source_system("h100_sxm", ["h200_sxm"], "b200_sxm", "trtllm")
    with pytest.raises(ValueError, match="unknown system 'x9000'"):
        source_system("h100_sxm", ["h200_sxm"], "x9000")


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
