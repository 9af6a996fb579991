"""Checks on the published H200 tables; skipped when ../shared/data is absent."""

import polars as pl
import pytest

from ..conftest import TRTLLM_H200

pytestmark = pytest.mark.skipif(not TRTLLM_H200.exists(), reason=f"{TRTLLM_H200} not present")


@pytest.fixture(scope="module")
def h200(tmp_path_factory):
    from warehouse.ingest import ingest_paths
    from warehouse.read import read_perf_points

    home = tmp_path_factory.mktemp("h200")
    ingest_paths([TRTLLM_H200], home)
    return home, read_perf_points(home)


def test_raw_sol_is_a_lower_bound_on_every_module_row(h200):
    from estimator.physics import sol
    from estimator.slices import model_for, points_shape
    from estimator.physics.specs import load_system

    _, pts = h200
    mods = pts.filter(pl.col("op").is_in(["dsa_context", "dsa_generation", "mla_context", "mla_generation"]))
    for (op, arch, gemm, kv), sub in mods.group_by("op", "architecture", "gemm_type", "kv_cache_dtype"):
        ks = sol.kernels(op, model_for(op, arch), gemm_type=gemm, kv_cache_dtype=kv, **points_shape(sub))
        raw = sol.sol_ms(ks, load_system("h200_sxm"))
        assert (raw <= sub["latency_ms"].to_numpy()).all(), (op, arch, gemm, kv)


def test_database_on_real_data_measured_exact_and_labels(h200):
    from estimator.lookup.database import PerfDatabase

    home, pts = h200
    db = PerfDatabase(home=home)
    row = pts.filter((pl.col("op") == "dsa_context") & (pl.col("gemm_type") == "bfloat16")
                     & (pl.col("architecture") == "DeepseekV32ForCausalLM")).row(0, named=True)
    est = db.estimate("dsa_context", batch_size=row["batch_size"], s=row["isl"], num_heads=row["num_heads"],
                      prefix=row["prefix"])
    assert est.source.value == "measured" and est.latency_ms == pytest.approx(row["latency_ms"], rel=1e-9)
    assert db.estimate("dsa_generation", batch_size=8, s=120000, num_heads=128).source.value == "extrapolated"
    h100 = PerfDatabase(system="h100_sxm", home=home)
    slow = h100.estimate("mla_generation", batch_size=64, s=32768, num_heads=128)
    fast = db.estimate("mla_generation", batch_size=64, s=32768, num_heads=128)
    assert slow.source.value == "transferred" and slow.latency_ms > fast.latency_ms
