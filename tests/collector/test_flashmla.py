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


def test_missing_library_is_reported_not_raised(monkeypatch):
    monkeypatch.delenv(FM.ENV_LIB, raising=False)
    assert "FLASHMLA_SHIM" in FM.available()
    assert "OSError" in FM.available("/nonexistent/libflashmla_shim.so")


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
    FM.decode(q_lat, q_pe, kv, out=out, start=st, length=ln, sm_scale=576 ** -0.5)
    ref = ATT.mla_attention_ref(q_lat, q_pe, kv, sm_scale=576 ** -0.5, start=st, length=ln)
    assert not torch.isnan(out).any()
    err = ((out.double() - ref).norm() / ref.norm()).item()
    assert err < 1e-2, err
