"""The transfer rule (estimator/physics/transfer.py): which part of a module's time moves to another
system, and the choice of the source system."""

from __future__ import annotations

from dataclasses import replace

import pytest

from estimator.physics import sol
from estimator.physics.calibrate import CalibrationParams, calibrated_ms
from estimator.slices import model_for
from estimator.physics.specs import load_system
from estimator.physics.transfer import TransferRule, nearest_source, source_system, spec_distance, transfer_params


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


def test_nvfp4_slices_are_never_transferred_and_the_reason_is_stated():
    import polars as pl

    from estimator.physics.transfer import NOT_TRANSFERRED, transferable

    rows = pl.DataFrame({"gemm_type": ["bfloat16", "nvfp4", None, "fp8_block"],
                         "kv_cache_dtype": ["bfloat16", "bfloat16", "fp8", "nvfp4"]})
    assert rows.filter(transferable())["gemm_type"].to_list() == ["bfloat16", None]
    assert "FP4" in NOT_TRANSFERRED["nvfp4"]
