"""Compile the MLA decode kernel for sm_90 on a machine without a GPU: TTGIR layouts, ptxas registers/spills.

    python benchmarks/decode_compile.py "peel bn64 w8 s2" [--kv fp8] [--dump DIR]

Uses Triton's own ptxas (triton/backends/nvidia/bin). Names are benchmarks/decode_bench.py's SWEEP names.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from collector.kernels import mla_decode as DEC  # noqa: E402


def _signature(fn, c: dict, qt: str, kt: str, split: bool) -> tuple[dict, dict]:
    """Argument types and constexprs of a launch of ``fn`` as ``mla_decode`` makes it (H=128, bf16/fp8)."""
    ptr = {"Q_LAT": qt, "Q_PE": qt, "KV": kt, "START": "i32", "LEN": "i32", "O": "bf16", "O_PART": "fp32",
           "LSE_PART": "fp32", "P_SCR": qt}
    const = dict(D_LAT=512, D_PE=64, BLOCK_H=c["block_h"], BLOCK_N=c["block_n"], SPLIT=split)
    if fn is DEC._decode_kernel:
        const.update(PEEL=bool(c.get("peel")), GS=2 if c.get("gs") else 0, FP8_DOT=False)
    sig = {}
    for a in fn.arg_names:
        if a in const:
            sig[a] = "constexpr"
        elif a in ptr:
            sig[a] = "*" + ptr[a]
        elif a in ("qk_scale", "out_scale"):
            sig[a] = "fp32"
        else:
            sig[a] = "i32"
    return sig, const


def compile_one(name: str, cfg: dict, kv: str = "bf16", split: bool = False, dump: Path | None = None) -> dict:
    c = dict(DEC.CONFIG, peel=False, fp8={}, small_h={}, small_h_fp8={})
    c.update(cfg)
    f16 = kv == "fp8" and c.get("f16")
    qt = "fp16" if f16 else "bf16"
    kt = "fp8e4nv" if kv == "fp8" else "bf16"
    if c.get("desc"):
        raise ValueError("desc (TMA descriptor) configs are not handled here")
    fn = DEC._decode_kernel
    sig, const = _signature(fn, c, qt, kt, split)
    attrs = {}
    for i, a in enumerate(fn.arg_names):
        if sig.get(a, "").startswith("*") or a.startswith("s_") or a == "CHUNK":
            attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn, sig, constexprs=const, attrs=attrs)
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                       options=dict(num_warps=c["num_warps"], num_stages=c["num_stages"]))
    ttgir, ptx = k.asm["ttgir"], k.asm["ptx"]
    ptxas = Path(triton.__file__).parent / "backends/nvidia/bin/ptxas"
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "k.ptx"
        p.write_text(ptx)
        r = subprocess.run([str(ptxas), "-v", "--gpu-name=sm_90a", str(p), "-o", str(Path(d) / "k.o")],
                           capture_output=True, text=True)
    info = r.stderr
    regs = re.search(r"Used (\d+) registers", info)
    spill = re.search(r"(\d+) bytes spill stores", info)
    mma = sorted(set(re.findall(r"#ttg\.nvidia_mma<\{[^}]*\}>", ttgir)))
    out = dict(name=name, kv=kv, regs=int(regs.group(1)) if regs else None,
               spill_stores=int(spill.group(1)) if spill else None, smem=k.metadata.shared,
               wgmma=ptx.count("wgmma.mma_async"), ws="warp_specialize" in ttgir, mma_layouts=mma)
    if dump:
        dump.mkdir(parents=True, exist_ok=True)
        tag = re.sub(r"\W+", "_", f"{name}_{kv}")
        (dump / f"{tag}.ttgir").write_text(ttgir)
        (dump / f"{tag}.ptx").write_text(ptx)
    return out


def main(argv=None) -> int:
    from benchmarks.decode_bench import SWEEP
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="+")
    ap.add_argument("--kv", default="bf16")
    ap.add_argument("--split", action="store_true")
    ap.add_argument("--dump", type=Path)
    a = ap.parse_args(argv)
    table = {n: c for n, c, _ in SWEEP}
    for n in a.names:
        try:
            r = compile_one(n, table[n], a.kv, a.split, a.dump)
            print(f"{n:28s} {a.kv:4s} regs {r['regs']} spill-stores {r['spill_stores']} smem {r['smem']} "
                  f"wgmma(ptx) {r['wgmma']} ws {r['ws']}\n    " + "\n    ".join(r["mma_layouts"]), flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"{n:28s} {a.kv:4s} FAILED {type(e).__name__}: {str(e)[:600]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
