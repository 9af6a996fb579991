"""FlashMLA decode adapter (collector/kernels/flashmla.py).

CPU: the block table and the paged strides FlashMLA reads (checked by walking the pages as its kernel
does: row j of request t is row j % 64 of page table[t, j // 64]), the SM split, the q buffer. GPU with
the shim library ($FLASHMLA_SHIM): FlashMLA's output against the float64 reference."""
import os

import pytest

torch = pytest.importorskip("torch")

from collector.kernels import flashmla as FM  # noqa: E402
from collector.kernels import mla_attn as ATT  # noqa: E402


def _walk(kv, table, lens, page):
    """Each request's rows as FlashMLA reads them, through the strides it is handed."""
    page_stride, row_stride, pages = FM.paged_strides(kv, page)
    flat = kv.flatten()
    out = []
    for t in range(len(lens)):
        rows = []
        for j in range(int(lens[t])):
            p = int(table[t, j // page])
            assert 0 <= p < pages
            base = p * page_stride + (j % page) * row_stride
            rows.append(flat[base:base + FM.D_ROW])
        out.append(torch.stack(rows))
    return out


@pytest.mark.parametrize("page,starts,lengths", [(64, (0, 128, 640), (100, 1, 64)), (4, (0, 8, 20), (5, 1, 8)),
                                                 (64, (192, 0), (130, 129))])
def test_block_table_reads_each_requests_rows(page, starts, lengths):
    kv = torch.randn(1024, 576)
    st, ln = torch.tensor(starts, dtype=torch.int32), torch.tensor(lengths, dtype=torch.int32)
    table, lens = FM.block_table(st, ln, page)
    assert table.dtype == torch.int32 and lens.dtype == torch.int32
    assert lens.tolist() == list(lengths)
    for t, rows in enumerate(_walk(kv, table, lens, page)):
        assert torch.equal(rows, kv[starts[t]:starts[t] + lengths[t]])


def test_block_table_by_hand():
    table, lens = FM.block_table(torch.tensor([0, 128, 640]), torch.tensor([100, 1, 129]))
    assert table.tolist() == [[0, 1, 0], [2, 0, 0], [10, 11, 12]]  # pads with page 0, never read
    assert lens.tolist() == [100, 1, 129]


def test_block_table_rejects_unaligned_starts_and_empty_requests():
    with pytest.raises(ValueError, match="multiples of page 64"):
        FM.block_table(torch.tensor([0, 32]), torch.tensor([5, 5]))
    with pytest.raises(ValueError, match="at least one"):
        FM.block_table(torch.tensor([0, 64]), torch.tensor([5, 0]))


def test_paged_strides_of_a_row_view_and_bad_caches():
    big = torch.zeros(256, 640)
    assert FM.paged_strides(big[:, :576]) == (64 * 640, 640, 4)  # a row stride past 576 is kept
    with pytest.raises(ValueError, match="multiple of page"):
        FM.paged_strides(torch.zeros(100, 576))
    with pytest.raises(ValueError, match=r"\[N, 576\]"):
        FM.paged_strides(torch.zeros(128, 512))
    with pytest.raises(ValueError, match="16-byte"):
        FM.paged_strides(torch.zeros(128 * 581)[:128 * 580].view(128, 580)[:, 1:577])


@pytest.mark.parametrize("n_sm,heads,parts", [(132, 128, 66), (132, 64, 132), (78, 128, 39), (132, 16, 132),
                                              (1, 128, 1)])
def test_num_sm_parts_as_flashmla(n_sm, heads, parts):
    assert FM.num_sm_parts(n_sm, heads) == parts


def test_query_rows_uses_one_buffer_in_place_else_copies():
    q = torch.randn(3, 8, 576)
    q_lat, q_pe = q[..., :512], q[..., 512:]
    got = FM.query_rows(q_lat, q_pe, None)
    assert got.data_ptr() == q.data_ptr() and got.stride() == q.stride()
    assert torch.equal(got, q)
    q_lat2, q_pe2 = q_lat.clone(), q_pe.clone()  # separate tensors: copied into the buffer
    buf = torch.empty(3, 8, 576)
    got2 = FM.query_rows(q_lat2, q_pe2, buf)
    assert got2.data_ptr() == buf.data_ptr() and torch.equal(got2, q)


def test_out_written_in_place_when_its_strides_allow():
    assert FM.out_strides_ok(torch.empty(64, 128, 512))
    o_lat = torch.empty(128, 64, 512)  # the generation module's [H, T, 512], handed over as [T, H, 512]
    assert FM.out_strides_ok(o_lat.transpose(0, 1))
    assert not FM.out_strides_ok(torch.empty(4, 8, 1024)[..., 1:513])  # rows not on 16 bytes
    assert not FM.out_strides_ok(torch.empty(4, 512, 8).transpose(1, 2))  # last dim strided


def test_missing_library_is_reported_not_raised(monkeypatch):
    monkeypatch.delenv(FM.ENV_LIB, raising=False)
    assert "FLASHMLA_SHIM" in FM.available()
    assert "OSError" in FM.available("/nonexistent/libflashmla_shim.so")


@pytest.mark.skipif(not os.path.isfile(os.environ.get(FM.ENV_LIB, "")), reason="$FLASHMLA_SHIM not built here")
def test_built_shim_loads_and_rejects_a_head_dim_it_was_not_built_for():
    """The library needs no GPU to load (static cudart): its API version, the metadata struct size, and
    d_qk = 512 refused with -1 before anything is launched."""
    lib = FM.load()
    assert lib.fmla_abi_version() == FM.ABI and lib.fmla_sched_meta_ints() == FM.SCHED_META_INTS
    assert lib.fmla_dense_decode(1, 128, 512, 0.1, None, 0, 0, None, 0, 0, 0, None, 0, 0, None, None, 0, None,
                                 None, None, 1, None, None, None) == -1


def _shim_ready():
    if not torch.cuda.is_available():
        return "no GPU"
    if torch.cuda.get_device_capability() != (9, 0):
        return "FlashMLA's dense decode needs sm_90"
    return FM.available()


@pytest.mark.skipif(_shim_ready() is not None, reason=f"FlashMLA shim not usable: {_shim_ready()}")
@pytest.mark.parametrize("fused_q", [True, False])
def test_flashmla_matches_float64_reference(fused_q):
    g = torch.Generator(device="cuda").manual_seed(5)
    H, starts, lengths = 128, (0, 2048, 4096), (2000, 37, 1500)
    q = torch.randn((3, H, 576), generator=g, device="cuda").bfloat16()
    q_lat, q_pe = (q[..., :512], q[..., 512:]) if fused_q else (q[..., :512].clone(), q[..., 512:].clone())
    kv = torch.randn((6144, 576), generator=g, device="cuda").bfloat16()
    st = torch.tensor(starts, dtype=torch.int32, device="cuda")
    ln = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    out = torch.full((3, H, 512), float("nan"), dtype=torch.bfloat16, device="cuda")
    if not fused_q:  # the generation module's layout: q_lat and out are transposed [H, T, 512] views
        q_lat = q_lat.transpose(0, 1).contiguous().transpose(0, 1)
        out = out.transpose(0, 1).contiguous().transpose(0, 1)
    FM.decode(q_lat, q_pe, kv, out=out, start=st, length=ln, sm_scale=576 ** -0.5)
    ref = ATT.mla_attention_ref(q_lat, q_pe, kv, sm_scale=576 ** -0.5, start=st, length=ln)
    assert not torch.isnan(out).any()
    err = ((out.double() - ref).norm() / ref.norm()).item()
    assert err < 1e-2, err


def test_dense_impl_flashmla_routes_bf16_decode_and_keeps_fp8_off_it(monkeypatch):
    calls = []

    def fake_decode(q_lat, q_pe, kv, **kw):
        calls.append(kw)
        return kw["out"].fill_(7.0)

    monkeypatch.setattr(FM, "decode", fake_decode)
    monkeypatch.setattr(ATT, "DENSE_IMPL", "flashmla")
    q_lat, q_pe, out = torch.randn(2, 4, 512), torch.randn(2, 4, 64), torch.zeros(2, 4, 512)
    st, ln = torch.tensor([0, 64], dtype=torch.int32), torch.tensor([10, 3], dtype=torch.int32)
    got = ATT.mla_attention(q_lat, q_pe, torch.randn(128, 576).bfloat16(), out=out, sm_scale=0.1, start=st,
                            length=ln, n_slots=10)
    assert got is out and bool((out == 7.0).all())
    assert calls[0]["start"] is st and calls[0]["length"] is ln and calls[0]["sm_scale"] == 0.1
    from collector.kernels import mla_decode as DEC  # the FP8 cache is not FlashMLA's: Triton decodes it
    monkeypatch.setattr(ATT, "HAVE_TRITON", True)
    monkeypatch.setattr(DEC, "mla_decode", lambda *a, **kw: "triton")
    assert ATT.mla_attention(q_lat, q_pe, torch.zeros(128, 576).to(torch.float8_e4m3fn), out=out,
                             sm_scale=0.1, start=st, length=ln, n_slots=10) == "triton"
    assert len(calls) == 1


def test_flashmla_rows_name_their_kernel_and_need_the_fused_prologue():
    from collector import FLASHMLA_VERSION, FUSED_PROLOGUE_VERSION, version_for
    from collector.logs import kernel_source
    from collector.sweep import Shape
    gen = Shape("mla_generation", 128, "bfloat16", "bfloat16", 64, 1, 32768)
    gen_fp8 = Shape("mla_generation", 128, "bfloat16", "fp8", 64, 1, 32768)
    ctx = Shape("mla_context", 128, "bfloat16", "bfloat16", 1, 4096, 0)
    assert kernel_source(gen, "flashmla") == "flashmla"
    assert kernel_source(gen_fp8, "flashmla") == kernel_source(gen_fp8, "decode") == "triton_decode"
    assert kernel_source(ctx, "flashmla") == "torch_sdpa"
    # a decode change gets its own version: 0.4 (FlashInfer / Triton decode) stays as measured
    assert version_for("flashmla", "fused") == FLASHMLA_VERSION == "0.5" != FUSED_PROLOGUE_VERSION
    with pytest.raises(ValueError, match="fused prologue"):
        version_for("flashmla")
