"""benchmarks/transfer_siblings.py: sibling latency ratios and the proxy-ratio column (pure functions)."""

from __future__ import annotations

import polars as pl
import pytest

from tests.benchmark_scripts import load_benchmark

SHAPE = dict(framework="vllm", version="0.24.0", op="mla_generation", architecture="DeepseekV3ForCausalLM",
             attn_dtype="bfloat16", kv_cache_dtype="fp8", gemm_type="bfloat16", num_heads=128, isl=None,
             prefix=None, kv_len=4096)


def _points(rows):
    """rows: (system, kernel_source, batch_size, latency_ms)."""
    return pl.DataFrame([{**SHAPE, "system": s, "kernel_source": ks, "batch_size": b, "latency_ms": lat}
                         for s, ks, b, lat in rows])


@pytest.fixture(scope="module")
def mod():
    return load_benchmark("transfer_siblings")


def test_sibling_ratio_is_taken_on_shared_shapes_of_one_kernel(mod):
    pts = _points([("b300_sxm", "FI", 1, 0.2), ("b200_sxm", "FI", 1, 0.1), ("b300_sxm", "FI", 2, 0.6),
                   ("b200_sxm", "FI", 2, 0.2), ("b300_sxm", "FI", 4, 9.0),  # B200 lacks batch 4
                   ("b200_sxm", "OTHER", 1, 0.01)])  # another kernel of B200: not B300's
    r = mod.sibling_ratios(pts, "b300_sxm", "b200_sxm").row(0, named=True)
    assert r["n"] == 2 and r["median"] == pytest.approx(2.5)  # ratios 2 and 3


def test_proxy_moves_the_copy_by_the_other_pair_of_the_same_classes_and_skips_excluded(mod):
    # B200 <- H200 (blackwell/x86 <- hopper/x86): the proxy pair is B300 / H100, each on its own kernel
    pts = _points([("b300_sxm", "FI", 1, 0.3), ("h100_sxm", "FMLA", 1, 0.1),
                   ("h100_sxm", "FMLA", 2, 0.1),  # B300 lacks batch 2: no proxy there
                   ("rtx_pro_6000_server", "FI", 1, 5.0),  # same class by its spec, excluded below
                   ("rtx_pro_6000_server", "FI", 2, 1.0)])
    errors = pl.DataFrame([{"target": "b200_sxm", "from_system": "h200_sxm", **SHAPE, "kernel_source": "FI",
                            "batch_size": b, "prefix": 0, "from_kernel_source": "FMLA", "seq_len": 4096,
                            "measured_ms": 0.5, "pred_ms": 0.4, "source": "transferred", "copy_ms": 0.2,
                            "roofline_ms": 0.1} for b in (1, 2)])
    got = mod.with_proxy(errors, pts, exclude=("rtx_pro_6000_server",)).sort("batch_size")
    assert got["proxy_ms"].to_list() == [pytest.approx(0.6), None]  # 0.2 x 0.3 / 0.1
    assert got["proxies"][0] == "b300_sxm/h100_sxm"
    both = mod.with_proxy(errors, pts).sort("batch_size")  # with the RTX card: geometric mean of 3 and 50;
    assert both["proxy_ms"][0] == pytest.approx(0.2 * (3.0 * 50.0) ** 0.5)  # batch 2: RTX's 10 alone
    assert both["proxy_ms"][1] == pytest.approx(2.0)
    tab = mod.proxy_table(got).row(0, named=True)
    assert tab["n"] == 1 and tab["proxy_med"] == pytest.approx(20.0) and tab["copy_med"] == pytest.approx(60.0)


@pytest.mark.parametrize("bad", ["b300_sxm", "b300_sxm:", ":b200_sxm", "a:b:c"])
def test_ratio_argument_is_two_systems(mod, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        mod.main(["--home", "/nonexistent", "--ratio", bad])
    assert exc.value.code == 2 and "expected SYSTEM_A:SYSTEM_B" in capsys.readouterr().err
