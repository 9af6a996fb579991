"""benchmarks/decode_extrapolation_bias.py: the batch step that marks a change of timing regime."""

import polars as pl

from tests.benchmark_scripts import load_benchmark

BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]


def _points(latency, kernel_source="k", kv_lens=(1, 64, 1024, 4096)) -> pl.DataFrame:
    rows = [{"op": "dsa_generation", "kernel_source": kernel_source, "architecture": "A", "kv_cache_dtype": "fp8",
             "gemm_type": "fp8_block", "num_heads": 16, "batch_size": b, "kv_len": kv, "latency_ms": latency(b, kv)}
            for b in BATCHES for kv in kv_lens]
    return pl.DataFrame(rows)


def test_a_graph_to_eager_step_is_found_and_physical_growth_is_not():
    mod = load_benchmark("decode_extrapolation_bias")
    # graph-timed up to batch 256 (work grows at most linearly), then a flat host-bound floor
    graph = lambda b, kv: 0.05 + 0.0005 * b  # noqa: E731
    stepped = _points(lambda b, kv: graph(b, kv) if b <= 256 else 1.3)
    steps = mod.batch_steps(stepped, "dsa_generation")
    assert steps.columns[1:] == [str(b) for b in BATCHES[1:]]  # batch order, not string order
    assert steps["512"][0] > 5 and abs(steps["1024"][0] - 1.0) < 1e-9
    assert mod.first_step(stepped, "dsa_generation") == 512
    # a doubled batch that doubles the latency (the most physics allows) is no step
    assert mod.first_step(_points(lambda b, kv: 0.001 * b), "dsa_generation") is None


def test_long_sequences_do_not_enter_the_step():
    mod = load_benchmark("decode_extrapolation_bias")
    # a jump only at kv_len 4096 (> 1024): short-sequence rows decide, and they grow smoothly
    pts = _points(lambda b, kv: 0.05 + 0.0005 * b + (2.0 if kv == 4096 and b >= 512 else 0.0))
    assert mod.first_step(pts, "dsa_generation") is None
