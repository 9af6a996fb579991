"""benchmarks/offgrid_waves.py: the collector's split-KV launch and where its wave steps fall between grid values."""

from __future__ import annotations

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def waves():
    return load_benchmark("offgrid_waves")


def test_dsa_decode_batch_96_is_a_wave_step_between_64_and_128(waves):
    # 128 heads = 2 head blocks of 64. Batch 64: 128 programs < 132 SMs, split-KV 2 -> 256 programs of 1,024
    # slots, 2 waves; batch 96: 192 programs, no split, 2 waves of 2,048; batch 128: 256 programs, 2 waves.
    assert waves.makespan("dsa_generation", 64, 128, 8192) == 2 * 1024
    assert waves.makespan("dsa_generation", 96, 128, 8192) == 2 * 2048
    assert waves.makespan("dsa_generation", 128, 128, 8192) == 2 * 2048
    # log2 interpolation between 64 and 128 gives 2048 * 2**0.585 = 3072: 25% below the launch at 96
    pct = waves.wave_step_pct("dsa_generation", 128, 96, 8192, [32, 64, 128], [4096, 8192, 16384])
    assert pct == pytest.approx(-25.0, abs=1e-9)
    # batch 128 is on the grid: no step
    assert waves.wave_step_pct("dsa_generation", 128, 128, 8192, [32, 64, 128], [4096, 8192]) == pytest.approx(0)


def test_mla_decode_attends_over_kv_len(waves):
    # batch 8, 2 head blocks: split-KV up to kv_len / 256 (chunks of >= 256 keys) toward 4 x 132 programs
    assert waves.makespan("mla_generation", 8, 128, 4096) == 2 * 256  # 16 splits: 256 programs, 2 waves
    # 33 splits wanted; chunks rounded up to 512 keys -> 32 splits, 512 programs, 4 waves
    assert waves.makespan("mla_generation", 8, 128, 16384) == 4 * 512
    # batch 1: enough splits that one wave of 256-key chunks covers kv_len up to 16,384
    assert waves.makespan("mla_generation", 1, 128, 4096) == waves.makespan("mla_generation", 1, 128, 16384) == 256
    # DSA decode attends over the top-k slots whatever kv_len is
    assert waves.makespan("dsa_generation", 8, 128, 4096) == waves.makespan("dsa_generation", 8, 128, 65536)
