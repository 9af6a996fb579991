"""Run 11 (issue 16 item 3): FlashInfer's MLA paged decode next to the collector's Triton decode kernel.

Same method as ``benchmarks/decode_bench.py``, in one process on the device: a 2 GiB device copy
(ceiling), then per cache dtype (bf16, FP8 e4m3) and per kernel

- a float64 check at b=3, H=128, uneven lengths (2000, 37, 1500), output poisoned with NaN first
  (NaN never passes), and of the whole b x kv_len problem token by token, fresh random data;
- the time at b x kv_len x H (default 64 x 32768 x 128), L2 flushed before every sample, CUDA-graph
  replays, median (``collector.timing.Bencher``); GB/s = (cache + q + out bytes) / time, TFLOP/s =
  2 H (576 + 512) per cache row, as decode_bench.

Kernels: the collector's Triton kernel with its chosen launch config (``collector/configs/h100.json``
``decode_config``), and FlashInfer's ``BatchMLAPagedAttentionWrapper`` (``--backends``, ``--pages``)
over the same cache viewed as pages (``collector/kernels/fi_mla.py``). ``--module`` also times the whole
MLA generation module (one layer, ``collector.modules``) with either decode, and compares their outputs.

    python benchmarks/collector_runs/run11/flashinfer_mla.py --json OUT.json [--module]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

D_LAT, D_PE, D_ROW = 512, 64, 576
FP8_SCALE = 0.5  # kv_scale of the FP8 checks (exercises the dequantisation scale; bf16 takes none)
SMALL_LENGTHS = (2000, 37, 1500)
SMALL_STARTS = (0, 2048, 4096)  # multiples of every page size tried


def traffic_bytes(b: int, L: int, H: int, cache_elem_bytes: int) -> int:
    """Bytes a decode step must move: the cache rows once, q (576) in and out (512) in bf16."""
    return b * L * D_ROW * cache_elem_bytes + b * H * (D_ROW + D_LAT) * 2


def tensor_flops(b: int, L: int, H: int) -> int:
    """Tensor-core work: per cache row and head, q.k over 576 and p.v over 512 (2 FLOP each)."""
    return 2 * H * (D_ROW + D_LAT) * b * L


def error_lines(e: BaseException, n: int = 6) -> str:
    """The exception and the last frames, for the record (a failure to build or run is a result)."""
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    text = "".join(tb).strip().splitlines()
    return "\n".join(text[-n:])


def full_check(fn, big, scale: float, ref_fn, sm_scale: float) -> float:
    """The whole problem against the float64 reference, token by token (decode_bench.full_check with a
    kv_scale argument: FlashInfer takes a scale with the FP8 cache only)."""
    import torch
    ql, qp, kv, start, ln, o = big
    o.fill_(float("nan"))
    fn(ql, qp, kv, o, scale)
    torch.cuda.synchronize()
    num = den = 0.0
    zero = torch.zeros(1, dtype=torch.int32, device=kv.device)
    for t in range(ql.shape[0]):
        s0, n = int(start[t]), int(ln[t])  # the reference reads only this request's rows
        ref = ref_fn(ql[t:t + 1], qp[t:t + 1], kv[s0:s0 + n], sm_scale=sm_scale, kv_scale=scale, start=zero,
                     length=ln[t:t + 1])
        num += (o[t:t + 1].double() - ref).norm().item() ** 2
        den += ref.norm().item() ** 2
    return (num / den) ** 0.5  # NaN in o -> NaN (fails every comparison)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--kv-len", type=int, default=32768)
    ap.add_argument("--heads", type=int, default=128)
    ap.add_argument("--kv", default="bf16,fp8")
    ap.add_argument("--backends", default="fa3")
    ap.add_argument("--backends-fp8", default="fa3", help="FlashInfer backends for the FP8 cache")
    ap.add_argument("--pages", default="1,64")
    ap.add_argument("--configs", type=Path, default=ROOT / "collector/configs/h100.json",
                    help="collector configs JSON whose decode_config is the Triton kernel's chosen config")
    ap.add_argument("--module", action="store_true")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    import torch
    import decode_bench as DB
    from collector.kernels import fi_mla
    from collector.kernels import mla_attn as ATT
    from collector.kernels import mla_decode as DEC
    from collector.timing import Bencher, env_info

    env = env_info()
    env["device"] = torch.cuda.get_device_name()
    for mod in ("flashinfer", "tvm_ffi"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001
            env[mod] = f"not importable: {type(e).__name__}: {e}"
    print(json.dumps(env), flush=True)
    DEC.CONFIG.update(json.loads(a.configs.read_text()).get("decode_config", {}))
    print(f"triton decode_config {DEC.CONFIG}", flush=True)

    b, L, H = a.batch, a.kv_len, a.heads
    bench = Bencher()
    g = torch.Generator(device="cuda").manual_seed(11)
    x = torch.empty(1 << 29, device="cuda")
    y = torch.empty_like(x)
    tc = bench.time(lambda: y.copy_(x), target_ms=20).median_ms
    copy_gbs = 2 * x.numel() * 4 / tc / 1e6
    print(f"copy 2 GiB: {tc:.4f} ms = {copy_gbs:.0f} GB/s (read + write)", flush=True)
    del x, y
    out = dict(env=env, batch=b, kv_len=L, heads=H, copy_ms=tc, copy_gbs=copy_gbs, rows=[], module=[])

    n_sm = torch.cuda.get_device_properties(0).multi_processor_count
    ws_triton: dict = {}

    def triton_maker(start, ln, kvd):
        n = int(ln.max())

        def f(ql, qp, kv, o, kv_scale):
            DEC.mla_decode(ql, qp, kv, out=o, start=start, length=ln, n_slots=n, sm_scale=DB.SM_SCALE,
                           kv_scale=kv_scale, workspace=ws_triton, n_sm=n_sm)
        return f

    def fi_maker(backend, page):
        def make(start, ln, kvd):
            m = fi_mla.FlashInferMLA("cuda", backend, page).plan(start, ln, H, kvd, DB.SM_SCALE)
            return lambda ql, qp, kv, o, kv_scale: m.run(ql, qp, kv, o, kv_scale)
        return make

    for kvname in a.kv.split(","):
        kernels = [("triton 0.2 (chosen config)", triton_maker)]
        for be in (a.backends if kvname == "bf16" else a.backends_fp8).split(","):
            for p in a.pages.split(","):
                kernels.append((f"flashinfer {be} page {p}", fi_maker(be, int(p))))
        kvd = torch.bfloat16 if kvname == "bf16" else torch.float8_e4m3fn
        scale = 1.0 if kvname == "bf16" else FP8_SCALE
        esz = 1 if kvname == "fp8" else 2
        nbytes, flops = traffic_bytes(b, L, H, esz), tensor_flops(b, L, H)
        big = DB.big_inputs(b, L, H, kvd, g)
        ql, qp, kv, start, ln, o = big
        for name, maker in kernels:
            row = dict(kv=kvname, kernel=name, batch=b, kv_len=L, heads=H, bytes=nbytes)
            try:
                # small uneven check
                sb = len(SMALL_LENGTHS)
                s_ql = torch.randn((sb, H, D_LAT), generator=g, device="cuda").bfloat16()
                s_qp = torch.randn((sb, H, D_PE), generator=g, device="cuda").bfloat16()
                s_kv = torch.randn((SMALL_STARTS[-1] + 2048, D_ROW), generator=g, device="cuda").to(kvd)
                s_st = torch.tensor(SMALL_STARTS, device="cuda", dtype=torch.int32)
                s_ln = torch.tensor(SMALL_LENGTHS, device="cuda", dtype=torch.int32)
                s_o = torch.full((sb, H, D_LAT), float("nan"), device="cuda", dtype=torch.bfloat16)
                t0 = time.time()
                fn = maker(s_st, s_ln, kvd)
                fn(s_ql, s_qp, s_kv, s_o, scale)
                torch.cuda.synchronize()
                row["first_call_s"] = round(time.time() - t0, 2)  # FlashInfer: module load (or JIT build) + plan
                ref = ATT.mla_attention_ref(s_ql, s_qp, s_kv, sm_scale=DB.SM_SCALE, kv_scale=scale, start=s_st,
                                            length=s_ln)
                row["small_err"] = float("nan") if torch.isnan(s_o).any() else DB.rel(s_o, ref)
                # the whole problem
                fn = maker(start, ln, kvd)
                tm = bench.time(lambda: fn(ql, qp, kv, o, scale), target_ms=40, min_samples=10, max_samples=30)
                row.update(ms=tm.median_ms, gbs=nbytes / tm.median_ms / 1e6, tflops=flops / tm.median_ms / 1e9,
                           method=tm.method, samples_ms=[round(s, 5) for s in tm.samples_ms])
                row["full_err"] = full_check(fn, big, scale, ATT.mla_attention_ref, DB.SM_SCALE)
                row["pass"] = bool(row["small_err"] < 2e-2 and row["full_err"] < 2e-2)  # NaN compares False
            except Exception as e:  # noqa: BLE001 - a kernel that does not build / run is recorded
                row["error"] = error_lines(e)
                try:
                    torch.cuda.synchronize()
                except Exception as e2:  # noqa: BLE001
                    row["error"] += f"\n(context broken: {type(e2).__name__})"
            out["rows"].append(row)
            dump(a.json, out)
            if "ms" in row:
                print(f"{kvname:4s} {name:28s} {row['ms']:.4f} ms {row['gbs']:6.0f} GB/s {row['tflops']:4.0f} TFLOP/s "
                      f"({row['method']}) err small {row.get('small_err')} full {row.get('full_err')} "
                      f"pass {row.get('pass')} first call {row.get('first_call_s')} s", flush=True)
            if "error" in row:
                print(f"{kvname:4s} {name:28s} FAILED\n{row['error']}", flush=True)
        del big, ql, qp, kv, start, ln, o
        torch.cuda.empty_cache()

    if a.module:
        module_rows(a, bench, out, ATT, fi_mla)
    print("\nsummary (GB/s = cache + q + out bytes / time; copy = read + write)")
    base = {r["kv"]: r for r in out["rows"] if r["kernel"].startswith("triton") and "ms" in r}
    for r in out["rows"]:
        if "ms" in r:
            t = base.get(r["kv"])
            print(f"  {r['kv']:4s} {r['kernel']:28s} {r['ms']:.4f} ms {r['gbs']:6.0f} GB/s "
                  f"= {r['gbs'] / copy_gbs:.2f} of the copy, {t['ms'] / r['ms'] if t else float('nan'):.2f}x "
                  f"the Triton kernel's speed, pass {r.get('pass')}")
    for m in out["module"]:
        print("  module", json.dumps(m))
    dump(a.json, out)
    return 0


def dump(path: Path | None, out: dict) -> None:
    """Written after every row: a command killed at its time limit still leaves what it measured."""
    if path:
        path.write_text(json.dumps(out, indent=1, default=str))


# TensorRT-LLM 1.3.0rc20 MLA generation module at H=128 b=64 kv_len=32768 (aiconfigurator-core tables),
# as benchmarks/decode_bench.py: by card
TRT_MODULE_MS = {("h100", "bfloat16", "bfloat16"): 1.083, ("h100", "fp8_block", "fp8"): 0.909,
                 ("h200", "bfloat16", "bfloat16"): 1.035}


def module_rows(a, bench, out, ATT, fi_mla) -> None:
    """The whole MLA generation module (one layer, CUDA graph, L2 flushed), Triton decode vs FlashInfer."""
    import torch
    from collector.modules import AttentionModule
    card = "h200" if "H200" in torch.cuda.get_device_name() else "h100"
    best = {}
    for r in out["rows"]:  # the fastest passing FlashInfer config per cache dtype
        if r["kernel"].startswith("flashinfer") and r.get("pass") and (
                r["kv"] not in best or r["ms"] < best[r["kv"]]["ms"]):
            best[r["kv"]] = r
    for gemm, kvd in (("bfloat16", "bfloat16"), ("fp8_block", "fp8")):
        fi = best.get("bf16" if kvd == "bfloat16" else "fp8")
        if fi is None:
            out["module"].append(dict(gemm=gemm, kv=kvd, skipped="no passing FlashInfer config"))
            continue
        _, be, _, page = fi["kernel"].split()
        fi_mla.CONFIG.update(backend=be, page=int(page))
        m = AttentionModule("mla", a.heads, gemm, kvd)
        outs = {}
        for impl in ("decode", "flashinfer"):
            step = None
            try:
                ATT.DENSE_IMPL = impl
                step = m.prepare_generation(a.batch, a.kv_len)
                outs[impl] = step.run().float()
                ms = bench.time(step.run, target_ms=30, min_samples=10, max_samples=20).median_ms
                trt = TRT_MODULE_MS.get((card, gemm, kvd))
                row = dict(gemm=gemm, kv=kvd, decode=impl, fi_config=fi_mla.CONFIG.copy() if impl != "decode" else None,
                           ms=ms, trt_ms=trt, ratio=ms / trt if trt else None)
            except Exception as e:  # noqa: BLE001
                row = dict(gemm=gemm, kv=kvd, decode=impl, error=error_lines(e))
            out["module"].append(row)
            dump(a.json, out)
            print("module", json.dumps(row), flush=True)
            del step
            torch.cuda.empty_cache()
        if len(outs) == 2:
            d = ((outs["flashinfer"] - outs["decode"]).norm() / outs["decode"].norm()).item()
            out["module"].append(dict(gemm=gemm, kv=kvd, rel_diff_flashinfer_vs_triton=d))
            print(f"module {gemm}/{kvd}: output rel diff FlashInfer vs Triton decode {d:.2e}", flush=True)
        ATT.DENSE_IMPL = "decode"
        del m
        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
