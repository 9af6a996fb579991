"""The *_kernel ops (attention kernel alone, issue 16 item 5): sweep shapes, kernel outputs against
naive float64 references (CPU: Triton interpreter or the reference path), and the raw-log records
as the warehouse ingests them."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from collector.config import OPS  # noqa: E402
from collector.kernel_ops import KERNEL_OPS, prepare_kernel  # noqa: E402
from collector.logs import CSV_HEADER, RawLogWriter, done_keys  # noqa: E402
from collector.sweep import Shape, expand, load_spec  # noqa: E402

SPEC = Path(__file__).resolve().parents[2] / "collector" / "sweeps" / "kernels.yaml"
CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"  # CPU: float32 through the interpreter; GPU: bf16 compiled
TOL = 2e-2 if CUDA else 1e-4


def test_kernel_sweep_shapes():
    shapes = expand(load_spec(SPEC))
    ctx = [s for s in shapes if s.op == "mla_context_kernel"]
    gen = [s for s in shapes if s.op == "mla_generation_kernel"]
    assert (len(ctx), len(gen)) == (236, 624)
    assert {s.kv_cache_dtype for s in ctx} == {"bfloat16"}
    assert {s.kv_cache_dtype for s in gen} == {"bfloat16", "fp8"}
    assert max(s.isl for s in ctx if s.batch_size == 1) == 131072
    assert max(s.batch_size * s.isl for s in ctx if s.batch_size > 1) == 32768
    assert max(s.batch_size * s.prefix for s in gen) == 1 << 24


def test_kernel_ops_use_the_published_table_names():
    pytest.importorskip("polars")
    from warehouse.schema import COLLECTOR_OP_NAMES, TABLE_STEMS
    for op in KERNEL_OPS:
        stem, op_name, _, _ = OPS[op]
        assert TABLE_STEMS[stem] == op
        assert COLLECTOR_OP_NAMES[op_name] == (op, None)


def _decode_oracle(q_lat, q_pe, kv, b, L, scale):
    """Per request and head: softmax over its L cache rows, weighted sum of the 512 latent columns."""
    H = q_lat.shape[1]
    out = torch.zeros(q_lat.shape, dtype=torch.float64)
    kvf = kv.double()
    for r in range(b):
        rows = kvf[r * L:(r + 1) * L]
        for h in range(H):
            q = torch.cat([q_lat[r, h], q_pe[r, h]]).double()
            w = torch.softmax(rows @ q * scale, dim=0)
            out[r, h] = w @ rows[:, :512]
    return out


@pytest.mark.parametrize("use_triton", [True, False])
def test_generation_kernel_matches_float64(use_triton, monkeypatch):
    from collector.kernels.mla_attn import HAVE_TRITON
    if use_triton and not HAVE_TRITON:
        pytest.skip("triton not installed")
    if use_triton and not CUDA:
        from collector.kernels import mla_decode as DEC
        from collector.kernels.interp import patch_interpreter
        patch_interpreter()
        monkeypatch.setattr(DEC, "CONFIG", dict(DEC.CONFIG, block_h=16, block_n=16))  # small CPU tiles
    s = Shape("mla_generation_kernel", 16, "bfloat16", "bfloat16", 2, 1, 70)
    step = prepare_kernel(s, device=DEV, use_triton=use_triton)
    st = step.state
    st["out"].fill_(float("nan"))  # every element must be written
    got = step.run().double().cpu()
    want = _decode_oracle(*(st[n].cpu() for n in ("q_lat", "q_pe", "kv")), 2, 71, 192 ** -0.5)
    assert step.meta["L"] == 71 and st["kv"].shape == (142, 576)
    assert torch.isfinite(got).all()
    assert ((got - want).norm() / want.norm()).item() < TOL


@pytest.mark.parametrize("prefix", [0, 5])
def test_context_kernel_matches_float64(prefix):
    s = Shape("mla_context_kernel", 16, "bfloat16", "bfloat16", 2, 9, prefix)
    step = prepare_kernel(s, device=DEV)
    q, k, v = (step.state[n].double().cpu() for n in "qkv")
    got = step.run().double().cpu()[..., :128]
    L = prefix + 9
    want = torch.zeros_like(got)
    for i in range(9):  # query i sees keys 0 .. prefix + i
        n = prefix + i + 1
        w = torch.softmax(torch.einsum("bhd,bhnd->bhn", q[:, :, i], k[:, :, :n]) / 192 ** 0.5, dim=-1)
        want[:, :, i] = torch.einsum("bhn,bhnd->bhd", w, v[:, :, :n, :128])
    assert k.shape[2] == L and ((got - want).norm() / want.norm()).item() < (TOL if CUDA else 1e-6)


def test_kernel_shapes_refused():
    with pytest.raises(ValueError, match="not a kernel op"):
        prepare_kernel(Shape("mla_generation", 16, "bfloat16", "bfloat16", 1, 1, 8), device="cpu")
    with pytest.raises(ValueError, match="only bfloat16"):
        prepare_kernel(Shape("mla_context_kernel", 16, "bfloat16", "fp8", 1, 8, 0), device="cpu")


def test_kernel_records_ingest_as_kernel_tables(tmp_path):
    pytest.importorskip("polars")
    from warehouse.ingest import ingest_paths
    from warehouse.read import read_perf_points

    w = RawLogWriter(tmp_path / "raw", "h100_sxm", "NVIDIA H100 80GB HBM3", "r1", {"torch": "x"}, tag="k1")
    shapes = [Shape("mla_generation_kernel", 128, "bfloat16", "fp8", 64, 1, 32768),
              Shape("mla_context_kernel", 32, "bfloat16", "bfloat16", 2, 1024, 0)]
    for s, ms in zip(shapes, (2.04, 0.5)):
        w.write(s, ms, [ms, ms * 1.01, ms * 0.99, ms, ms], 1980.0)
    csv_p, js_p = w.paths("mla_generation_kernel")
    assert csv_p.name == "generation_mla_perf.k1.txt" and js_p.name == "generation_mla_perf.k1.jsonl"
    lines = csv_p.read_text().splitlines()
    assert lines[0] == CSV_HEADER
    row = dict(zip(CSV_HEADER.split(","), lines[1].split(",")))
    assert (row["op_name"], row["kernel_source"], row["gemm_type"], row["step"]) == \
        ("mla_generation", "triton_decode", "", "32768")
    assert done_keys(tmp_path / "raw", "h100_sxm") == {s.key() for s in shapes}  # resume sees them

    report = ingest_paths([tmp_path / "raw"], tmp_path / "home")
    pts = read_perf_points(tmp_path / "home").sort("op")
    assert pts["op"].to_list() == ["mla_context_kernel", "mla_generation_kernel"]
    assert pts["gemm_type"].to_list() == [None, None]
    assert pts["kernel_source"].to_list() == ["torch_sdpa", "triton_decode"]
    assert pts["kv_len"].to_list() == [None, 32768] and pts["prefix"].to_list() == [0, None]
    assert pts["latency_ms"].to_list() == pytest.approx([0.5, 2.04])
    assert not any(getattr(f, "quarantined", 0) for f in report.files)
