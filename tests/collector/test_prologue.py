"""The fused generation prologue (kernels/prologue.py, ``modules.PROLOGUE = "fused"``) against the eager
torch ops it replaces: the kernels alone, then whole modules (outputs and cache contents).

CPU: Triton's interpreter in float32, tight tolerance; GPU: compiled, bf16 activations (the eager path
rounds after each op, the fused one once), FP8 caches and the production decodes."""
import contextlib

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

import torch.nn.functional as F  # noqa: E402

from collector import modules as MOD  # noqa: E402
from collector.gemm import FP8  # noqa: E402
from collector.kernels import indexer as IDX  # noqa: E402
from collector.kernels import mla_attn as ATT  # noqa: E402
from collector.kernels import prologue as PRO  # noqa: E402
from tests.collector.tiles import interpreter_tiles  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
DT = torch.bfloat16 if CUDA else torch.float32
TOL = 2e-2 if CUDA else 1e-5
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
# Triton 3.6's interpreter rounds float32 -> e4m3 without carrying into the exponent (1.938 -> 1.0, torch
# and the GPU give 2.0), so the FP8 cache tests run on the GPU only.
fp8_gpu = pytest.mark.skipif(not CUDA, reason="FP8 casts: the Triton interpreter rounds e4m3 wrongly")


@pytest.fixture(autouse=True)
def small_tiles():
    saved = MOD.PROLOGUE, ATT.DENSE_IMPL
    with interpreter_tiles(CUDA):
        yield
    MOD.PROLOGUE, ATT.DENSE_IMPL = saved


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _is_min_scale(s) -> bool:
    """The scale of an all-zero group, 1e-4 / 448 (to float32 division rounding: the GPU divides faster)."""
    return torch.allclose(s, torch.full_like(s, 1e-4 / 448), rtol=1e-6, atol=0)


def _fp8_ulps_apart(a, b) -> int:
    """Largest distance in representable FP8 steps between two e4m3 tensors (finite values; -0 = +0)."""
    def ordinal(x):
        u = x.view(torch.uint8).int()
        return torch.where(u >= 128, 128 - u, u)  # sign-magnitude -> a monotone integer scale
    return int((ordinal(a) - ordinal(b)).abs().max())


@pytest.mark.parametrize("kv_dtype,kv_scale", [("act", 1.0), pytest.param("fp8", 0.5, marks=fp8_gpu)])
def test_gen_prologue_kernel(kv_dtype, kv_scale):
    g = torch.Generator(device=DEV).manual_seed(3)
    T, d_q, d_c, d_r, extra = 5, 1536, 512, 64, 192  # extra: DSA's indexer columns after k_pe
    a = torch.randn((T, d_q + d_c + d_r + extra), generator=g, device=DEV).to(DT)
    a_before = a.clone()
    qw = 1 + 0.1 * torch.randn(d_q, generator=g, device=DEV).to(DT)
    kw = 1 + 0.1 * torch.randn(d_c, generator=g, device=DEV).to(DT)
    ang = torch.rand((T, d_r // 2), generator=g, device=DEV) * 6
    cos, sin = ang.cos().to(DT), ang.sin().to(DT)
    store = FP8 if kv_dtype == "fp8" else DT
    Lc = 11
    kv = torch.randn((T * Lc, d_c + d_r), generator=g, device=DEV).to(DT).to(store)
    kv_before = kv.clone()
    start = torch.arange(T, device=DEV, dtype=torch.int32) * Lc
    length = torch.tensor([1, 4, 11, 7, 2], device=DEV, dtype=torch.int32)
    q_a = PRO.gen_prologue(a, qw, kw, cos, sin, kv, start, length, d_q=d_q, d_c=d_c, d_r=d_r, kv_scale=kv_scale)

    af = a.double()
    assert _rel(q_a, F.rms_norm(af[:, :d_q], (d_q,), qw.double(), 1e-6)) < TOL
    kv_c = F.rms_norm(af[:, d_q:d_q + d_c], (d_c,), kw.double(), 1e-6)
    k_pe = MOD.rope(af[:, d_q + d_c:d_q + d_c + d_r], cos.double(), sin.double())
    want = torch.cat([kv_c, k_pe], -1) / kv_scale
    rows = (start + length - 1).long()
    if store == FP8:
        assert _fp8_ulps_apart(kv[rows], want.float().to(FP8)) <= 1
    else:
        assert _rel(kv[rows], want) < TOL
    untouched = torch.ones(T * Lc, dtype=torch.bool, device=DEV)
    untouched[rows] = False
    assert torch.equal(kv[untouched].view(torch.uint8), kv_before[untouched].view(torch.uint8))
    assert torch.equal(a, a_before)


@pytest.mark.parametrize("H", [16, 128, 20])
def test_rope_q_from_strided_slice(H):
    g = torch.Generator(device=DEV).manual_seed(H)
    T = 3
    q = torch.randn((T, H * 192 + 128), generator=g, device=DEV).to(DT)[:, :H * 192].view(T, H, 192)
    ang = torch.rand((T, 32), generator=g, device=DEV) * 6
    cos, sin = ang.cos().to(DT), ang.sin().to(DT)
    out = PRO.rope_q(q[..., 128:], cos, sin)
    assert out.is_contiguous() and out.shape == (T, H, 64)
    ref = MOD.rope(q[..., 128:].double(), cos.double()[:, None], sin.double()[:, None])
    assert _rel(out, ref) < TOL


def _pair(family, H, b, kv_len, kv_cache="bfloat16", gemm="bfloat16"):
    """Module output and cache after one generation step, eager then fused (same weights and inputs)."""
    m = MOD.AttentionModule(family, H, gemm, kv_cache, device=DEV, topk=16 if not CUDA else None)
    res, calls = [], []
    for p in ("eager", "fused"):
        MOD.PROLOGUE = p
        step = m.prepare_generation(b, kv_len)
        with _counting(calls):
            y = step.run()
        assert calls == ([] if p == "eager" else ["gen_prologue", "rope_q"])
        res.append((y.float(), step.state["kv"].clone(), step.meta))
    MOD.PROLOGUE = "eager"
    return res


@contextlib.contextmanager
def _counting(calls):
    """Record which prologue kernels a module call launches."""
    saved = PRO.gen_prologue, PRO.rope_q

    def wrap(name, fn):
        return lambda *a, **k: (calls.append(name), fn(*a, **k))[1]
    PRO.gen_prologue, PRO.rope_q = wrap("gen_prologue", saved[0]), wrap("rope_q", saved[1])
    try:
        yield
    finally:
        PRO.gen_prologue, PRO.rope_q = saved


@pytest.mark.parametrize("family,H,b", [("mla", 16, 3), ("dsa", 16, 1), ("mla", 128, 1), ("dsa", 128, 3)])
def test_module_fused_matches_eager(family, H, b):
    (y0, kv0, meta), (y1, kv1, _) = _pair(family, H, b, kv_len=24 if not CUDA else 3000)
    assert torch.isfinite(y1).all()
    assert _rel(y1, y0) < TOL
    rows = torch.arange(b, device=DEV) * meta["Lc"] + meta["pos0"]
    assert _rel(kv1[rows], kv0[rows]) < TOL
    other = torch.ones(kv0.shape[0], dtype=torch.bool, device=DEV)
    other[rows] = False
    assert torch.equal(kv1[other], kv0[other])  # only this step's rows were written


@fp8_gpu
@pytest.mark.parametrize("family", ["mla", "dsa"])
def test_module_fused_fp8_cache(family):
    """The FP8 cache row: the fused cast matches the eager ``copy_`` (kv_scale 1) within one FP8 step."""
    (y0, kv0, meta), (y1, kv1, _) = _pair(family, 16, 3, kv_len=3000, kv_cache="fp8")
    assert kv0.dtype == kv1.dtype == FP8
    rows = torch.arange(3, device=DEV) * meta["Lc"] + meta["pos0"]
    assert _fp8_ulps_apart(kv1[rows], kv0[rows]) <= 1
    assert _rel(y1, y0) < 3e-2


def test_context_phase_stays_eager():
    """The switch covers generation only: a context step is the same computation either way."""
    m = MOD.AttentionModule("mla", 16, device=DEV)
    ys = []
    for p in ("eager", "fused"):
        MOD.PROLOGUE = p
        ys.append(m.prepare_context(1, 8).run())
    assert torch.equal(ys[0], ys[1])


def test_configs_switch_and_row_metadata(tmp_path):
    from collector import FUSED_PROLOGUE_VERSION, version_for
    from collector.logs import RawLogWriter
    from collector.measure import apply_configs, current_configs
    from collector.sweep import Shape
    apply_configs({"prologue": "fused"})
    assert MOD.PROLOGUE == "fused" and current_configs()["prologue"] == "fused"
    with pytest.raises(ValueError, match="prologue"):
        apply_configs({"prologue": "fast"})
    assert MOD.PROLOGUE == "fused"
    apply_configs({"prologue": "eager"})
    assert MOD.PROLOGUE == "eager"
    assert version_for("flashinfer", "fused") == version_for("decode", "fused") == FUSED_PROLOGUE_VERSION
    assert version_for("flashinfer") == "0.3" and version_for("decode", "eager") == "0.2"
    w = RawLogWriter(tmp_path, "h100_sxm", "NVIDIA H100", "r", {}, tag="p", dense_impl="flashinfer",
                     prologue="fused")
    gen = Shape("mla_generation", 128, "bfloat16", "bfloat16", 4, 1, 1024)
    ctx = Shape("mla_context", 128, "bfloat16", "bfloat16", 1, 1024, 0)
    assert w.dir.name == FUSED_PROLOGUE_VERSION
    assert w.json_row(gen, 0.1, [0.1], None)["prologue"] == "fused"
    assert w.json_row(ctx, 0.1, [0.1], None)["prologue"] == "eager"
    assert RawLogWriter(tmp_path, "h100_sxm", "H100", "r", {}).json_row(gen, 0.1, [], None)["prologue"] == "eager"



def test_sweep_with_the_fused_prologue_writes_0_4_rows(tmp_path):
    """`collector run --configs` with "prologue": "fused": the sweep's rows go to perfwh/0.4 and say so; an
    eager-prologue 0.3 table in the same folder is neither touched nor counted as done."""
    pytest.importorskip("yaml")
    import json

    from collector import FUSED_PROLOGUE_VERSION
    from collector.logs import done_keys
    from collector.runner import sweep
    spec = tmp_path / "spec.yaml"
    spec.write_text("shapes:\n  - [mla_generation, 16, bfloat16, bfloat16, 3, 1, 1024]\n")
    fake = "tests.collector.fake_measurer:FaultyMeasurer"
    for prologue in ("eager", "fused"):
        cfg = {"dense_impl": "flashinfer", "prologue": prologue}
        res = sweep(spec, tmp_path / "out", measurer=fake, measurer_kwargs={"configs": cfg}, repeats=False,
                    tag=f"t_{prologue}", log=lambda *a: None)
        assert res["measured"] == 1
    for version, prologue in (("0.3", "eager"), (FUSED_PROLOGUE_VERSION, "fused")):
        d = tmp_path / "out" / "h200_sxm" / "perfwh" / version
        row = json.loads((d / f"mla_generation_module_perf.t_{prologue}.jsonl").read_text())
        assert row["version"] == version and row["prologue"] == prologue
        assert row["kernel_source"] == "flashinfer_mla"
        assert len(done_keys(tmp_path / "out", "h200_sxm", version)) == 1


@gpu
@pytest.mark.parametrize("gemm,kv_cache", [("bfloat16", "bfloat16"), ("fp8_block", "fp8")])
@pytest.mark.parametrize("dense_impl", ["decode", "flashinfer"])
def test_gpu_module_fused_production_decode(gemm, kv_cache, dense_impl):
    """Full-size shapes through the collector's decodes (FlashInfer where installed), bf16 and FP8."""
    if dense_impl == "flashinfer":
        from collector.kernels import fi_mla
        if fi_mla.available() is not None:
            pytest.skip(f"flashinfer: {fi_mla.available()}")
    ATT.DENSE_IMPL = dense_impl
    for H, b, kv_len in ((128, 1, 1024), (16, 7, 4097), (128, 33, 8191)):
        (y0, kv0, meta), (y1, kv1, _) = _pair("mla", H, b, kv_len, kv_cache=kv_cache, gemm=gemm)
        rows = torch.arange(b, device=DEV) * meta["Lc"] + meta["pos0"]
        if kv_cache == "fp8":
            # the eager RoPE rounds to bf16 after every op (x1 cos - x2 sin can cancel), the fused kernel once
            # from float32 (within one FP8 step of float64: test_gen_prologue): on the H100 a few entries of
            # the whole module's rows landed two FP8 steps apart, so compare the rows as numbers here
            assert _rel(kv1[rows].float(), kv0[rows].float()) < 3e-2
        else:
            assert _rel(kv1[rows], kv0[rows]) < 1e-2
        # fp8_block: the fused path quantises q_a from float32, the eager one from its bf16 rounding, so a
        # few q_a entries land one FP8 step apart
        assert _rel(y1, y0) < (5e-2 if gemm == "fp8_block" else 2e-2), (H, b, kv_len)


@gpu
def test_gpu_fused_step_replays_in_a_cuda_graph():
    """The timed region is a CUDA-graph replay: the fused step must capture and give the eager answer."""
    from collector.timing import Bencher
    m = MOD.AttentionModule("mla", 128, "fp8_block", "bfloat16")
    MOD.PROLOGUE = "fused"
    step = m.prepare_generation(4, 2048)
    tm = Bencher().time(step.run, target_ms=1, min_samples=2, max_samples=3)
    assert tm.method == "cuda_graph"


def test_quant_groups_padded_rows():
    """``rows=``: the extra rows are what quantising F.pad's zero rows gives (CPU: the torch fallback)."""
    from collector.gemm import quant_groups
    g = torch.Generator(device=DEV).manual_seed(5)
    x = torch.randn((3, 256), generator=g, device=DEV).to(torch.bfloat16)
    for col in (False, True):
        xq, s = quant_groups(x, colmajor_scale=col, rows=16)
        pq, ps = quant_groups(F.pad(x, (0, 0, 0, 13)), colmajor_scale=col)
        assert xq.shape == (16, 256) and s.shape == (16, 2) and s.stride() == ps.stride()
        assert torch.equal(xq.view(torch.uint8), pq.view(torch.uint8)) and torch.equal(s, ps)
        assert not xq[3:].view(torch.uint8).any() and _is_min_scale(s[3:])
    with pytest.raises(ValueError, match="rows"):
        quant_groups(x, rows=2)


@gpu
@pytest.mark.parametrize("M", [1, 7, 16, 33])
def test_gpu_linear_pad_in_quant_is_the_padded_gemm(M):
    """fp8_block GEMM with the padding written by the quantisation: bit for bit the padded-copy GEMM."""
    from collector.gemm import IMPL, Linear
    if IMPL["fp8_block"] != "scaled_mm":
        pytest.skip("the Triton fp8_block GEMM pads nothing")
    g = torch.Generator(device=DEV).manual_seed(M)
    lin = Linear(1536, 3072, "fp8_block", DEV, generator=g)
    x = torch.randn((M, 1536), generator=g, device=DEV).to(torch.bfloat16)
    assert torch.equal(lin(x, pad_in_quant=True), lin(x))


@pytest.mark.parametrize("colmajor", [False, True])
def test_gen_prologue_quantises_q_a_into_padded_rows(colmajor):
    """quant=: q_a's FP8 block quantisation for wq_b, as gemm.quant_groups(q_a, rows=R) gives it. On the
    CPU the scales and the padding rows (the interpreter's e4m3 rounding is wrong, see fp8_gpu); on the
    GPU the FP8 values too, within one FP8 step (the kernel quantises q_a before its bf16 rounding)."""
    from collector.gemm import quant_groups_ref
    g = torch.Generator(device=DEV).manual_seed(9)
    T, R, d_q, d_c, d_r = 3, 16, 1536, 512, 64
    a = torch.randn((T, d_q + d_c + d_r), generator=g, device=DEV).to(DT)
    qw = 1 + 0.1 * torch.randn(d_q, generator=g, device=DEV).to(DT)
    kw = torch.ones(d_c, device=DEV, dtype=DT)
    cos = torch.ones((T, d_r // 2), device=DEV, dtype=DT)
    kv = torch.zeros((T * 4, d_c + d_r), device=DEV, dtype=DT)
    start = torch.arange(T, device=DEV, dtype=torch.int32) * 4
    length = torch.full((T,), 2, device=DEV, dtype=torch.int32)
    q8 = torch.full((R, d_q), 1.0, device=DEV).to(FP8)
    qs = torch.full((d_q // 128, R), -1.0, device=DEV).t() if colmajor else torch.full((R, d_q // 128), -1.0,
                                                                                         device=DEV)
    q_a = PRO.gen_prologue(a, qw, kw, cos, cos * 0, kv, start, length, d_q=d_q, d_c=d_c, d_r=d_r,
                           quant=(q8, qs))
    ref_q, ref_s = quant_groups_ref(F.rms_norm(a[:, :d_q].double(), (d_q,), qw.double(), 1e-6).float())
    assert torch.allclose(qs[:T], ref_s, rtol=1e-5 if not CUDA else 1e-2)
    assert _is_min_scale(qs[T:]) and not q8[T:].view(torch.uint8).any()
    assert _rel(kv[start.long() + 1, :d_c], F.rms_norm(a[:, d_q:d_q + d_c].double(), (d_c,), None, 1e-6)) < TOL
    assert _rel(q_a, F.rms_norm(a[:, :d_q].double(), (d_q,), qw.double(), 1e-6)) < TOL
    if CUDA:
        assert _fp8_ulps_apart(q8[:T], ref_q) <= 1
