"""The folded SOL evaluators (estimator.physics.fastsol) agree with the kernel list they fold."""

import pytest

from estimator.physics import sol
from estimator.physics.specs import load_model, load_system


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


@pytest.mark.parametrize("source", ["sglang_dsa_dense_mha_fa3", "sglang_dsa_dense_mha_fa3+skip_indexer",
                                    "sglang_dsa_skip_indexer_flashmla_kv"])
@pytest.mark.parametrize("op", ["dsa_context", "dsa_generation"])
def test_compiled_sol_follows_the_kernel_source_variant(op, source):
    """Both folded evaluators fold the kernel_source's kernels, not DSA's own."""
    import numpy as np

    from estimator.physics.calibrate import CalibrationParams, calibrated_ms
    from estimator.physics.fastsol import compile_array, compile_scalar

    params = CalibrationParams(eff={g: (0.3 + 0.05 * i, 0.4 + 0.03 * i) for i, g in enumerate(sol.GROUPS)},
                               overhead_ms=0.07, combine_p=3.0)
    spec, system = load_model("deepseek-v3.2"), load_system("h200_sxm")
    context = "context" in op
    b, s, pre, h = np.array([1.0, 4.0, 64.0]), np.array([100.0, 2048.0, 9000.0]), np.array([0.0, 128.0, 0.0]), \
        np.array([16.0, 64.0, 128.0])
    pre = pre if context else np.zeros(3)
    shape = dict(batch=b, isl=s if context else 1.0, prefix=pre, kv_len=0.0 if context else s, num_heads=h)
    ref = calibrated_ms(sol.kernels(op, spec, kernel_source=source, **shape), system, params)
    assert not np.allclose(ref, calibrated_ms(sol.kernels(op, spec, **shape), system, params), rtol=1e-3)
    arr = compile_array(op, spec, system, params, gemm_type="bfloat16", kv_cache_dtype="bfloat16",
                        kernel_source=source)(b, s, pre, h)
    assert np.allclose(arr, ref, rtol=1e-12, atol=0)
    fast = compile_scalar(op, spec, system, params, gemm_type="bfloat16", kv_cache_dtype="bfloat16",
                          kernel_source=source)
    for i in range(3):
        assert fast(b[i], s[i], pre[i], h[i])[0] == pytest.approx(ref[i], rel=1e-12)
