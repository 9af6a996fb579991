"""perfwh collector CLI.

  python -m collector plan  [--spec S]                 shape counts per op (no GPU)
  python -m collector check                            GPU correctness vs naive references
  python -m collector probe                            pick GEMM / kernel launch configs
  python -m collector targets                          issue-6 comparison shapes + SOL figures
  python -m collector run   [--spec S] [--out data/raw] [--deadline SECONDS] [--ops ...]
  python -m collector all   [...]                      probe + check + targets + run
  python -m collector summary [--out data/raw]         row counts, spread of repeats
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

T0 = time.time()


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


def cmd_plan(args):
    from .sweep import expand, load_spec
    shapes = expand(load_spec(args.spec), args.ops)
    by = {}
    for s in shapes:
        by[s.op] = by.get(s.op, 0) + 1
    print(json.dumps(by, indent=1), "total", len(shapes))


# ----------------------------------------------------------------- GPU parts
def _setup():
    import torch
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: the collector measures on a GPU (CPU tests: pytest tests/collector)")
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch


def cmd_check(args):
    _setup()
    from .check import run_all
    log("correctness checks (Triton kernels, GEMMs, modules vs naive PyTorch references)")
    ok = run_all("cuda", log=log)
    log("checks", "PASSED" if ok else "FAILED")
    return ok


def probe(args, results: dict):
    torch = _setup()
    from .gemm import probe_fp8_block
    from .kernels import indexer as IDX
    from .kernels import mla_attn as ATT
    from .timing import Bencher
    log("probe: fp8 blockwise GEMM")
    results["gemm_impl"] = probe_fp8_block("cuda", log=log)
    bench = Bencher()
    g = torch.Generator(device="cuda").manual_seed(0)
    # sparse attention launch config on a context-like and a decode-like problem
    T, H, N = 2048, 128, 16384
    ql = torch.randn((T, H, 512), device="cuda", generator=g).bfloat16()
    qp = torch.randn((T, H, 64), device="cuda", generator=g).bfloat16()
    kv = torch.randn((N, 576), device="cuda", generator=g).bfloat16()
    idx = torch.randint(0, N, (T, 2048), device="cuda", generator=g, dtype=torch.int32)
    o = torch.empty_like(ql)
    b, L = 64, 32769
    kvd = torch.randn((b * L, 576), device="cuda", generator=g).bfloat16()
    qd, qpd = ql[:b].contiguous(), qp[:b].contiguous()
    idxd = (torch.randint(0, L, (b, 2048), device="cuda", generator=g)
            + torch.arange(b, device="cuda")[:, None] * L).int()
    od = torch.empty_like(qd)
    st = torch.arange(b, device="cuda", dtype=torch.int32) * L
    ln = torch.full((b,), L, device="cuda", dtype=torch.int32)
    # context config: many query tokens (T=2048 here), one head block pair per token
    fields = ("block_n", "num_warps", "num_stages", "block_h_max", "skip_empty", "split_target")
    ctx_cands = [(64, 8, 3, 64, True, 2), (64, 8, 3, 64, False, 2), (32, 4, 3, 32, True, 2),
                 (32, 4, 3, 32, False, 2), (64, 8, 2, 64, False, 2)]
    results["attn_probe_ctx"] = []
    best = None
    for cand in ctx_cands:
        ATT.CONFIG.update(dict(zip(fields, cand)))
        try:
            t_ctx = bench.time(lambda: ATT.mla_attention(ql, qp, kv, out=o, sm_scale=0.07, idx=idx),
                               target_ms=20, max_samples=10).median_ms
        except Exception as exc:  # noqa: BLE001
            log(f"  ctx attn config {cand}: ERROR {str(exc).splitlines()[0][:120]}")
            continue
        log(f"  ctx attn config {dict(zip(fields, cand))} (regs {ATT.LAST.get('n_regs')}, spills "
            f"{ATT.LAST.get('n_spills')}): T=2048 H=128 topk=2048 {t_ctx:.3f} ms")
        results["attn_probe_ctx"].append(dict(cfg=list(cand), ms=t_ctx, regs=ATT.LAST.get("n_regs"),
                                              spills=ATT.LAST.get("n_spills")))
        if best is None or t_ctx < best[0]:
            best = (t_ctx, cand)
    ATT.CONFIG.update(dict(zip(fields, best[1])))
    log(f"  chosen context attention config {ATT.CONFIG}")
    # decode config: b=64 sparse (DSA generation), b=64 and b=8 dense at L=32k (MLA generation)
    b8 = 8
    q8l, q8p, o8 = qd[:b8].contiguous(), qpd[:b8].contiguous(), od[:b8].contiguous()
    dec_cands = [(64, 4, 3, 32, False, 2), (64, 8, 2, 64, False, 2), (64, 8, 2, 64, False, 1),
                 (64, 8, 2, 64, False, 4), (32, 8, 2, 64, False, 2), (64, 4, 2, 32, False, 2),
                 (64, 4, 3, 32, False, 1), (64, 4, 3, 32, False, 4), (32, 4, 3, 32, False, 2),
                 (128, 8, 2, 64, False, 2)]
    results["attn_probe_dec"] = []
    best = None
    for cand in dec_cands:
        ATT.CONFIG_DEC.update(dict(zip(fields, cand)))
        try:
            ws = {}
            t_sp = bench.time(lambda: ATT.mla_attention(qd, qpd, kvd, out=od, sm_scale=0.07, idx=idxd, workspace=ws),
                              target_ms=10, max_samples=20).median_ms
            ws = {}
            t_dn = bench.time(lambda: ATT.mla_attention(qd, qpd, kvd, out=od, sm_scale=0.07, start=st, length=ln,
                                                        n_slots=L, workspace=ws), target_ms=10, max_samples=10).median_ms
            ws = {}
            t_d8 = bench.time(lambda: ATT.mla_attention(q8l, q8p, kvd, out=o8, sm_scale=0.07, start=st[:b8],
                                                        length=ln[:b8], n_slots=L, workspace=ws),
                              target_ms=10, max_samples=10).median_ms
        except Exception as exc:  # noqa: BLE001
            log(f"  dec attn config {cand}: ERROR {str(exc).splitlines()[0][:120]}")
            continue
        score = t_sp + t_dn / 4 + t_d8
        log(f"  dec attn config {cand} (regs {ATT.LAST.get('n_regs')}, spills {ATT.LAST.get('n_spills')}): "
            f"sparse b=64 {t_sp:.4f} ms, dense b=64 L=32k {t_dn:.3f} ms ({b * L * 1152 / t_dn / 1e6:.0f} GB/s), "
            f"dense b=8 L=32k {t_d8:.4f} ms ({b8 * L * 1152 / t_d8 / 1e6:.0f} GB/s)")
        results["attn_probe_dec"].append(dict(cfg=list(cand), sparse64=t_sp, dense64=t_dn, dense8=t_d8,
                                              regs=ATT.LAST.get("n_regs"), spills=ATT.LAST.get("n_spills")))
        if best is None or score < best[0]:
            best = (score, cand)
    ATT.CONFIG_DEC.update(dict(zip(fields, best[1])))
    # split targets chosen separately for the sparse and the dense mode among same-tile candidates
    same = [r for r in results["attn_probe_dec"] if r["cfg"][:5] == list(best[1][:5])]
    ATT.CONFIG_DEC["split_target"] = min(same, key=lambda r: r["sparse64"])["cfg"][5]
    ATT.CONFIG_DEC["split_target_dense"] = min(same, key=lambda r: r["dense64"] / 4 + r["dense8"])["cfg"][5]
    results["attn_config"] = dict(ATT.CONFIG)
    results["attn_config_dec"] = dict(ATT.CONFIG_DEC)
    log(f"  chosen decode attention config {ATT.CONFIG_DEC}")
    # indexer generation kernel (bandwidth-bound on the index-K cache)
    fp8 = torch.float8_e4m3fn
    qg8 = torch.randn((b, 64, 128), device="cuda", generator=g).to(fp8)
    wg = torch.rand((b, 64), device="cuda", generator=g)
    kg8 = torch.randn((b * L, 128), device="cuda", generator=g).to(fp8)
    ksg = torch.rand((b * L,), device="cuda", generator=g)
    lgg = torch.empty((b, L), device="cuda")
    bestg = None
    for bn3, nw3, ns3, nbk in ((128, 4, 2, 1), (128, 4, 2, 4), (128, 4, 3, 8), (64, 4, 3, 8), (128, 8, 3, 4),
                               (256, 8, 3, 2)):
        IDX.GEN_CONFIG.update(block_n=bn3, num_warps=nw3, num_stages=ns3, blocks=nbk)
        try:
            t = bench.time(lambda: IDX.indexer_logits_generation(qg8, wg, kg8, ksg, lgg, L=L, k_rows_per_req=L),
                           target_ms=10).median_ms
        except Exception as exc:  # noqa: BLE001
            log(f"  indexer gen config {bn3},{nw3},{ns3}: ERROR {str(exc).splitlines()[0][:120]}")
            continue
        log(f"  indexer gen config block_n={bn3} warps={nw3} stages={ns3} blocks/program={nbk}: b=64 L=32k "
            f"{t:.4f} ms ({b * L * 132 / t / 1e6:.0f} GB/s)")
        if bestg is None or t < bestg[0]:
            bestg = (t, (bn3, nw3, ns3, nbk))
    IDX.GEN_CONFIG.update(block_n=bestg[1][0], num_warps=bestg[1][1], num_stages=bestg[1][2], blocks=bestg[1][3])
    results["indexer_gen_config"] = dict(IDX.GEN_CONFIG)
    del kg8, qg8, lgg
    del kvd, kv
    # indexer context launch config
    n_q = 4096
    q8 = torch.randn((n_q, 64, 128), device="cuda", generator=g).to(fp8)
    w = torch.rand((n_q, 64), device="cuda", generator=g)
    k8 = torch.randn((n_q, 128), device="cuda", generator=g).to(fp8)
    ks = torch.rand((n_q,), device="cuda", generator=g)
    lg = torch.empty((n_q, n_q), device="cuda")
    bestc = None
    for bm, bn2, nw in ((64, 128, 4), (128, 128, 8), (64, 64, 4), (128, 64, 4)):
        IDX.CTX_CONFIG.update(block_m=bm, block_n=bn2, num_warps=nw)
        try:
            t = bench.time(lambda: IDX.indexer_logits_context(q8, w, k8, ks, lg, n_req=1, n_q=n_q, pos0=0, L=n_q,
                                                              k_rows_per_req=n_q), target_ms=10).median_ms
        except Exception as exc:  # noqa: BLE001
            log(f"  indexer config {bm},{bn2},{nw}: ERROR {str(exc).splitlines()[0][:120]}")
            continue
        fl = 2 * 64 * 128 * n_q * n_q / 2
        log(f"  indexer ctx config block_m={bm} block_n={bn2} warps={nw}: {t:.3f} ms ({fl / t / 1e9:.0f} TFLOP/s causal)")
        if bestc is None or t < bestc[0]:
            bestc = (t, (bm, bn2, nw))
    bm, bn2, nw = bestc[1]
    IDX.CTX_CONFIG.update(block_m=bm, block_n=bn2, num_warps=nw)
    results["indexer_config"] = dict(IDX.CTX_CONFIG)
    # SDPA: dv=128 as is, or v padded to 192
    from . import modules as MOD
    import torch.nn.functional as F
    q = torch.randn((1, 128, 8192, 192), device="cuda", generator=g).bfloat16()
    k = torch.randn_like(q)
    v = torch.randn((1, 128, 8192, 128), device="cuda", generator=g).bfloat16()
    t_plain = bench.time(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), target_ms=20).median_ms
    t_pad = bench.time(lambda: F.scaled_dot_product_attention(q, k, F.pad(v, (0, 64)), is_causal=True)[..., :128],
                       target_ms=20).median_ms
    fl = 2 * 128 * (192 + 128) * 8192 * 8192 / 2
    log(f"  SDPA causal H=128 s=8192 dqk=192: dv=128 {t_plain:.3f} ms ({fl / t_plain / 1e9:.0f} TFLOP/s), "
        f"v padded to 192 {t_pad:.3f} ms")
    MOD.SDPA_PAD_V = t_pad < 0.95 * t_plain
    results["sdpa"] = dict(plain_ms=t_plain, pad_ms=t_pad, pad_v=MOD.SDPA_PAD_V)
    del q, k, v, lg, q8
    gc.collect()
    torch.cuda.empty_cache()


def targets(args, results: dict, writer=None, clock=None):
    """Issue-6 comparison shapes, plus the sparse kernel alone against SOL."""
    torch = _setup()
    from .kernels import mla_attn as ATT
    from .modules import AttentionModule
    from .sweep import Shape
    from .timing import Bencher
    bench = Bencher()
    # TensorRT-LLM 1.3.0rc20 H200 (aiconfigurator tables), 128 heads, bf16 KV cache
    trt = {"dsa_context": 58.0336, "dsa_generation": 0.458, "dsa_generation_bf16": 0.4843,
           "mla_context": 26.3087, "mla_generation_bf16": 1.0353}
    out = {}
    for name, fam, gt, sh in (("dsa_context", "dsa", "fp8_block", ("ctx", 1, 16384, 0)),
                              ("dsa_generation", "dsa", "fp8_block", ("gen", 64, 32768)),
                              ("dsa_generation_bf16", "dsa", "bfloat16", ("gen", 64, 32768)),
                              ("mla_context", "mla", "fp8_block", ("ctx", 1, 16384, 0)),
                              ("mla_generation_bf16", "mla", "bfloat16", ("gen", 64, 32768))):
        m = AttentionModule(fam, 128, gt, "bfloat16")
        step = m.prepare_context(*sh[1:]) if sh[0] == "ctx" else m.prepare_generation(*sh[1:])
        reps = []
        for _ in range(3):
            tm = bench.time(step.run, target_ms=200 if sh[0] == "ctx" else 20, min_samples=5, max_samples=20)
            reps.append(tm.median_ms)
        lat = statistics.median(reps)
        out[name] = dict(latency_ms=lat, repeats_ms=reps, trt_ms=trt[name], ratio=lat / trt[name])
        log(f"  target {name}: {lat:.3f} ms (3 repeats {', '.join(f'{r:.3f}' for r in reps)}) vs TRT-LLM "
            f"{trt[name]} ms -> ratio {lat / trt[name]:.2f}")
        del step, m
        gc.collect()
        torch.cuda.empty_cache()
    # pieces of DSA generation b=64 kv=32768: indexer logits, top-k
    from .kernels import indexer as IDX
    fp8 = torch.float8_e4m3fn
    g0 = torch.Generator(device="cuda").manual_seed(0)
    b, L = 64, 32769
    q8 = torch.randn((b, 64, 128), device="cuda", generator=g0).to(fp8)
    w = torch.rand((b, 64), device="cuda", generator=g0)
    k8 = torch.randn((b * L, 128), device="cuda", generator=g0).to(fp8)
    ks = torch.rand((b * L,), device="cuda", generator=g0)
    lg = torch.empty((b, L), device="cuda")
    rb = (torch.arange(b, device="cuda") * L)[:, None]
    ix = torch.empty((b, 2048), device="cuda", dtype=torch.int32)
    t_lg = bench.time(lambda: IDX.indexer_logits_generation(q8, w, k8, ks, lg, L=L, k_rows_per_req=L), target_ms=10).median_ms
    t_tk = bench.time(lambda: IDX.topk_indices(lg, 2048, row_base=rb, out=ix), target_ms=10).median_ms
    log(f"  dsa generation b=64 kv=32768 pieces: indexer logits {t_lg:.4f} ms "
        f"({b * L * 132 / t_lg / 1e6:.0f} GB/s of index-K), top-k 2048 {t_tk:.4f} ms")
    out["dsa_gen_pieces"] = dict(indexer_logits_ms=t_lg, topk_ms=t_tk)
    del k8
    # sparse attention kernel alone
    peak_bf16, bw = 989e12, (4.8e12 if "H200" in torch.cuda.get_device_name() else 3.35e12)
    g = torch.Generator(device="cuda").manual_seed(0)
    for name, T, L, dense_slots in (("context b=1 isl=16384", 16384, 16384, None), ("generation b=64 kv=32768", 64, 32769, None)):
        H = 128
        b = 1 if T == 16384 else 64
        ql = torch.randn((T, H, 512), device="cuda", generator=g).bfloat16()
        qp = torch.randn((T, H, 64), device="cuda", generator=g).bfloat16()
        kv = torch.randn((b * L, 576), device="cuda", generator=g).bfloat16()
        if T == 16384:  # causal: query p selects min(p+1, 2048) of rows 0..p
            pos = torch.arange(T, device="cuda")
            r = torch.rand((T, 2048), device="cuda", generator=g)
            idx = (r * (pos[:, None] + 1).float()).long().clamp_max(T - 1)
            j = torch.arange(2048, device="cuda")
            idx = torch.where(pos[:, None] < 2048, torch.where(j[None, :] <= pos[:, None], j[None, :], -1), idx)
            valid = int((idx >= 0).sum())
        else:
            idx = torch.randint(0, L, (T, 2048), device="cuda", generator=g) + torch.arange(b, device="cuda")[:, None] * L
            valid = T * 2048
        idx = idx.int()
        o = torch.empty_like(ql)
        tm = bench.time(lambda: ATT.mla_attention(ql, qp, kv, out=o, sm_scale=0.07, idx=idx, workspace={}),
                        target_ms=100, max_samples=20)
        t = tm.median_ms / 1e3
        f_useful = 2 * H * (576 + 512) * valid
        f_padded = 2 * H * (576 + 512) * T * 2048
        nbytes = 2 * valid * 576 + 2 * T * H * (576 + 512) + 4 * T * 2048  # rows read once per query
        sol = max(f_padded / peak_bf16, nbytes / bw)
        out[f"sparse_kernel {name}"] = dict(ms=tm.median_ms, tflops_useful=f_useful / t / 1e12,
                                            tflops_padded=f_padded / t / 1e12, gbps=nbytes / t / 1e9,
                                            sol_ms=sol * 1e3, frac_of_sol=sol / t)
        log(f"  sparse kernel {name} H=128: {tm.median_ms:.3f} ms, {f_useful / t / 1e12:.0f} TFLOP/s on valid keys "
            f"({f_padded / t / 1e12:.0f} counting all 2048 slots, peak 989), {nbytes / t / 1e9:.0f} GB/s of rows+q+o "
            f"(HBM {bw / 1e9:.0f}); SOL {sol * 1e3:.3f} ms = {sol / t * 100:.0f}% of measured")
        del ql, qp, kv, idx, o
        torch.cuda.empty_cache()
    results["targets"] = out


def run_sweep(args, results: dict):
    """The sweep, each shape in a measurement worker process (fault isolation: worker.py)."""
    import sys as _sys
    from .measure import current_configs
    from .runner import sweep
    from .timing import gpu_clock_mhz
    if "torch" in _sys.modules:  # probe / check / targets ran here: hand the GPU memory back first
        import torch
        if torch.cuda.is_initialized():
            gc.collect()
            torch.cuda.empty_cache()
    last_clock = [None, 0.0]

    def clock():
        if time.time() - last_clock[1] > 20:
            last_clock[0], last_clock[1] = gpu_clock_mhz(), time.time()
        return last_clock[0]

    kw = {"configs": current_configs()}
    if args.inject_fault:
        kw["inject_fault"] = list(args.inject_fault)
    try:
        res = sweep(args.spec, args.out, deadline_s=args.deadline, ops=args.ops, tag=args.tag or None,
                    measurer_kwargs=kw, shape_timeout_s=args.shape_timeout, repeats=not args.no_repeats,
                    log=log, clock=clock, t0=T0, run_id=results.get("run_id"))
    except (RuntimeError, ValueError) as exc:
        sys.exit(f"collector run: {exc}")
    results.update(res)
    return res


def cmd_summary(args):
    from . import VERSION
    from .config import OPS
    from .logs import read_rows, shape_from_json
    found = 0
    for system in ("h200_sxm", "h100_sxm"):
        rows = read_rows(Path(args.out), system)
        if not rows:
            continue
        found += 1
        print(f"{system}: {len(rows)} rows")
        by = {}
        for r in rows:
            by.setdefault(r["op"], []).append(r)
        for op in OPS:
            rs = by.get(op, [])
            keys = {shape_from_json(r).key() for r in rs}
            print(f"  {op}: {len(rs)} rows, {len(keys)} distinct shapes")
        groups = {}
        for r in rows:
            groups.setdefault(shape_from_json(r).key(), []).append(r["latency_ms"])
        sp = [(max(v) - min(v)) / statistics.mean(v) for v in groups.values() if len(v) > 1]
        if sp:
            print(f"  repeated shapes: {len(sp)}; relative spread (max-min)/mean: median {statistics.median(sp) * 100:.2f}%,"
                  f" p90 {sorted(sp)[int(0.9 * (len(sp) - 1))] * 100:.2f}%, max {max(sp) * 100:.2f}%")
    if not found:  # a mistyped --out printed nothing and exited 0
        print(f"python -m collector summary: no collector JSONL logs under {args.out} (h200_sxm, h100_sxm, "
              f"version {VERSION})", file=sys.stderr)
        return 1


def load_configs(cfg: dict) -> None:
    from .measure import apply_configs
    apply_configs(cfg)


def _seconds(text: str) -> float:
    """A positive number of seconds (argparse type): 0, negatives and nan would stop or never stop a run."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:  # nan fails this too
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text!r}")
    return value


def main(argv=None):
    from .config import OPS

    ap = argparse.ArgumentParser(prog="python -m collector", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["plan", "check", "probe", "targets", "run", "all", "summary"])
    ap.add_argument("--spec", default=None, help="sweep YAML (default collector/sweeps/default.yaml)")
    ap.add_argument("--out", default="data/raw", help="raw-log root (default data/raw)")
    ap.add_argument("--deadline", type=_seconds, default=1e9, help="stop the sweep after this many seconds "
                                                                   "(> 0; default: no deadline)")
    ap.add_argument("--ops", nargs="*", default=None, choices=sorted(OPS), metavar="OP",
                    help=f"only these ops of the spec (default: all): {', '.join(sorted(OPS))}")
    ap.add_argument("--results", default=None, help="write a JSON summary of probes/targets/sweep here")
    ap.add_argument("--configs", default=None, help="JSON from an earlier probe (--results) to reuse")
    ap.add_argument("--skip", nargs="*", default=[], help="with 'all': parts to skip (probe check targets run)")
    ap.add_argument("--tag", default="run",
                    help="raw-log file tag: files <table>.<tag>.txt/.jsonl; 'run' (default) = the run id, "
                         "'' = the plain <table>.txt names (appended)")
    ap.add_argument("--shape-timeout", type=_seconds, default=300.0,
                    help="seconds one shape may take before its worker is killed (default 300)")
    ap.add_argument("--no-repeats", action="store_true", help="skip the end-of-run re-measurement of every "
                                                              "n-th shape")
    ap.add_argument("--inject-fault", nargs="*", default=[], metavar="LABEL",
                    help="(tests) shape labels before which the worker makes an illegal memory access")
    args = ap.parse_args(argv)
    if args.command in ("plan", "run", "all"):  # a bad spec is one line, before any GPU work
        from .sweep import SpecError, load_spec
        try:
            load_spec(args.spec)
        except SpecError as exc:
            ap.exit(2, f"python -m collector {args.command}: {exc}\n")
    if args.command in ("run", "all") and Path(args.out).exists() and not Path(args.out).is_dir():
        ap.exit(2, f"python -m collector {args.command}: --out {args.out} is a file, not the raw-log folder\n")
    if args.results:  # written at the end: a folder that is not there would lose a whole run's summary
        res = Path(args.results)
        if res.is_dir() or not res.parent.is_dir():
            ap.exit(2, f"python -m collector {args.command}: --results {res}: "
                       f"{'is a folder' if res.is_dir() else f'folder {res.parent} does not exist'}\n")
    results: dict = {}
    if args.configs:
        try:
            cfg = json.loads(Path(args.configs).read_text())
            if not isinstance(cfg, dict):
                raise ValueError(f"expected a JSON object (an earlier --results), got {type(cfg).__name__}")
            load_configs(cfg)
        except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
            ap.exit(2, f"python -m collector {args.command}: --configs {args.configs}: "
                       f"{getattr(exc, 'strerror', None) or exc}\n")
    try:
        if args.command == "plan":
            return cmd_plan(args)
        if args.command == "summary":
            return cmd_summary(args)
        if args.command == "check":
            results["check_ok"] = cmd_check(args)
        for part, fn, cmds in (("probe", probe, ("probe", "all")),
                               ("check", lambda a, r: r.__setitem__("check_ok", cmd_check(a)), ("all",)),
                               ("targets", targets, ("targets", "all"))):
            if args.command in cmds and part not in args.skip:
                try:
                    fn(args, results)
                except Exception as exc:  # noqa: BLE001 - keep going to the sweep
                    import traceback
                    traceback.print_exc()
                    results[f"{part}_error"] = repr(exc)
                    log(f"{part} FAILED: {exc!r}")
        if args.command in ("run", "all") and "run" not in args.skip:
            run_sweep(args, results)
    finally:
        if args.results:
            Path(args.results).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main() or 0)
