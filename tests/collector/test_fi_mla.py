"""FlashInfer MLA decode adapter (collector/kernels/fi_mla.py) and the run-11 bench's arithmetic.

CPU: the page table and the paged views FlashInfer reads (checked by walking the pages as its kernel
does), the plan cache of the collector's decode backend, and the bench's byte count against the figures
decode_bench wrote in run 10. GPU with flashinfer: FlashInfer's output against the float64 reference."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

torch = pytest.importorskip("torch")

from collector.kernels import fi_mla  # noqa: E402
from collector.kernels import mla_attn as ATT  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _bench_module():
    path = ROOT / "benchmarks/collector_runs/run11/flashinfer_mla.py"
    spec = importlib.util.spec_from_file_location("fi_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _walk_pages(ckv, kpe, qo, kv_ptr, kv_idx, kv_len, page):
    """Rows of each request the way a paged kernel reads them: token j is row j % page of page
    kv_idx[kv_ptr[t] + j // page]."""
    out = []
    for t in range(len(qo) - 1):
        rows = []
        for j in range(int(kv_len[t])):
            p = int(kv_idx[int(kv_ptr[t]) + j // page])
            rows.append(torch.cat([ckv[p, j % page], kpe[p, j % page]]))
        out.append(torch.stack(rows))
    return out


@pytest.mark.parametrize("page,starts,lengths", [(4, (0, 8, 20), (5, 1, 8)), (1, (3, 17, 0), (9, 1, 2)),
                                                 (16, (0, 32, 64), (31, 17, 16))])
def test_page_table_reads_each_requests_rows(page, starts, lengths):
    kv = torch.randn(96, 576)
    st, ln = torch.tensor(starts, dtype=torch.int32), torch.tensor(lengths, dtype=torch.int32)
    qo, kv_ptr, kv_idx, kv_len = fi_mla.csr_metadata(st, ln, page)
    assert all(x.dtype == torch.int32 for x in (qo, kv_ptr, kv_idx, kv_len))
    assert qo.tolist() == list(range(len(starts) + 1))
    ckv, kpe = fi_mla.paged_views(kv, page)
    assert ckv.shape == (96 // page, page, 512) and kpe.shape == (96 // page, page, 64)
    assert ckv.data_ptr() == kv.data_ptr() and kpe.data_ptr() == kv.data_ptr() + 512 * 4  # views, no copy
    for t, rows in enumerate(_walk_pages(ckv, kpe, qo, kv_ptr, kv_idx, kv_len, page)):
        assert torch.equal(rows, kv[starts[t]:starts[t] + lengths[t]])


def test_page_table_small_case_by_hand():
    qo, kv_ptr, kv_idx, kv_len = fi_mla.csr_metadata(torch.tensor([0, 8, 20]), torch.tensor([5, 1, 8]), 4)
    assert kv_ptr.tolist() == [0, 2, 3, 5]
    assert kv_idx.tolist() == [0, 1, 2, 5, 6]
    assert kv_len.tolist() == [5, 1, 8]


def test_unaligned_or_empty_requests_are_refused():
    with pytest.raises(ValueError, match="multiples of page"):
        fi_mla.csr_metadata(torch.tensor([0, 5]), torch.tensor([4, 4]), 4)
    with pytest.raises(ValueError, match="at least one"):
        fi_mla.csr_metadata(torch.tensor([0, 4]), torch.tensor([4, 0]), 4)
    with pytest.raises(ValueError, match="multiple of page"):
        fi_mla.paged_views(torch.randn(10, 576), 4)


class _FakePlan:
    """Stands in for FlashInferMLA on the CPU: records plans and returns the reference output."""
    made = []

    def __init__(self, device, backend, page, workspace):
        self.backend, self.page = backend, page
        _FakePlan.made.append(self)

    def plan(self, start, length, heads, kv_dtype, sm_scale, q_dtype):
        self.start, self.length, self.sm_scale = start, length, sm_scale
        return self

    def run(self, q_lat, q_pe, kv, out, kv_scale):
        out.copy_(ATT.mla_attention_ref(q_lat, q_pe, kv, sm_scale=self.sm_scale, kv_scale=kv_scale,
                                        start=self.start, length=self.length).to(out.dtype))
        return out


def test_decode_backend_plans_once_per_shape_and_falls_back_to_page_1(monkeypatch):
    monkeypatch.setattr(fi_mla, "FlashInferMLA", _FakePlan)
    monkeypatch.setattr(fi_mla, "WORKSPACE_BYTES", 64)
    monkeypatch.setattr(ATT, "DENSE_IMPL", "flashinfer")
    monkeypatch.setitem(fi_mla.CONFIG, "page", 64)
    _FakePlan.made.clear()
    g = torch.Generator().manual_seed(3)
    T, H, L = 2, 4, 65  # the module's rows per request: kv_len + 1, not a multiple of 64
    kv = torch.randn(T * L, 576, generator=g)
    ql, qp = torch.randn(T, H, 512, generator=g), torch.randn(T, H, 64, generator=g)
    st = torch.arange(T, dtype=torch.int32) * L
    ln = torch.full((T,), L, dtype=torch.int32)
    ws = {}
    outs = []
    for _ in range(2):
        o = torch.empty(T, H, 512)
        outs.append(ATT.mla_attention(ql, qp, kv, out=o, sm_scale=0.1, start=st, length=ln, n_slots=L,
                                      workspace=ws))
    assert len(_FakePlan.made) == 1 and _FakePlan.made[0].page == 1
    ref = ATT.mla_attention_ref(ql, qp, kv, sm_scale=0.1, start=st, length=ln)
    assert torch.allclose(outs[1].double(), ref, atol=1e-5)
    # page-aligned requests keep the configured page
    st2 = torch.arange(T, dtype=torch.int32) * 128
    kv2 = torch.randn(T * 128, 576, generator=g)
    ATT.mla_attention(ql, qp, kv2, out=torch.empty(T, H, 512), sm_scale=0.1, start=st2, length=ln, n_slots=L,
                      workspace={})
    assert _FakePlan.made[-1].page == 64


def test_bench_bytes_match_run10_figures():
    """The bench's GB/s (cache + q + out bytes) is decode_bench's: run 10's JSON rows reproduce."""
    bench = _bench_module()
    assert bench.traffic_bytes(64, 32768, 128, 2) == 64 * 32768 * 1152 + 64 * 128 * 1088 * 2
    assert bench.traffic_bytes(64, 32768, 128, 1) == 64 * 32768 * 576 + 64 * 128 * 1088 * 2
    run10 = ROOT / "benchmarks/collector_runs/run10/device"
    checked = 0
    for name, esz in (("bf16.json", 2), ("fp8.json", 1)):
        data = json.loads((run10 / name).read_text())
        for r in data["rows"]:
            if "ms" in r:
                b, L, H = r["batch"], r["kv_len"], r["heads"]
                assert bench.traffic_bytes(b, L, H, esz) / r["ms"] / 1e6 == pytest.approx(r["tbs"], rel=1e-9)
                assert bench.tensor_flops(b, L, H) / r["ms"] / 1e9 == pytest.approx(r["tflops"], rel=1e-9)
                checked += 1
    assert checked >= 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("kvname,page,H", [("bf16", 1, 128), ("bf16", 64, 128), ("fp8", 64, 128), ("bf16", 1, 16),
                                            ("fp8", 1, 32)])
def test_flashinfer_matches_float64_reference(kvname, page, H):
    why = fi_mla.available()
    if why:
        pytest.skip(f"flashinfer: {why}")
    kvd = torch.bfloat16 if kvname == "bf16" else torch.float8_e4m3fn
    scale = 1.0 if kvname == "bf16" else 0.5
    g = torch.Generator(device="cuda").manual_seed(5)
    lengths, starts = (2000, 37, 1500), (0, 2048, 4096)
    ql = torch.randn((3, H, 512), generator=g, device="cuda").bfloat16()
    qp = torch.randn((3, H, 64), generator=g, device="cuda").bfloat16()
    kv = torch.randn((6144, 576), generator=g, device="cuda").to(kvd)
    st = torch.tensor(starts, dtype=torch.int32, device="cuda")
    ln = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    o = torch.full((3, H, 512), float("nan"), device="cuda", dtype=torch.bfloat16)
    fi_mla.FlashInferMLA("cuda", "fa3", page).plan(st, ln, H, kvd, 192 ** -0.5).run(ql, qp, kv, o, scale)
    ref = ATT.mla_attention_ref(ql, qp, kv, sm_scale=192 ** -0.5, kv_scale=scale, start=st, length=ln)
    assert not torch.isnan(o).any()
    assert ((o.double() - ref).norm() / ref.norm()).item() < 2e-2


def test_fused_prologue_rows_of_one_decode_are_not_done_for_the_other(tmp_path):
    """0.4 (fused prologue) holds rows of either MLA decode: a FlashInfer run's resume must not take the
    Triton decode's rows as measured (0.2 / 0.3 kept them apart by version); DSA rows are the same kernel."""
    from collector.logs import RawLogWriter, done_keys
    from collector.sweep import Shape
    gen = Shape("mla_generation", 128, "bfloat16", "bfloat16", 64, 1, 32768)
    gen_fp8 = Shape("mla_generation", 128, "bfloat16", "fp8", 64, 1, 32768)  # FlashInfer serves bf16 only
    dsa = Shape("dsa_generation", 128, "bfloat16", "bfloat16", 64, 1, 32768)
    w = RawLogWriter(tmp_path, "h100_sxm", "NVIDIA H100", "r1", {}, tag="tri", prologue="fused")
    for s in (gen, gen_fp8, dsa):
        w.write(s, 1.0, [1.0], None)
    fi = RawLogWriter(tmp_path, "h100_sxm", "NVIDIA H100", "r2", {}, tag="fi", dense_impl="flashinfer",
                      prologue="fused")
    assert fi.version == w.version
    assert done_keys(tmp_path, "h100_sxm", fi.version, "flashinfer") == {gen_fp8.key(), dsa.key()}
    assert done_keys(tmp_path, "h100_sxm", w.version, "decode") == {gen.key(), gen_fp8.key(), dsa.key()}
    assert done_keys(tmp_path, "h100_sxm", w.version) == {gen.key(), gen_fp8.key(), dsa.key()}  # any kernel


def test_flashinfer_rows_are_a_new_collector_version(tmp_path):
    """Rows measured with the FlashInfer decode go to perfwh/0.3 with their own kernel_source; the Triton
    rows (0.2) are neither overwritten nor counted as done by a 0.3 run's resume."""
    from collector import FLASHINFER_VERSION, VERSION, version_for
    from collector.logs import RawLogWriter, done_keys
    from collector.sweep import Shape
    assert version_for("flashinfer") == FLASHINFER_VERSION != VERSION == version_for("decode")
    gen = Shape("mla_generation", 128, "bfloat16", "bfloat16", 64, 1, 32768)
    ctx = Shape("mla_context", 128, "bfloat16", "bfloat16", 1, 4096, 0)
    RawLogWriter(tmp_path, "h100_sxm", "NVIDIA H100", "r1", {}, tag="t02").write(gen, 2.1, [2.1], None)
    w = RawLogWriter(tmp_path, "h100_sxm", "NVIDIA H100", "r2", {}, tag="t03", dense_impl="flashinfer")
    assert done_keys(tmp_path, "h100_sxm", w.version) == set()  # the 0.2 row is not done for 0.3
    w.write(gen, 1.2, [1.2], None)
    w.write(ctx, 5.0, [5.0], None)
    d3 = tmp_path / "h100_sxm" / "perfwh" / FLASHINFER_VERSION
    row = json.loads((d3 / "mla_generation_module_perf.t03.jsonl").read_text())
    assert row["version"] == FLASHINFER_VERSION and row["kernel_source"] == "flashinfer_mla"
    csv = (d3 / "mla_generation_module_perf.t03.txt").read_text().splitlines()[1].split(",")
    assert csv[1] == FLASHINFER_VERSION and csv[4] == "flashinfer_mla"
    assert json.loads((d3 / "mla_context_module_perf.t03.jsonl").read_text())["kernel_source"] == "torch_sdpa"
    assert done_keys(tmp_path, "h100_sxm", w.version) == {gen.key(), ctx.key()}
    assert done_keys(tmp_path, "h100_sxm") == {gen.key()}  # 0.2 as it was
    d2 = tmp_path / "h100_sxm" / "perfwh" / VERSION
    assert json.loads((d2 / "mla_generation_module_perf.t02.jsonl").read_text())["latency_ms"] == 2.1


def test_fp8_cache_keeps_the_triton_decode_in_a_flashinfer_run(monkeypatch):
    """Run 11 measured FlashInfer's FP8-cache decode 1.8x slower than the Triton one: a 0.3 run decodes
    only the bf16 cache through FlashInfer, and its FP8 rows say which kernel measured them."""
    from collector.logs import KERNEL_SOURCE, kernel_source
    from collector.sweep import Shape

    assert fi_mla.serves("bfloat16") and not fi_mla.serves("fp8")
    bf16 = Shape("mla_generation", 128, "bfloat16", "bfloat16", 64, 1, 32768)
    fp8 = Shape("mla_generation", 128, "fp8_block", "fp8", 64, 1, 32768)
    assert kernel_source(bf16, "flashinfer") == "flashinfer_mla"
    assert kernel_source(fp8, "flashinfer") == KERNEL_SOURCE["mla_generation"] == kernel_source(fp8, "decode")
    monkeypatch.setitem(fi_mla.CONFIG, "kv_dtypes", ["bfloat16", "fp8"])  # configs JSON override
    assert kernel_source(fp8, "flashinfer") == "flashinfer_mla"
    # the dispatch: with an FP8 cache, mla_attention goes to mla_decode even when DENSE_IMPL is flashinfer
    monkeypatch.setitem(fi_mla.CONFIG, "kv_dtypes", ["bfloat16"])
    monkeypatch.setattr(ATT, "DENSE_IMPL", "flashinfer")
    monkeypatch.setattr(ATT, "HAVE_TRITON", True)
    called = []
    from collector.kernels import mla_decode
    monkeypatch.setattr(mla_decode, "mla_decode", lambda *a, **k: called.append("triton") or "triton")
    monkeypatch.setattr(fi_mla, "decode", lambda *a, **k: called.append("flashinfer") or "flashinfer")
    q_lat, q_pe = torch.zeros(2, 4, 512), torch.zeros(2, 4, 64)
    start, length = torch.tensor([0, 8]), torch.tensor([8, 8])
    for dtype, want in ((torch.float8_e4m3fn, "triton"), (torch.bfloat16, "flashinfer")):
        kv = torch.zeros(16, 576).to(dtype)
        ATT.mla_attention(q_lat, q_pe, kv, out=torch.empty(2, 4, 512), start=start, length=length, n_slots=8,
                          sm_scale=0.1)
        assert called[-1] == want


def test_worker_configs_carry_the_decode_backend(monkeypatch):
    from collector.measure import apply_configs, current_configs
    monkeypatch.setattr(ATT, "DENSE_IMPL", "decode")
    monkeypatch.setattr(fi_mla, "CONFIG", dict(fi_mla.CONFIG))
    cfg = current_configs()
    cfg.update(dense_impl="flashinfer", fi_mla_config={"backend": "fa2", "page": 64})
    apply_configs(cfg)
    want = {"backend": "fa2", "page": 64, "kv_dtypes": ["bfloat16"]}  # kv_dtypes: the default, kept
    assert ATT.DENSE_IMPL == "flashinfer" and fi_mla.CONFIG == want
    assert current_configs()["fi_mla_config"] == want


def test_module_pads_requests_to_pages_with_the_same_rows(monkeypatch):
    """With the FlashInfer decode each request's cache rows start on a page (Lc = L rounded up), holding
    the same random rows as the unpadded cache, so both decodes see the same problem."""
    from collector.modules import AttentionModule
    m = AttentionModule("mla", 16, "bfloat16", "bfloat16", device="cpu", use_triton=False)
    plain = m.prepare_generation(2, 70)
    monkeypatch.setattr(ATT, "DENSE_IMPL", "flashinfer")
    monkeypatch.setitem(fi_mla.CONFIG, "page", 64)
    padded = m.prepare_generation(2, 70)
    assert plain.meta["Lc"] == 71 and padded.meta["Lc"] == 128 and padded.meta["L"] == 71
    assert padded.state["start"].tolist() == [0, 128]
    kv_p, kv_q = plain.state["kv"].view(2, 71, -1), padded.state["kv"].view(2, 128, -1)
    assert torch.equal(kv_q[:, :71], kv_p) and not kv_q[:, 71:].any()
    monkeypatch.setattr(ATT, "DENSE_IMPL", "decode")
    out_plain = plain.run()
    out_padded = padded.run()  # use_triton=False: the float64 reference over start/length either way
    assert torch.allclose(out_plain, out_padded)


def test_pick_needs_both_caches_passing_and_a_clear_win():
    spec = importlib.util.spec_from_file_location("fi_pick", ROOT / "benchmarks/collector_runs/run11/pick.py")
    pick = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pick)

    def row(kv, kernel, ms, ok=True):
        return {"kv": kv, "kernel": kernel, "ms": ms, "pass": ok}
    rows = [row("bf16", "triton 0.2 (chosen config)", 2.0), row("fp8", "triton 0.2 (chosen config)", 2.0),
            row("bf16", "flashinfer fa3 page 1", 1.2), row("bf16", "flashinfer fa3 page 64", 1.0),
            row("bf16", "flashinfer fa2 page 64", 0.8), row("fp8", "flashinfer fa3 page 64", 0.9)]
    assert pick.choose(rows) == {"backend": "fa3", "page": 64, "ms": 1.0, "triton_ms": 2.0}  # fa2: no FP8
    rows[5]["pass"] = False  # FP8 failed its check: the sweep would measure a wrong kernel
    assert pick.choose(rows) is None
    rows[5]["pass"] = True
    rows[3]["ms"] = rows[2]["ms"] = 1.85  # within 10% of the Triton kernel: not a clear win
    assert pick.choose(rows) is None
