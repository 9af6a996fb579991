"""GPU timing: warm-up, CUDA-graph capture of one module call, then per-replay
CUDA events with the L2 cache flushed before every sample.

Each sample = one graph replay, timed by a pair of events recorded around it on
the same stream; before each pair a 256 MiB buffer is overwritten so weights,
caches and activations do not sit in L2 (60 MB on H200/H100) from the last
replay. Latency = median of the samples; all samples are kept. If graph capture
fails the same loop runs the eager call (``method`` says which).
"""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
from dataclasses import dataclass

import torch

FLUSH_BYTES = 256 << 20


@dataclass
class Timing:
    median_ms: float
    samples_ms: list[float]
    method: str  # "cuda_graph" or "eager"
    l2_flush: bool


class Bencher:
    def __init__(self, device="cuda", flush: bool = True):
        self.device = torch.device(device)
        self.flush = flush
        self.buf = torch.empty(FLUSH_BYTES // 4, dtype=torch.float32, device=self.device) if flush else None
        self.stream = torch.cuda.Stream(self.device)

    def _flush(self):
        if self.buf is not None:
            self.buf.fill_(1.0)

    def time(self, fn, *, target_ms: float = 30.0, min_samples: int = 5, max_samples: int = 30,
             warmup: int = 2, use_graph: bool = True) -> Timing:
        torch.cuda.synchronize(self.device)
        with torch.cuda.stream(self.stream):
            for _ in range(max(1, warmup)):  # eager warm-up: compiles Triton kernels, cuBLAS handles
                fn()
        self.stream.synchronize()
        if torch.cuda.memory_reserved(self.device) > (16 << 30):
            # long contexts: hand the warm-up's cached blocks back before the graph's
            # private pool allocates the same activations again
            torch.cuda.empty_cache()
        graph = None
        method = "eager"
        if use_graph:
            try:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=self.stream):
                    fn()
                method = "cuda_graph"
            except Exception:  # noqa: BLE001 - fall back to eager timing
                graph = None
                torch.cuda.synchronize(self.device)
        call = graph.replay if graph is not None else fn
        with torch.cuda.stream(self.stream):
            for _ in range(2):
                call()
            # estimate from one timed call
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self._flush()
            e0.record()
            call()
            e1.record()
        e1.synchronize()
        est = max(e0.elapsed_time(e1), 1e-3)
        n = int(min(max_samples, max(min_samples, round(target_ms / est))))
        evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        with torch.cuda.stream(self.stream):
            for a, b in evs:
                self._flush()
                a.record()
                call()
                b.record()
        evs[-1][1].synchronize()
        samples = [a.elapsed_time(b) for a, b in evs]
        del graph
        return Timing(statistics.median(samples), samples, method, self.flush)


def gpu_clock_mhz(index: int = 0) -> float | None:
    """Current SM clock from nvidia-smi (None if unavailable)."""
    try:
        out = subprocess.run(["nvidia-smi", "-i", str(index), "--query-gpu=clocks.sm", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
        return float(out.stdout.strip().splitlines()[0])
    except Exception:  # noqa: BLE001
        return None


def env_info() -> dict:
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}
    try:
        import triton
        info["triton"] = triton.__version__
    except Exception:  # noqa: BLE001
        info["triton"] = None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
        drv, maxclk, mem = [s.strip() for s in out.stdout.strip().splitlines()[0].split(",")]
        info.update(driver=drv, max_sm_clock_mhz=float(maxclk), memory_mib=float(mem))
    except Exception:  # noqa: BLE001
        info["driver"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(sm_count=p.multi_processor_count, cc=f"{p.major}.{p.minor}",
                    l2_bytes=getattr(p, "L2_cache_size", None))
    info["host"] = os.uname().nodename
    return info
