"""Whole attention modules and GEMM quantisation (CPU reference paths; Triton
path vs reference through the interpreter where triton is installed)."""
import pytest

torch = pytest.importorskip("torch")

from collector.gemm import Linear, dequant_blocks, quant_groups_ref, quant_weight_blocks  # noqa: E402
from collector.modules import AttentionModule  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def test_block_quant_roundtrip():
    w = torch.randn(256, 384)
    wq, s = quant_weight_blocks(w)
    assert wq.dtype == torch.float8_e4m3fn and s.shape == (2, 3)
    assert ((dequant_blocks(wq, s) - w).norm() / w.norm()) < 5e-2
    x = torch.randn(5, 256)
    xq, xs = quant_groups_ref(x)
    assert xs.shape == (5, 2)


@pytest.mark.parametrize("gemm_type", ["bfloat16", "fp8_block", "fp8_tensor"])
def test_linear_reference_close_to_float(gemm_type):
    g = torch.Generator().manual_seed(0)
    lin = Linear(256, 200, gemm_type, "cpu", torch.float32, generator=g)
    x = torch.randn(7, 256, generator=g)
    y = lin(x)
    assert y.shape == (7, 256)  # out features padded to a multiple of 128
    exact = x @ lin.w_ref.float().t()
    assert ((y - exact).norm() / exact.norm()) < 6e-2


def test_bad_arguments_fail_loudly():
    with pytest.raises(ValueError, match="family"):
        AttentionModule("gqa", 16, device="cpu")
    with pytest.raises(ValueError, match="num_heads"):
        AttentionModule("mla", 256, device="cpu")
    with pytest.raises(ValueError, match="gemm_type"):
        Linear(128, 128, "int8", "cpu")


@pytest.mark.parametrize("family", ["dsa", "mla"])
def test_module_reference_paths(family):
    m = AttentionModule(family, 16, "fp8_block", "bfloat16", device="cpu", topk=16, use_triton=False)
    ctx = m.prepare_context(2, 24, 8 if family == "dsa" else 0)
    y = ctx.run()
    assert y.shape == (48, 7168) and torch.isfinite(y).all()
    if family == "dsa":
        assert ctx.meta["indexer_logits"]  # 32 keys > topk 16: logits + top-k ran
        idx = ctx.state["idx"]
        assert (idx >= 0).sum(1).max() == 16
    gen = m.prepare_generation(3, 40)
    y = gen.run()
    assert y.shape == (3, 7168) and torch.isfinite(y).all()


def test_mla_context_with_prefix_runs():
    m = AttentionModule("mla", 16, "bfloat16", "fp8", device="cpu", use_triton=False)
    y = m.prepare_context(2, 16, 24).run()
    assert y.shape == (32, 7168) and torch.isfinite(y).all()


def test_module_triton_matches_reference_on_cpu():
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("GPU: covered by test_gpu.py")
    from collector.kernels import indexer as IDX
    from collector.kernels import mla_attn as ATT
    from collector.kernels.interp import patch_interpreter
    patch_interpreter()
    saved = (dict(ATT.CONFIG), dict(ATT.CONFIG_DEC), dict(IDX.CTX_CONFIG), dict(IDX.GEN_CONFIG))
    for c in (ATT.CONFIG, ATT.CONFIG_DEC):
        c.update(block_n=16, block_h_max=16)
    IDX.CTX_CONFIG.update(block_m=16, block_n=16)
    IDX.GEN_CONFIG.update(block_n=16, blocks=2)
    try:
        for family in ("dsa", "mla"):
            mt = AttentionModule(family, 16, "bfloat16", device="cpu", topk=16, use_triton=True)
            mr = AttentionModule(family, 16, "bfloat16", device="cpu", topk=16, use_triton=False)
            assert mt.use_triton and not mr.use_triton
            yt, yr = mt.prepare_generation(2, 30).run(), mr.prepare_generation(2, 30).run()
            assert ((yt - yr).norm() / yr.norm()) < 1e-4
            if family == "dsa":
                yt, yr = mt.prepare_context(1, 20, 4).run(), mr.prepare_context(1, 20, 4).run()
                assert ((yt - yr).norm() / yr.norm()) < 1e-4
    finally:
        ATT.CONFIG.update(saved[0]), ATT.CONFIG_DEC.update(saved[1])
        IDX.CTX_CONFIG.update(saved[2]), IDX.GEN_CONFIG.update(saved[3])
