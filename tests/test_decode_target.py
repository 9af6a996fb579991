"""benchmarks/decode_target.py: the decode target's bytes and FLOP, and TensorRT-LLM's row beside it."""

from __future__ import annotations

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def mod():
    return load_benchmark("decode_target")


def test_shape_cost_counts_cache_q_and_out_bytes(mod):
    # b=64, kv 32768, 576-wide rows: 2,415,919,104 cache bytes (bf16) + q 9,437,184 + out 8,388,608
    assert mod.shape_cost("bfloat16") == (2_433_744_896, 584_115_552_256)
    # FP8 halves only the cache; the FLOP do not change
    assert mod.shape_cost("fp8") == (1_225_785_344, 584_115_552_256)


def test_unknown_system_is_one_line(mod, capsys):
    with pytest.raises(SystemExit) as e:
        mod.main(["--systems", "h999"])
    assert e.value.code == 2
    assert "unknown system 'h999'" in capsys.readouterr().err


def test_prints_what_the_target_asks_beside_tensorrt_llm(mod, capsys):
    pytest.importorskip("aiconfigurator_core")
    assert mod.main(["--systems", "h100_sxm"]) == 0
    out = capsys.readouterr().out
    # 2.5 TB/s at 128 heads is a compute target: 61% of the H100's dense BF16 peak with the bf16 cache,
    # more than its whole BF16 peak with the FP8 cache; TensorRT-LLM's published H100 kernel row beside it
    assert "needs <= 0.973 ms = 600 TFLOP/s = 61% of dense BF16" in out
    assert "needs <= 0.490 ms = 1,191 TFLOP/s = 120% of dense BF16, 60% of dense FP8" in out
    assert "TensorRT-LLM 0.935 ms = 2,603 GB/s" in out and "TensorRT-LLM 0.805 ms = 1,523 GB/s" in out
