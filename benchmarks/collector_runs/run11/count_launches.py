"""Kernel launches of one MLA / DSA generation call, eager vs fused prologue, counted on the CPU.

Every non-view ATen op of one call (a ``TorchDispatchMode``) plus every Triton launch (through Triton's
interpreter; the interpreter's own tensor ops are not counted). On the CPU ``F.rms_norm`` decomposes into
6 ops where CUDA (torch >= 2.8) runs one fused kernel, so the report gives both; the decode stands for
whichever decode kernels the GPU runs, and bf16 GEMMs only (the FP8 GEMMs need CUDA).

    TRITON_INTERPRET=1 python benchmarks/collector_runs/run11/count_launches.py
"""
from __future__ import annotations

import collections
import os
import sys
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import torch  # noqa: E402
import triton.runtime.interpreter as itp  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from collector import modules as MOD  # noqa: E402
from collector.kernels import mla_attn as ATT  # noqa: E402
from collector.kernels.interp import patch_interpreter  # noqa: E402

VIEWS = {"view", "_unsafe_view", "slice", "transpose", "t", "select", "expand", "as_strided", "unsqueeze",
         "squeeze", "detach", "alias", "permute", "split", "empty", "empty_strided", "lift_fresh"}
RMS_CPU_OPS = 6  # pow, mean, add_, rsqrt, mul, mul


class Launches(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.aten, self.triton, self._in_triton = [], [], False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in VIEWS and not self._in_triton:
            self.aten.append(name)
        return func(*args, **(kwargs or {}))


def main() -> int:
    patch_interpreter()
    for c in (ATT.CONFIG, ATT.CONFIG_DEC):
        c.update(block_n=16, block_h_max=16)
    counter: list[Launches] = []
    run = itp.InterpretedFunction.run

    def counted(self, *a, **k):
        mode = counter[-1] if counter else None
        if mode is None:
            return run(self, *a, **k)
        mode.triton.append(self.fn.__name__)
        mode._in_triton = True
        try:
            return run(self, *a, **k)
        finally:
            mode._in_triton = False
    itp.InterpretedFunction.run = counted
    for family in ("mla", "dsa"):
        for prologue in ("eager", "fused"):
            MOD.PROLOGUE = prologue
            m = MOD.AttentionModule(family, 16, "bfloat16", device="cpu", topk=16)
            step = m.prepare_generation(3, 30)
            step.run()  # warm-up: plans, workspaces
            with Launches() as mode:
                counter.append(mode)
                step.run()
                counter.pop()
            ops = collections.Counter(mode.aten)
            cuda = len(mode.aten) + len(mode.triton) - (RMS_CPU_OPS - 1) * (ops["rsqrt"])
            print(f"{family} {prologue}: {len(mode.aten)} ATen + {len(mode.triton)} Triton on the CPU, "
                  f"{cuda} with F.rms_norm as one CUDA kernel; ATen {dict(ops.most_common())}; "
                  f"Triton {mode.triton}")
    MOD.PROLOGUE = "eager"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
