"""benchmarks/mla_context_noise.py: the second difference along isl, worked out by hand."""

import numpy as np
import polars as pl

from tests.benchmark_scripts import load_benchmark


def _points(latencies: dict[int, float], kv: str = "bfloat16") -> pl.DataFrame:
    return pl.DataFrame({"op": "mla_context", "num_heads": 8, "kv_cache_dtype": kv, "gemm_type": "bfloat16",
                         "batch_size": 4, "isl": list(latencies), "latency_ms": list(latencies.values())})


def test_second_difference_is_zero_on_a_power_law_and_sees_one_bumped_cell():
    mod = load_benchmark("mla_context_noise")
    isl = [512, 1024, 1536, 2048, 4096]
    smooth = {s: 0.01 * s**1.5 for s in isl}  # straight in log2 latency vs log2 isl
    r = mod.second_differences(_points(smooth))
    assert r["isl"].to_list() == [1024, 1536, 2048]  # interior cells of the line only
    assert np.allclose(r["r"].to_numpy(), 0.0, atol=1e-12)
    bumped = dict(smooth)
    bumped[1536] *= 2.0  # one cell one octave high: r = +1 there, the neighbours see minus its weights
    r = mod.second_differences(_points(bumped)).sort("isl")["r"].to_numpy()
    x = np.log2(isl)
    w_left = (x[1] - x[0]) / (x[2] - x[0])  # 1024 between 512 and 1536: 1536 enters with weight w
    w_right = (x[3] - x[2]) / (x[4] - x[2])  # 2048 between 1536 and 4096: 1536 enters with 1 - w
    assert np.allclose(r, [-w_left, 1.0, -(1 - w_right)])


def test_second_differences_stay_within_one_slice():
    mod = load_benchmark("mla_context_noise")
    isl = [512, 1024, 2048]
    a = _points({s: float(s) for s in isl})
    b = _points({s: 3.0 * s for s in isl}, kv="fp8")  # another slice, shifted: no jump across slices
    r = mod.second_differences(pl.concat([a, b]))
    assert r.height == 2 and np.allclose(r["r"].to_numpy(), 0.0)
