import pytest

from estimator.physics import sol
from estimator.physics.specs import load_model, load_system, system_names

V32 = load_model("deepseek-v3.2")
V3 = load_model("deepseek-v3")
H200 = load_system("h200_sxm")


def _ks(op, model, **kw):
    shape = dict(batch=1, isl=1, prefix=0, kv_len=0, num_heads=128)
    shape.update(kw)
    return sol.kernels(op, model, **shape)


def test_specs_load_in_si_units():
    assert set(system_names()) >= {"h200_sxm", "h100_sxm"}
    h100 = load_system("h100_sxm")
    assert H200.hbm_bytes_per_s == 4.8e12 and h100.hbm_bytes_per_s == 3.35e12
    assert H200.peak_bf16_flops_per_s == h100.peak_bf16_flops_per_s == 989e12
    assert load_model("zai-org/GLM-5").index_n_heads == 32


def test_unknown_system_and_model_list_valid_values():
    with pytest.raises(ValueError, match="h200_sxm"):
        load_system("b200")
    with pytest.raises(ValueError, match="deepseek-v3.2"):
        load_model("llama")


def test_dsa_sparse_attention_pads_heads_to_64():
    a = {k.name: k for k in _ks("dsa_generation", V32, kv_len=512, num_heads=1)}
    b = {k.name: k for k in _ks("dsa_generation", V32, kv_len=512, num_heads=64)}
    assert a["sparse_attention"].flops == b["sparse_attention"].flops


def test_dsa_sparse_attention_processes_all_topk_slots():
    short = {k.name: k for k in _ks("dsa_generation", V32, kv_len=16)}
    long = {k.name: k for k in _ks("dsa_generation", V32, kv_len=1024)}
    assert short["sparse_attention"].flops == long["sparse_attention"].flops


def test_indexer_runs_only_past_topk_and_ignores_tp_heads():
    below = {k.name: k for k in _ks("dsa_context", V32, isl=2048)}
    above = {k.name: k for k in _ks("dsa_context", V32, isl=4096)}
    assert below["indexer_logits"].flops == 0
    assert above["indexer_logits"].flops > 0
    h8 = {k.name: k for k in _ks("dsa_context", V32, isl=4096, num_heads=8)}
    assert h8["indexer_logits"].flops == above["indexer_logits"].flops


def test_sol_is_sum_of_kernel_maxima_and_h100_is_slower():
    # H200: 989 TFLOP/s BF16, 1979 TFLOP/s FP8, 4.8 TB/s. Worked by hand:
    #   bf16 compute-bound: max(9.89e12 / 989e12 = 10 ms, 4.8e9 / 4.8e12 = 1 ms)  = 10 ms
    #   fp8 memory-bound:   max(1.979e12 / 1979e12 = 1 ms, 9.6e10 / 4.8e12 = 20 ms) = 20 ms
    ks = [sol.Kernel("a", "gemm", False, 9.89e12, 4.8e9), sol.Kernel("b", "gemm", True, 1.979e12, 9.6e10)]
    assert sol.sol_ms(ks, H200) == pytest.approx(30.0)
    whole = _ks("mla_generation", V3, batch=64, kv_len=8192)
    assert sol.sol_ms(whole, load_system("h100_sxm")) > sol.sol_ms(whole, H200)  # 3.35 TB/s against 4.8


def test_scalar_and_array_shapes_agree():
    import numpy as np

    arr = sol.sol_ms(sol.kernels("dsa_context", V32, batch=np.array([2.0]), isl=np.array([3000.0]),
                                 prefix=np.array([0.0]), kv_len=np.array([0.0]), num_heads=np.array([16.0])), H200)
    one = sol.sol_ms(_ks("dsa_context", V32, batch=2, isl=3000, num_heads=16), H200)
    assert arr[0] == pytest.approx(one)


def test_system_spec_optional_keys_and_bad_keys():
    from estimator.physics.specs import system_from_mapping

    base = dict(name="x", peak_bf16_flops_per_s=1e15, peak_fp8_flops_per_s=2e15, hbm_bytes_per_s=8e12,
                memory_bytes=1.8e11, sm_count=148, family="blackwell")
    plain = system_from_mapping(base)
    assert plain.peak_fp4_flops_per_s is None and plain.sm_clock_hz is None and plain.sources == ()
    full = system_from_mapping({**base, "peak_fp4_flops_per_s": "4e15", "sm_clock_hz": 1.965e9,
                                "sources": ["https://example.org/datasheet.pdf", "vendor brief"]})
    assert full.peak_fp4_flops_per_s == 4e15 and full.sm_clock_hz == 1.965e9
    assert full.sources == ("https://example.org/datasheet.pdf", "vendor brief")
    with pytest.raises(ValueError, match="missing hbm_bytes_per_s"):
        system_from_mapping({k: v for k, v in base.items() if k != "hbm_bytes_per_s"})
    with pytest.raises(ValueError, match="unknown peak_fp16"):
        system_from_mapping({**base, "peak_fp16": 1.0})
    with pytest.raises(ValueError, match="sources must be a list of strings"):
        system_from_mapping({**base, "sources": "one string"})
    with pytest.raises(ValueError, match="non-numeric"):
        system_from_mapping({**base, "sm_count": "many"})
