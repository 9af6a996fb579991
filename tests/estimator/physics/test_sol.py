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
    ks = _ks("mla_generation", V3, batch=64, kv_len=8192)
    total = sum(max(k.flops / (H200.peak_fp8_flops_per_s if k.fp8 else H200.peak_bf16_flops_per_s),
                    k.bytes / H200.hbm_bytes_per_s) for k in ks) * 1e3
    assert sol.sol_ms(ks, H200) == pytest.approx(total)
    assert sol.sol_ms(ks, load_system("h100_sxm")) > sol.sol_ms(ks, H200)


def test_scalar_and_array_shapes_agree():
    import numpy as np

    arr = sol.sol_ms(sol.kernels("dsa_context", V32, batch=np.array([2.0]), isl=np.array([3000.0]),
                                 prefix=np.array([0.0]), kv_len=np.array([0.0]), num_heads=np.array([16.0])), H200)
    one = sol.sol_ms(_ks("dsa_context", V32, batch=2, isl=3000, num_heads=16), H200)
    assert arr[0] == pytest.approx(one)


@pytest.mark.parametrize("op, model", [("dsa_context", "deepseek-v3.2"), ("dsa_generation", "glm-5"),
                                       ("mla_context", "deepseek-v3"), ("mla_generation", "deepseek-v3"),
                                       ("mla_context_kernel", "deepseek-v3"), ("mla_generation_kernel", "deepseek-v3")])
@pytest.mark.parametrize("gemm, kv", [("bfloat16", "bfloat16"), ("fp8_block", "fp8")])
def test_compiled_scalar_sol_matches_kernel_list(op, model, gemm, kv):
    import random

    from estimator.physics.calibrate import CalibrationParams, calibrated_ms
    from estimator.physics.fastsol import compile_scalar

    params = CalibrationParams(eff={g: (0.3 + 0.05 * i, 0.4 + 0.03 * i) for i, g in enumerate(sol.GROUPS)},
                               overhead_ms=0.07, combine_p=40.0)
    system = load_system("h100_sxm")
    spec = load_model(model)
    fast = compile_scalar(op, spec, system, params, gemm_type=gemm, kv_cache_dtype=kv)
    rng = random.Random(0)
    context = "context" in op
    for _ in range(100):
        b, s, h = rng.randint(1, 4096), rng.randint(1, 300_000), rng.randint(1, 256)
        pre = rng.choice([0, 128, 5000]) if context else 0
        ks = sol.kernels(op, spec, batch=b, isl=s if context else 1, prefix=pre, kv_len=0 if context else s,
                         num_heads=h, gemm_type=gemm, kv_cache_dtype=kv)
        cal, raw = fast(b, s, pre, h)
        assert cal == pytest.approx(calibrated_ms(ks, system, params), rel=1e-12)
        assert raw == pytest.approx(sol.sol_ms(ks, system), rel=1e-12)


@pytest.mark.parametrize("op, model", [("dsa_context", "deepseek-v3.2"), ("dsa_generation", "glm-5"),
                                       ("mla_context", "deepseek-v3"), ("mla_generation", "deepseek-v3"),
                                       ("mla_context_kernel", "deepseek-v3"), ("mla_generation_kernel", "deepseek-v3")])
def test_compiled_array_sol_matches_kernel_list(op, model):
    import numpy as np

    from estimator.physics.calibrate import CalibrationParams, calibrated_ms
    from estimator.physics.fastsol import compile_array

    params = CalibrationParams(eff={g: (0.3 + 0.05 * i, 0.4 + 0.03 * i) for i, g in enumerate(sol.GROUPS)},
                               overhead_ms=0.07, combine_p=3.0)
    spec, system = load_model(model), load_system("h200_sxm")
    rng = np.random.default_rng(0)
    n = 500
    b, s, h = (rng.integers(1, hi, n).astype(float) for hi in (4096, 300_000, 256))
    context = "context" in op
    pre = rng.choice([0.0, 128.0, 5000.0], n) if context else np.zeros(n)
    for gemm, kv in (("bfloat16", "bfloat16"), ("fp8_block", "fp8")):
        ks = sol.kernels(op, spec, batch=b, isl=s if context else 1.0, prefix=pre, kv_len=0.0 if context else s,
                         num_heads=h, gemm_type=gemm, kv_cache_dtype=kv)
        ref = calibrated_ms(ks, system, params)
        f64 = compile_array(op, spec, system, params, gemm_type=gemm, kv_cache_dtype=kv)(b, s, pre, h)
        f32 = compile_array(op, spec, system, params, gemm_type=gemm, kv_cache_dtype=kv, dtype=np.float32)(b, s, pre, h)
        assert np.allclose(f64, ref, rtol=1e-12, atol=0)
        assert np.allclose(f32, ref, rtol=2e-5, atol=0)


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
