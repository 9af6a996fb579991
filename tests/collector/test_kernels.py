"""Triton kernels vs naive float64 PyTorch references.

On the CPU they run through Triton's interpreter in float32 (tiny shapes);
on a GPU the same tests run compiled, in bf16, and test_gpu.py adds the
full-size checks. Tolerance: relative Frobenius error."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from collector.kernels import indexer as IDX  # noqa: E402
from collector.kernels import mla_attn as ATT  # noqa: E402
from tests.collector.tiles import interpreter_tiles  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
DT = torch.bfloat16 if CUDA else torch.float32
TOL = 2e-2 if CUDA else 1e-4


@pytest.fixture(autouse=True)
def small_tiles():
    with interpreter_tiles(CUDA):
        yield


def _rel(a, b):
    return ((a.double() - b).norm() / b.norm()).item()


@pytest.mark.parametrize("H,splits", [(16, 1), (20, 2), (16, None)])
def test_sparse_attention(H, splits):
    g = torch.Generator(device=DEV).manual_seed(H)
    T, K, N = 3, 48, 200
    ql = torch.randn((T, H, 512), generator=g, device=DEV).to(DT)
    qp = torch.randn((T, H, 64), generator=g, device=DEV).to(DT)
    kv = torch.randn((N, 576), generator=g, device=DEV).to(DT)
    idx = torch.randint(0, N, (T, K), generator=g, device=DEV, dtype=torch.int32)
    idx[1, 7:] = -1
    idx[2, ::3] = -1
    out = torch.full((T, H, 512), float("nan"), device=DEV, dtype=DT)
    ATT.mla_attention(ql, qp, kv, out=out, sm_scale=192 ** -0.5, idx=idx, splits=splits)
    ref = ATT.mla_attention_ref(ql, qp, kv, sm_scale=192 ** -0.5, idx=idx)
    assert not torch.isnan(out).any()
    assert _rel(out, ref) < TOL


def test_dense_decode_with_splits():
    g = torch.Generator(device=DEV).manual_seed(1)
    b, H, N = 3, 16, 300
    ql = torch.randn((b, H, 512), generator=g, device=DEV).to(DT)
    qp = torch.randn((b, H, 64), generator=g, device=DEV).to(DT)
    kv = torch.randn((N, 576), generator=g, device=DEV).to(DT)
    start = torch.tensor([0, 100, 200], device=DEV, dtype=torch.int32)
    ln = torch.tensor([100, 9, 64], device=DEV, dtype=torch.int32)
    for splits in (1, 3):
        out = torch.full((b, H, 512), float("nan"), device=DEV, dtype=DT)
        ATT.mla_attention(ql, qp, kv, out=out, sm_scale=0.1, kv_scale=0.5, start=start, length=ln, n_slots=100,
                          splits=splits)
        ref = ATT.mla_attention_ref(ql, qp, kv, sm_scale=0.1, kv_scale=0.5, start=start, length=ln)
        assert _rel(out, ref) < TOL


def test_pick_splits():
    assert ATT.pick_splits(4096, 2, 2048) == 1
    assert ATT.pick_splits(1, 1, 131072, n_sm=132, target=2) == 264
    assert ATT.pick_splits(1, 1, 512, n_sm=132) == 2  # chunks of >= 256 keys


def test_indexer_context_and_topk():
    g = torch.Generator(device=DEV).manual_seed(2)
    qd = torch.float8_e4m3fn if CUDA else torch.float32
    NH, D = (64, 128) if CUDA else (4, 16)
    n_req, n_q, pos0 = 2, 20, 9
    L, Lc = pos0 + n_q, pos0 + n_q + 2
    q = torch.randn((n_req * n_q, NH, D), generator=g, device=DEV).to(qd)
    w = torch.rand((n_req * n_q, NH), generator=g, device=DEV)
    k = torch.randn((n_req * Lc, D), generator=g, device=DEV).to(qd)
    ks = torch.rand((n_req * Lc,), generator=g, device=DEV)
    lg = torch.full((n_req * n_q, L), float("nan"), device=DEV)
    IDX.indexer_logits_context(q, w, k, ks, lg, n_req=n_req, n_q=n_q, pos0=pos0, L=L, k_rows_per_req=Lc)
    ref = IDX.indexer_logits_ref(q, w, k, ks, n_req=n_req, n_q=n_q, pos0=pos0, L=L, k_rows_per_req=Lc)
    fin = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(lg), fin)  # causal mask exact
    assert _rel(lg[fin], ref[fin]) < 1e-4
    rb = (torch.arange(n_req, device=DEV) * Lc).repeat_interleave(n_q)[:, None]
    idx = IDX.topk_indices(lg, 16, row_base=rb)
    ridx = IDX.topk_indices(ref.float(), 16, row_base=rb)
    for a, b in zip(idx.tolist(), ridx.tolist()):
        assert set(a) == set(b)
    # query at position p of request r selects only rows r*Lc + [0, p]
    for t, row in enumerate(idx.tolist()):
        r, p = divmod(t, n_q)
        sel = [x for x in row if x >= 0]
        assert len(sel) == min(16, pos0 + p + 1)
        assert all(r * Lc <= x <= r * Lc + pos0 + p for x in sel)


def test_indexer_generation():
    g = torch.Generator(device=DEV).manual_seed(3)
    qd = torch.float8_e4m3fn if CUDA else torch.float32
    NH, D = (64, 128) if CUDA else (16, 16)
    b, L, Lc = 3, 70, 75
    q = torch.randn((b, NH, D), generator=g, device=DEV).to(qd)
    w = torch.rand((b, NH), generator=g, device=DEV)
    k = torch.randn((b * Lc, D), generator=g, device=DEV).to(qd)
    ks = torch.rand((b * Lc,), generator=g, device=DEV)
    lg = torch.full((b, L), float("nan"), device=DEV)
    IDX.indexer_logits_generation(q, w, k, ks, lg, L=L, k_rows_per_req=Lc)
    ref = IDX.indexer_logits_ref(q, w, k, ks, n_req=b, n_q=1, pos0=L - 1, L=L, k_rows_per_req=Lc)
    assert _rel(lg, ref) < 1e-4


def test_causal_all_indices():
    rows = IDX.causal_all_indices(2, 3, 1, 5, 10, "cpu")
    assert rows.tolist()[0] == [0, 1, -1, -1, -1]
    assert rows.tolist()[5] == [10, 11, 12, 13, -1]


def test_offsets_are_64_bit_past_2_31():
    """Every row/head/token offset in the kernels goes through off64. At
    dsa_context H=128 isl=49152 the head stride of q_lat [H,T,512] seen as
    [T,H,512] is 49152*512 and head 127 sits at 3.2e9 > 2^31 elements: the
    int32 product wraps to a negative offset (the illegal memory access),
    off64's does not. Runs compiled on a GPU, through the interpreter (which
    wraps int32 the same way) on a CPU."""
    import triton
    import triton.language as tl

    @triton.jit
    def _offsets(OUT, stride, N: tl.constexpr):
        i = tl.arange(0, N) + 120
        tl.store(OUT + tl.arange(0, N), ATT.off64(i, stride))
        tl.store(OUT + N + tl.arange(0, N), (i * stride).to(tl.int64))

    stride = 49152 * 512
    out = torch.zeros(16, dtype=torch.int64, device=DEV)
    _offsets[(1,)](out, stride, N=8)
    want = [(120 + i) * stride for i in range(8)]
    got = out.cpu().tolist()
    assert got[:8] == want and max(want) > 2 ** 31
    wrapped = [((w + 2 ** 31) % 2 ** 32) - 2 ** 31 for w in want]
    assert got[8:] == wrapped and min(got[8:]) < 0  # the 32-bit hazard is real where off64 is not used


@pytest.mark.parametrize("desc", [False, True])
@pytest.mark.parametrize("splits", [1, 3, None])
def test_mla_decode_kernel(desc, splits):
    """The 0.2 dense decode kernel: 20 heads (two head groups, the second one
    partly masked), uneven lengths incl. one shorter than a block, an FP8-like
    kv_scale, the output poisoned first; desc=True reads the cache through
    tensor descriptors (TMA on the GPU)."""
    from collector.kernels import mla_decode as DEC
    g = torch.Generator(device=DEV).manual_seed(5)
    b, H, N = 3, 20, 300
    ql = torch.randn((b, H, 512), generator=g, device=DEV).to(DT)
    qp = torch.randn((b, H, 64), generator=g, device=DEV).to(DT)
    kv = torch.randn((N, 576), generator=g, device=DEV).to(DT)
    start = torch.tensor([0, 100, 200], device=DEV, dtype=torch.int32)
    ln = torch.tensor([100, 9, 64], device=DEV, dtype=torch.int32)
    out = torch.full((b, H, 512), float("nan"), device=DEV, dtype=DT)
    cfg = dict(desc=desc) if CUDA else dict(desc=desc, block_h=16, block_n=16)
    DEC.mla_decode(ql, qp, kv, out=out, start=start, length=ln, n_slots=100, sm_scale=0.1, kv_scale=0.5,
                   splits=splits, config=cfg, workspace={})
    ref = ATT.mla_attention_ref(ql, qp, kv, sm_scale=0.1, kv_scale=0.5, start=start, length=ln)
    assert not torch.isnan(out).any()
    assert _rel(out, ref) < TOL


@pytest.mark.parametrize("fp8", [False, True])
@pytest.mark.parametrize("opts", [dict(peel=True), dict(f16=True), dict(f16=True, peel=True),
                                  dict(desc=True, peel=True), dict(desc=True, peel=True, f16=True),
                                  dict(gs=True, peel=True),
                                  dict(gs=True, peel=True, f16=True), dict(gs=True)])
def test_mla_decode_kernel_variants(fp8, opts):
    """Launch options of the decode kernel (peeled tail block, fp16 dots for the FP8 cache, P through a
    global scratch (gs)) against the float64 reference: uneven lengths
    (one under a block, one a whole number of blocks), 2 splits."""
    from collector.kernels import mla_decode as DEC
    g = torch.Generator(device=DEV).manual_seed(7)
    b, H, N = 3, 20, 300
    ql = torch.randn((b, H, 512), generator=g, device=DEV).to(DT)
    qp = torch.randn((b, H, 64), generator=g, device=DEV).to(DT)
    kv = torch.randn((N, 576), generator=g, device=DEV)
    kv = kv.to(torch.float8_e4m3fn) if fp8 else kv.to(DT)
    start = torch.tensor([0, 100, 200], device=DEV, dtype=torch.int32)
    ln = torch.tensor([100, 9, 64], device=DEV, dtype=torch.int32)
    out = torch.full((b, H, 512), float("nan"), device=DEV, dtype=DT)
    opts = dict(dict(peel=False, f16=False), **opts)  # not the module default's FP8 options
    cfg = dict(opts) if CUDA else dict(opts, block_h=16, block_n=16)
    for splits in (1, 2):
        out.fill_(float("nan"))
        DEC.mla_decode(ql, qp, kv, out=out, start=start, length=ln, n_slots=100, sm_scale=0.1, kv_scale=0.5,
                       splits=splits, config=cfg, workspace={})
        ref = ATT.mla_attention_ref(ql, qp, kv, sm_scale=0.1, kv_scale=0.5, start=start, length=ln)
        assert not torch.isnan(out).any()
        assert _rel(out, ref) < (max(TOL, 3e-3) if fp8 and opts.get("f16") else TOL)  # q rounded to fp16


def test_mla_decode_config_layers():
    """The launch config is layered: base, FP8-cache overrides, fewer-than-64-heads overrides, explicit."""
    from collector.kernels import mla_decode as DEC
    cfg = dict(block_h=16, block_n=16, num_warps=8, num_stages=2, desc=False, peel=True, ctas_per_sm=1,
               min_chunk=512, fp8=dict(num_stages=1, f16=True), small_h=dict(num_warps=4, peel=False),
               small_h_fp8=dict(num_stages=3))
    saved = dict(DEC.CONFIG)
    try:
        DEC.CONFIG.clear()
        DEC.CONFIG.update(cfg)
        got = {}
        for H in (64, 20):
            for kvd in (DT, torch.float8_e4m3fn):
                ql = torch.zeros((1, H, 512), device=DEV).to(DT)
                qp = torch.zeros((1, H, 64), device=DEV).to(DT)
                kv = torch.zeros((16, 576), device=DEV).to(kvd)
                out = torch.empty((1, H, 512), device=DEV, dtype=DT)
                one = torch.tensor([0], device=DEV, dtype=torch.int32)
                n = torch.tensor([16], device=DEV, dtype=torch.int32)
                DEC.mla_decode(ql, qp, kv, out=out, start=one, length=n, n_slots=16, sm_scale=0.1, splits=1,
                               config=dict(block_h=16, block_n=16) if not CUDA else None)
                got[(H, kvd == DT)] = tuple(DEC.LAST[k] for k in ("num_warps", "num_stages", "peel", "f16"))
    finally:
        DEC.CONFIG.clear()
        DEC.CONFIG.update(saved)
    assert got[(64, True)] == (8, 2, True, False)
    assert got[(64, False)] == (8, 1, True, True)
    assert got[(20, True)] == (4, 2, False, False)
    assert got[(20, False)] == (4, 3, False, True)


def test_mla_decode_pick_splits():
    from collector.kernels import mla_decode as DEC
    # b=64, 2 head groups = 128 programs: one wave on 132 SMs, no split
    assert DEC.pick_splits(64, 2, 32768, 132) == 1
    # b=1: 2 programs; split until the 132 SMs are busy (chunks of >= 512 keys)
    s = DEC.pick_splits(1, 2, 32768, 132)
    assert 2 * s <= 132 and 32768 / s >= 512 and s >= 32
    # never a chunk under min_chunk
    assert DEC.pick_splits(1, 2, 1024, 132) == 2
