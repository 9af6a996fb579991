"""Full-size correctness checks and a timing smoke test on a real GPU (skipped
without CUDA + triton). Same checks as `python -m collector check`."""
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)
pytest.importorskip("triton")

from collector import check  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.mark.parametrize("fn", [check.check_gemm, check.check_attention, check.check_indexer, check.check_modules],
                         ids=lambda f: f.__name__)
def test_checks(fn):
    from collector.gemm import probe_fp8_block
    probe_fp8_block("cuda", log=lambda *a: None)
    bad = [(n, e, t) for n, e, t in fn("cuda") if not (e <= t)]
    assert not bad, bad


def test_bencher_smoke():
    from collector.modules import AttentionModule
    from collector.timing import Bencher
    m = AttentionModule("dsa", 16, "bfloat16")
    step = m.prepare_generation(2, 3000)
    t = Bencher().time(step.run, target_ms=2, min_samples=5, max_samples=8)
    assert t.method == "cuda_graph" and len(t.samples_ms) >= 5 and t.median_ms > 0


def _rel(a, b):
    return ((a.double() - b).norm() / b.norm()).item()


def test_attention_offsets_past_2_31():
    """q_lat / out as [H, T, 512] buffers seen as [T, H, 512] (as the module
    passes them): at T = 49,152 and H = 128 head offsets pass 2^31 elements.
    Checked at the first, middle and last token against the float64 reference,
    with the output poisoned first; then 4 decode-like tokens (split-KV and the
    combine kernel) inside the same big buffers."""
    from collector.kernels import mla_attn as ATT
    H, T, N, K = 128, 49152, 4096, 64
    g = torch.Generator(device="cuda").manual_seed(7)
    ql_buf = torch.randn((H, T, 512), device="cuda", generator=g, dtype=torch.bfloat16)
    o_buf = torch.full((H, T, 512), float("nan"), device="cuda", dtype=torch.bfloat16)
    qp = torch.randn((T, H, 64), device="cuda", generator=g).bfloat16()
    kv = torch.randn((N, 576), device="cuda", generator=g).bfloat16()
    idx = torch.randint(0, N, (T, K), device="cuda", generator=g, dtype=torch.int32)
    ql, out = ql_buf.transpose(0, 1), o_buf.transpose(0, 1)
    assert (H - 1) * ql.stride(1) > 2 ** 31
    ATT.mla_attention(ql, qp, kv, out=out, sm_scale=0.07, idx=idx, splits=1)
    torch.cuda.synchronize()
    for t in (0, T // 2, T - 1):
        ref = ATT.mla_attention_ref(ql[t:t + 1], qp[t:t + 1], kv, sm_scale=0.07, idx=idx[t:t + 1])
        assert not torch.isnan(out[t]).any()
        assert _rel(out[t:t + 1], ref) < 2e-2, t
    assert not torch.isnan(out[-64:]).any()
    # decode: 4 tokens at the end of the big buffers, split-KV + combine (head stride T*512)
    o_buf[:, -4:].fill_(float("nan"))
    ql4, out4, qp4, idx4 = ql[-4:], out[-4:], qp[-4:], torch.randint(0, N, (4, 2048), device="cuda",
                                                                       generator=g, dtype=torch.int32)
    ATT.mla_attention(ql4, qp4, kv, out=out4, sm_scale=0.07, idx=idx4, workspace={})
    assert ATT.LAST["splits"] > 1
    ref4 = ATT.mla_attention_ref(ql4, qp4, kv, sm_scale=0.07, idx=idx4)
    assert not torch.isnan(out4).any() and _rel(out4, ref4) < 2e-2


def test_dsa_context_h128_isl49152_runs():
    """The shape that crashed with an illegal memory access (issue 16)."""
    from collector.modules import AttentionModule
    m = AttentionModule("dsa", 128, "fp8_block")
    step = m.prepare_context(1, 49152, 0)
    out = step.run()
    torch.cuda.synchronize()
    assert out.shape == (49152, 7168) and torch.isfinite(out).all()


def test_injected_device_error_mid_sweep(tmp_path):
    """A real illegal memory access in the worker before the 2nd of 4 shapes:
    that shape is recorded as failed, the worker restarts, the others are measured."""
    from collector.logs import read_failures, read_rows
    from collector.runner import sweep
    from collector.sweep import Shape
    shapes = [Shape("mla_generation", 16, "bfloat16", "bfloat16", b, 1, 2048) for b in (1, 2, 4, 8)]
    spec = tmp_path / "spec.yaml"
    spec.write_text("shapes:\n" + "".join(f"  - [mla_generation, 16, bfloat16, bfloat16, {s.batch_size}, 1, 2048]\n"
                                          for s in shapes))
    res = sweep(spec, tmp_path / "out", repeats=False, log=lambda *a: None,
                measurer_kwargs={"inject_fault": [shapes[1].label()]})
    fails = read_failures(tmp_path / "out", res["system"])
    assert len(fails) == 1 and fails[0]["batch_size"] == 2 and fails[0]["failure_kind"] == "device"
    assert "illegal memory access" in fails[0]["error"]
    rows = read_rows(tmp_path / "out", res["system"])
    assert sorted(r["batch_size"] for r in rows) == [1, 4, 8] and all(r["latency_ms"] > 0 for r in rows)
    assert res["worker_starts"] == 2


@pytest.mark.parametrize("desc", [False, True])
def test_mla_decode_cache_past_2_31_elements(desc):
    """Dense decode over a cache of 3.8M rows (2.2e9 elements > 2^31): two
    tokens read the last rows, one of them split over the SMs (split-KV +
    combine); float64 reference, output poisoned first."""
    from collector.kernels import mla_attn as ATT
    from collector.kernels import mla_decode as DEC
    N, L = 3_800_000, 20_000
    assert (N - 1) * 576 > 2 ** 31
    g = torch.Generator(device="cuda").manual_seed(11)
    kv = torch.empty((N, 576), device="cuda", dtype=torch.bfloat16)
    kv[-2 * L:] = torch.randn((2 * L, 576), device="cuda", generator=g).bfloat16()
    ql = torch.randn((2, 128, 512), device="cuda", generator=g).bfloat16()
    qp = torch.randn((2, 128, 64), device="cuda", generator=g).bfloat16()
    start = torch.tensor([N - 2 * L, N - L], device="cuda", dtype=torch.int32)
    ln = torch.tensor([L, L - 3], device="cuda", dtype=torch.int32)
    out = torch.full((2, 128, 512), float("nan"), device="cuda", dtype=torch.bfloat16)
    DEC.mla_decode(ql, qp, kv, out=out, start=start, length=ln, n_slots=L, sm_scale=0.07,
                   config={"desc": desc}, workspace={})
    assert DEC.LAST["splits"] > 1
    ref = ATT.mla_attention_ref(ql, qp, kv, sm_scale=0.07, start=start, length=ln)
    assert not torch.isnan(out).any() and _rel(out, ref) < 2e-2


@pytest.mark.parametrize("kv", ["bfloat16", "fp8"])
def test_kernel_op_generation_on_gpu(kv):
    """mla_generation_kernel as the sweep measures it: the launch matches the float64 reference
    (b=4 requests of kv_len 3000 + 1 rows, 128 heads) and the measurer times it."""
    from collector.kernel_ops import prepare_kernel
    from collector.kernels import mla_attn as ATT
    from collector.measure import GpuMeasurer
    from collector.sweep import Shape
    s = Shape("mla_generation_kernel", 128, "bfloat16", kv, 4, 1, 3000)
    step = prepare_kernel(s)
    st = step.state
    st["out"].fill_(float("nan"))
    got = step.run()
    torch.cuda.synchronize()
    ref = ATT.mla_attention_ref(st["q_lat"], st["q_pe"], st["kv"], sm_scale=st["sm_scale"], kv_scale=1.0,
                                start=st["start"], length=st["length"])
    assert not torch.isnan(got).any() and _rel(got, ref) < 2e-2
    r = GpuMeasurer(timing={"target_ms": 2, "max_samples": 6}).measure(s.asdict())
    assert r["timing_method"] == "cuda_graph" and r["median_ms"] > 0 and len(r["samples_ms"]) >= 5


def test_kernel_op_context_on_gpu():
    """mla_context_kernel: SDPA output against a float64 causal softmax at 2 x 300 tokens, 16 heads."""
    from collector.kernel_ops import prepare_kernel
    from collector.sweep import Shape
    step = prepare_kernel(Shape("mla_context_kernel", 16, "bfloat16", "bfloat16", 2, 300, 0))
    q, k, v = (step.state[n].double() for n in "qkv")
    got = step.run()[..., :128]
    s = q @ k.transpose(-1, -2) / 192 ** 0.5
    s = s.masked_fill(torch.ones(300, 300, device=s.device, dtype=torch.bool).triu(1), float("-inf"))
    ref = torch.softmax(s, dim=-1) @ v[..., :128]
    assert _rel(got, ref) < 2e-2
