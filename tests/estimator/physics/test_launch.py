"""The collector attention launch waves in the SOL (estimator.physics.launch).

The launch rule is a pure-Python mirror of collector/kernels/mla_attn.py: these tests pin the two
together, check that a wave step shows in the SOL, and that only the collector's own slices get it.
"""

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from estimator.physics import launch, sol
from estimator.physics.calibrate import CalibrationParams, calibrated_ms, params_from_frame, points_launch
from estimator.physics.launch import Launch
from estimator.physics.specs import load_model, load_system

REPO = Path(__file__).resolve().parents[3]
PARAMS = {g: (0.3 + 0.05 * i, 0.4 + 0.03 * i) for i, g in enumerate(sol.GROUPS)}


@pytest.fixture(scope="module")
def mla_attn():
    return pytest.importorskip("collector.kernels.mla_attn")


def test_pick_splits_is_the_collectors(mla_attn):
    for tokens in (1, 2, 3, 5, 8, 24, 48, 96, 128, 264, 300, 2048):
        for hb in (1, 2, 4):
            for slots in (64, 255, 256, 1025, 2048, 8193, 131073):
                for target in (1, 2, 4):
                    assert launch.pick_splits(tokens, hb, slots, 132, target=target) == \
                        mla_attn.pick_splits(tokens, hb, slots, 132, target=target), (tokens, hb, slots, target)
    assert inspect.signature(mla_attn.pick_splits).parameters["min_chunk"].default == launch.MIN_CHUNK


def test_launch_configs_are_the_collectors(mla_attn):
    """The module defaults and the configs the H100 / H200 runs loaded (collector/configs)."""
    for mine, theirs in ((launch.ATTN_CTX, mla_attn.CONFIG), (launch.ATTN_DEC, mla_attn.CONFIG_DEC)):
        assert {k: theirs[k] for k in mine} == mine
    assert launch.DEC_PROGRAMS == mla_attn.DEC_PROGRAMS
    for name in ("h100.json", "h200.json"):
        cfg = json.loads((REPO / "collector" / "configs" / name).read_text())
        assert {k: cfg["attn_config"][k] for k in launch.ATTN_CTX} == launch.ATTN_CTX, name
        assert {k: cfg["attn_config_dec"][k] for k in launch.ATTN_DEC} == launch.ATTN_DEC, name


def test_rules_follow_the_collector_version(mla_attn):
    """The current collector decodes MLA with mla_decode.py (no rule); DSA keeps the sparse launch."""
    import collector

    assert mla_attn.DENSE_IMPL == "decode"
    assert launch.RULES[(collector.FRAMEWORK, collector.VERSION)] == {"dsa_generation": "sparse"}
    assert launch.launch_rule("perfwh", "0.1", "mla_generation") == "dense"


def test_launch_matches_the_offgrid_waves_rebuild():
    """benchmarks/offgrid_waves.py rebuilds the launch from the collector module itself: same waves x chunk."""
    from tests.benchmark_scripts import load_benchmark

    pytest.importorskip("collector.kernels.mla_attn")
    waves = load_benchmark("offgrid_waves")
    for b in (1, 3, 12, 24, 48, 64, 96, 128, 256):
        for h in (16, 32, 64, 128):
            programs, chunk, _ = launch.attn_launch(b, h, 2048, 132, dense=False)
            assert -(-programs // 132) * chunk == waves.makespan("dsa_generation", b, h, 8192)
            programs, chunk, _ = launch.attn_launch(b, h, 3072, 132, dense=True)
            assert -(-programs // 132) * chunk == waves.makespan("mla_generation", b, h, 3072)


def test_dsa_decode_wave_step_by_hand():
    """128 heads = 2 blocks of 64 rows. Batch 64: split-KV 2, 256 programs of 1,024 slots (2 waves);
    batch 96: 192 programs of 2,048 (2 waves); batch 128: 256 programs of 2,048 (2 waves)."""
    on = Launch("sparse", 132)
    assert launch.occupied(on, 64, 128, 2048) == 2 * 132 * 1024 * 64
    assert launch.occupied(on, 96, 128, 2048) == 2 * 132 * 2048 * 64
    assert launch.occupied(on, 128, 128, 2048) == 2 * 132 * 2048 * 64
    # the sparse kernel form is thp x index_topk = batch x 128 x 2048 head-row x key slots
    spec = load_model("deepseek-v3.2")
    for b, scale in ((64, 132 * 2 * 1024 * 64 / (64 * 128 * 2048)), (96, 132 * 2 * 64 / (96 * 128)),
                     (128, 132 * 2 * 64 / (128 * 128))):
        plain, waved = (next(k for k in sol.kernels("dsa_generation", spec, batch=b, isl=1, prefix=0, kv_len=3072,
                                                    num_heads=128, launch=la) if k.name == "sparse_attention")
                        for la in (None, on))
        assert waved.flops == pytest.approx(plain.flops * scale, rel=1e-12)
        assert waved.bytes == pytest.approx(plain.bytes * scale, rel=1e-12)
    assert 132 * 2 * 64 / (96 * 128) == 1.375 and 132 * 2 * 1024 * 64 / (64 * 128 * 2048) == 1.03125


def test_array_occupancy_does_not_wrap_where_the_scalar_is_exact():
    """batch and index_topk near 2^31 made the array path's int64 product wrap past 2^63: estimate_many
    answered 3.2e6 ms where estimate answered 2.3e12 ms for the same DSA decode shape."""
    on = Launch("sparse", 132)
    for b, k in ((2**31 - 1, 2**31 - 1), (2**31 - 1, 2048), (64, 2048), (2**20, 2**24)):
        one = launch.occupied(on, b, 128, k)
        many = launch.occupied(on, np.array([b, 64.0]), np.array([128.0, 128.0]), np.array([k, 2048.0]))
        assert many[0] == pytest.approx(one, rel=1e-12) and one > 0
        assert many[1] == launch.occupied(on, 64, 128, 2048)


def test_wave_step_shows_in_the_calibrated_sol():
    """DSA decode at 128 heads: batch 96 runs two full waves like 128, so its waved SOL sits above the
    log2 interpolation between batch 64 and 128 (what a grid of powers of two sees); the plain SOL
    does not (it is slightly concave there)."""
    spec, system = load_model("deepseek-v3.2"), load_system("h100_sxm")
    b = np.array([64.0, 96.0, 128.0])
    shape = dict(batch=b, isl=1.0, prefix=0.0, kv_len=np.full(3, 3072.0), num_heads=np.full(3, 128.0))

    def above_interpolation(y):
        w = np.log2(96 / 64)
        return y[1] / 2 ** ((1 - w) * np.log2(y[0]) + w * np.log2(y[2])) - 1

    plain = calibrated_ms(sol.kernels("dsa_generation", spec, **shape), system, CalibrationParams(PARAMS))
    waved = calibrated_ms(sol.kernels("dsa_generation", spec, launch=Launch("sparse", 132), **shape), system,
                          CalibrationParams(PARAMS, launch="sparse"))
    assert above_interpolation(plain) < 0
    assert above_interpolation(waved) > 0.05


def test_mla_dense_launch_counts_the_extra_key():
    """MLA decode attends over kv_len + 1 keys: at batch 8, 128 heads, kv_len 4096, split-KV 16 gives
    chunks of ceil(4097 / 16) = 257 -> 320 keys (blocks of 64), 13 splits, 208 programs: 2 waves."""
    assert launch.attn_launch(8, 128, 4097, 132, dense=True) == (8 * 2 * 13, 320, 64)
    assert launch.occupied(Launch("dense", 132), 8, 128, 4097) == 2 * 132 * 320 * 64


def test_only_the_collectors_slices_get_a_launch():
    assert launch.launch_rule("trtllm", "1.3.0rc20", "dsa_generation") is None
    assert launch.launch_rule("sglang", "0.1", "mla_generation") is None
    assert launch.launch_rule("perfwh", "0.1", "dsa_context") is None  # not modelled: plain SOL
    import polars as pl

    frame = pl.DataFrame({"system": ["h200_sxm"] * 2, "framework": ["trtllm", "perfwh"], "version": ["1.3.0rc20", "0.1"],
                          "op": ["dsa_generation"] * 2, "kernel_source": ["default", "triton_sparse"],
                          "param": ["overhead_ms"] * 2, "group": [""] * 2, "value": [0.05, 0.05]})
    params = params_from_frame(frame)
    assert params[("h200_sxm", "trtllm", "1.3.0rc20", "dsa_generation", "default")].launch is None
    assert params[("h200_sxm", "perfwh", "0.1", "dsa_generation", "triton_sparse")].launch == "sparse"


def test_a_fit_cannot_mix_launch_rules():
    import polars as pl

    pts = pl.DataFrame({"framework": ["perfwh", "perfwh"], "version": ["0.1", "0.2"],
                        "op": ["mla_generation", "mla_generation"]})
    with pytest.raises(ValueError, match="mix attention launch rules"):
        points_launch(pts)
    assert points_launch(pts.head(1)) == "dense"
    assert points_launch(pts.tail(1)) is None


def test_launch_is_none_without_a_rule_and_the_sol_is_unchanged():
    """A launch whose rule is another kernel's (dense on a DSA op) leaves every kernel as it was."""
    spec = load_model("deepseek-v3.2")
    shape = dict(batch=96, isl=1, prefix=0, kv_len=3072, num_heads=128)
    assert sol.kernels("dsa_generation", spec, launch=Launch("dense", 132), **shape) == \
        sol.kernels("dsa_generation", spec, **shape)


@pytest.mark.parametrize("op, rule, model", [("dsa_generation", "sparse", "deepseek-v3.2"),
                                             ("mla_generation", "dense", "deepseek-v3")])
@pytest.mark.parametrize("kv", ["bfloat16", "fp8"])
def test_folded_sol_follows_the_launch(op, rule, model, kv):
    """compile_scalar and compile_array scale the attention kernel as sol.kernels does."""
    from estimator.physics.fastsol import compile_array, compile_scalar

    params = CalibrationParams(PARAMS, overhead_ms=0.07, combine_p=3.0, launch=rule)
    spec, system = load_model(model), load_system("h200_sxm")
    rng = np.random.default_rng(1)
    b, s, h = (rng.integers(1, hi, 200).astype(float) for hi in (300, 140_000, 129))
    shape = dict(batch=b, isl=1.0, prefix=0.0, kv_len=s, num_heads=h)
    ref = calibrated_ms(sol.kernels(op, spec, kv_cache_dtype=kv, launch=Launch(rule, system.sm_count), **shape),
                        system, params)
    plain = calibrated_ms(sol.kernels(op, spec, kv_cache_dtype=kv, **shape), system, params)
    assert not np.allclose(ref, plain, rtol=1e-3)
    arr = compile_array(op, spec, system, params, gemm_type="bfloat16", kv_cache_dtype=kv)(b, s, 0 * b, h)
    assert np.allclose(arr, ref, rtol=1e-12, atol=0)
    fast = compile_scalar(op, spec, system, params, gemm_type="bfloat16", kv_cache_dtype=kv)
    for i in range(0, 200, 7):
        cal, raw = fast(b[i], s[i], 0.0, h[i])
        assert cal == pytest.approx(ref[i], rel=1e-12)
        ks = sol.kernels(op, spec, kv_cache_dtype=kv, launch=Launch(rule, system.sm_count), batch=b[i], isl=1,
                         prefix=0, kv_len=s[i], num_heads=h[i])
        assert raw == pytest.approx(sol.sol_ms(ks, system), rel=1e-12)


@pytest.mark.parametrize("rule", ["sparse", "dense"])
def test_array_launch_is_the_scalar_one(rule):
    """`occupied` evaluates the one rule on int arrays (estimate_many) as on ints (one estimate)."""
    rng = np.random.default_rng(2)
    t, h, k = rng.integers(1, 5000, 3000), rng.integers(1, 257, 3000), rng.integers(1, 400_000, 3000)
    on = Launch(rule, 132)
    arr = launch.occupied(on, t.astype(float), h.astype(float), k.astype(float))
    assert arr.dtype == np.float64
    assert np.array_equal(arr, [launch.occupied(on, int(a), int(b), int(c)) for a, b, c in zip(t, h, k)])
    assert launch.occupied(on, 95.2, 127.5, 2047.1) == launch.occupied(on, 96, 128, 2048)  # rounded up
