"""benchmarks/aiconfigurator_baseline.py: aiconfigurator must see exactly the training points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("aiconfigurator_baseline")


def _points(op: str, cells: dict[tuple[int, int], float]) -> pl.DataFrame:
    ctx = op.endswith("_context")
    arch = "DeepseekV32ForCausalLM" if op.startswith("dsa") else "DeepseekV3ForCausalLM"
    return pl.DataFrame({
        "system": "h200_sxm", "framework": "trtllm", "version": "1.3.0rc20", "op": op,
        "kernel_source": "default", "model": "deepseek-ai/DeepSeek-V3.2", "architecture": arch,
        "attn_dtype": "bfloat16", "kv_cache_dtype": "bfloat16", "gemm_type": "bfloat16", "num_heads": 128,
        "batch_size": [b for b, _ in cells], "isl": [s if ctx else 1 for _, s in cells],
        "prefix": [0 if ctx else None for _ in cells], "kv_len": [None if ctx else s for _, s in cells],
        "latency_ms": list(cells.values()),
    }, schema_overrides={"prefix": pl.Int32, "kv_len": pl.Int32})


def test_aic_table_maps_prefix_and_kv_len_to_step(bench):
    ctx = bench.to_aic_table(_points("dsa_context", {(1, 1024): 3.0}).with_columns(pl.lit(128).alias("prefix")),
                             "dsa_context")
    gen = bench.to_aic_table(_points("mla_generation", {(4, 2048): 0.2}), "mla_generation")
    assert (ctx["step"][0], ctx["isl"][0], ctx["op_name"][0], ctx["framework"][0]) == (
        128, 1024, "dsa_context_module", "TRTLLM")
    assert (gen["step"][0], gen["isl"][0], gen["latency"][0], gen["device"][0]) == (2048, 1, 0.2, "NVIDIA H200")


def test_shadow_systems_replaces_only_the_named_table(bench, tmp_path):
    src = tmp_path / "src"
    (src / "data" / "sys" / "fam" / "v1").mkdir(parents=True)
    (src / "data" / "sys" / "fam" / "v1" / "t.parquet").write_text("original")
    (src / "data" / "sys" / "fam" / "v1" / "other.parquet").write_text("other")
    (src / "data" / "sys2").mkdir()
    (src / "sys.yaml").write_text("data_dir: data/sys")
    dst = tmp_path / "dst"
    frame = pl.DataFrame({"latency": [1.5]})
    bench.shadow_systems(src, dst, {"data/sys/fam/v1/t.parquet": frame})
    assert pl.read_parquet(dst / "data/sys/fam/v1/t.parquet").equals(frame)
    assert (dst / "data/sys/fam/v1/other.parquet").is_symlink()
    assert (dst / "data/sys2").is_symlink() and (dst / "sys.yaml").is_symlink()
    assert not (dst / "data/sys").is_symlink()
    assert (src / "data/sys/fam/v1/t.parquet").read_text() == "original"


def test_aiconfigurator_answers_from_the_training_table_only(bench, tmp_path):
    aic = pytest.importorskip("aiconfigurator_core")
    # a made-up grid, far from the shipped H200 numbers: a leak of the shipped table shows
    cells = {(b, s): 100.0 * b * s / 1024 for b in (1, 2, 4) for s in (1024, 2048, 4096)}
    pts = _points("dsa_context", cells)
    held = (pl.col("batch_size") == 2) & (pl.col("isl") == 2048)
    train, test = pts.filter(~held), pts.filter(held)
    installed = Path(aic.__file__).parent / "systems"
    table = "data/h200_sxm/sparse_attention/trtllm/1.3.0rc20/dsa_context_module_perf.parquet"
    bench.shadow_systems(installed, tmp_path / "systems", {table: bench.to_aic_table(train, "dsa_context")})
    back, why = bench.aic_predict(tmp_path / "systems", "1.3.0rc20", train)
    np.testing.assert_allclose(back, train["latency_ms"].to_numpy(), rtol=1e-9)
    pred, why = bench.aic_predict(tmp_path / "systems", "1.3.0rc20", test)
    assert why == [""]
    # between its training neighbours (b 2 at isl 1024 / 4096, isl 2048 at b 1 / 4), not the shipped value
    assert 100.0 * 2 * 1024 / 1024 < pred[0] < 100.0 * 2 * 4096 / 1024
    # a shape the table cannot represent (fp8 KV cache for DSA) is refused and counted, not dropped
    fp8 = test.with_columns(pl.lit("fp8").alias("kv_cache_dtype"))
    pred, why = bench.aic_predict(tmp_path / "systems", "1.3.0rc20", fp8)
    assert np.isnan(pred[0]) and why[0].startswith("PerfDataNotAvailableError")


def test_markdown_marks_cells_where_perfwh_is_worse_and_counts_refusals(bench):
    row = dict(table="dsa_context", seed=0, n=3, perfwh_median_pct=1.0, perfwh_p90_pct=5.0, aic_refused=0)
    result = {"system": "h200_sxm", "backend": "trtllm", "version": "v", "seeds": [0],
              "rows": [row | {"class": "R", "aic_median_pct": 2.0, "aic_p90_pct": 4.0},
                       row | {"class": "G", "aic_median_pct": 2.0, "aic_p90_pct": 6.0},
                       row | {"class": "E", "aic_median_pct": None, "aic_p90_pct": None, "aic_refused": 3}],
              "refusals": [{"reason": "PerfDataNotAvailableError: x"}] * 3,
              "training_checks": [{"n": 5, "max_rel_diff": 0.0, "nan": 0}]}
    lines = bench.format_markdown(result).splitlines()
    assert "| dsa_context | R | 0 | 3 | 1.00 / 5.00 | 2.00 / 4.00 |  | 0 | no |" in lines
    assert "| dsa_context | G | 0 | 3 | 1.00 / 5.00 | 2.00 / 6.00 |  | 0 | yes |" in lines
    assert "| dsa_context | E | 0 | 3 | 1.00 / 5.00 | - |  | 3 |  |" in lines
    assert lines[-1] == "refused / failed aiconfigurator queries: 3 x PerfDataNotAvailableError: x"
    assert ("figures (median and p90 of each cell): 3 of 4 at or below aiconfigurator; cells (table x class x "
            "seed): 1 of 2 at or below in both, 0 bootstrap ties, 1 above") in lines


def test_bootstrap_interval_of_the_difference_brackets_it_and_ties_need_it_to_span_zero(bench):
    rng = np.random.default_rng(1)
    ours = np.abs(rng.normal(0, 1.0, 400))
    ci = bench.bootstrap_diff(ours, ours + 0.5, 500)  # aiconfigurator 0.5 points worse on every point
    assert ci["median"][0] <= -0.5 + 1e-9 and ci["median"][1] >= -0.5 - 1e-9
    assert ci["median"][1] - ci["median"][0] < 1e-9  # paired: the same resample on both sides
    row = dict(perfwh_median_pct=1.05, perfwh_p90_pct=4.0, aic_median_pct=1.0, aic_p90_pct=5.0)
    assert bench.verdict(row | {"diff_ci": {"median": (-0.1, 0.2), "p90": (-2.0, -0.5)}}) == "tie"
    assert bench.verdict(row | {"diff_ci": {"median": (0.01, 0.2), "p90": (-2.0, -0.5)}}) == "no"
    assert bench.verdict(row) == "no"  # above, and no interval to call it a tie
    assert bench.verdict(row | {"perfwh_median_pct": 1.0}) == "yes"


def test_bootstrap_interval_spans_zero_for_two_samples_of_one_distribution(bench):
    rng = np.random.default_rng(2)
    ci = bench.bootstrap_diff(np.abs(rng.normal(0, 1, 300)), np.abs(rng.normal(0, 1, 300)), 1000)
    assert ci["median"][0] < 0 < ci["median"][1] and ci["p90"][0] < 0 < ci["p90"][1]
    # refused points (NaN) leave aiconfigurator's figure over the rest
    a = np.abs(rng.normal(0, 1, 300))
    b = np.where(np.arange(300) % 10 == 0, np.nan, a)
    assert max(map(abs, bench.bootstrap_diff(a, b, 300)["median"])) < 0.1
