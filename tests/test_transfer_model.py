"""The transfer prototype (benchmarks/transfer_model.py): which part of a module's time moves."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from transfer_model import fit_interval, interval, system_spec, transfer_frame  # noqa: E402

from estimator.calibrate import CalibrationParams  # noqa: E402


def _gen_points(kv_lens, batch=64, kv="bfloat16", heads=128):
    n = len(kv_lens)
    return pl.DataFrame({
        "op": ["mla_generation"] * n, "architecture": ["DeepseekV3ForCausalLM"] * n,
        "gemm_type": ["bfloat16"] * n, "kv_cache_dtype": [kv] * n, "batch_size": [batch] * n,
        "isl": [1] * n, "prefix": [None] * n, "kv_len": list(kv_lens), "num_heads": [heads] * n,
        "latency_src": [1.0] * n,
    }, schema_overrides={"prefix": pl.Int64})


def _params(eb, ef=1.0, overhead=1e-6):
    groups = ("gemm_bf16", "mla_decode", "elementwise")
    return CalibrationParams(eff={g: (ef, eb) for g in groups}, overhead_ms=overhead, combine_p=1.0)


def test_same_spec_is_an_exact_copy():
    h200 = system_spec("h200_sxm")
    out = transfer_frame(_gen_points([1024, 65536]), _params(0.4), h200, h200)
    assert out["pred_model"].to_numpy() == pytest.approx(out["pred_copy"].to_numpy(), rel=1e-12)


def test_bandwidth_bound_at_full_efficiency_moves_with_the_bandwidth_ratio():
    h100, h200 = system_spec("h100_sxm"), system_spec("h200_sxm")
    # batch 256 x 128k keys, 8 heads: the decode attention streams ~39 GB, everything else is negligible
    out = transfer_frame(_gen_points([131072], batch=256, heads=8), _params(1.0), h200, h100)
    bw_ratio = h200.hbm_bytes_per_s / h100.hbm_bytes_per_s
    assert out["ratio_model"][0] == pytest.approx(bw_ratio, rel=0.02)
    assert out["frac_bandwidth"][0] > 0.98


def test_a_kernel_at_a_quarter_of_hbm_bandwidth_moves_a_quarter_as_much():
    h100, h200 = system_spec("h100_sxm"), system_spec("h200_sxm")
    bw_ratio = h200.hbm_bytes_per_s / h100.hbm_bytes_per_s
    out = transfer_frame(_gen_points([131072], batch=256, heads=8), _params(0.25), h200, h100)
    assert out["ratio_model"][0] == pytest.approx(1 + 0.25 * (bw_ratio - 1), rel=0.02)
    # the raw roofline baseline moves the whole time
    assert out["pred_roofline"][0] == pytest.approx(bw_ratio, rel=0.02)  # latency_src is 1 ms


def test_overhead_bound_shape_does_not_move_between_h200_and_h100():
    h100, h200 = system_spec("h100_sxm"), system_spec("h200_sxm")
    out = transfer_frame(_gen_points([16], batch=1), _params(1.0, overhead=500.0), h200, h100)
    assert out["ratio_model"][0] == pytest.approx(1.0, abs=1e-3)
    assert out["frac_overhead"][0] > 0.99


def test_compute_bound_moves_with_the_tensor_peak_only():
    h200 = system_spec("h200_sxm")
    double = replace(h200, name="h200x2", peak_bf16_flops_per_s=2 * h200.peak_bf16_flops_per_s,
                     peak_fp8_flops_per_s=2 * h200.peak_fp8_flops_per_s)
    # bandwidth efficiency huge, so every kernel is compute-bound on the source
    out = transfer_frame(_gen_points([131072], batch=256), _params(50.0, ef=0.5), h200, double)
    assert out["frac_compute"][0] > 0.98
    assert out["ratio_model"][0] == pytest.approx(0.5, rel=0.02)


def test_unknown_system_is_a_clear_error():
    with pytest.raises(ValueError, match="no spec for system 'x9000'"):
        system_spec("x9000")


def test_interval_fitted_on_residuals_covers_about_80_percent():
    rng = np.random.default_rng(0)
    moved = rng.uniform(0, 0.4, 20000)
    err = np.abs(rng.normal(0, 0.02 + 0.3 * moved))  # noise grows with how much moved
    a, b = fit_interval(moved[:10000], err[:10000])
    assert b > 0
    pred = np.ones(10000)
    truth = np.exp(rng.normal(0, 0.02 + 0.3 * moved[10000:]))
    lo, hi = interval(pred, moved[10000:], a, b)
    cover = np.mean((truth >= lo) & (truth <= hi))
    assert 0.75 <= cover <= 0.85
