"""The GPU measurer run inside the worker process (see ``worker.py``).

One ``GpuMeasurer`` per worker: it owns the CUDA context, keeps the module
weights of the last head count / precision (<= ~0.5 GB each), prepares each
shape's inputs and caches, and times one module call (``timing.Bencher``).
"""
from __future__ import annotations

import gc

from . import PROLOGUES
from .sweep import Shape


def current_configs() -> dict:
    """The launch configs in force in this process (after a probe or --configs), for the worker."""
    from . import modules as MOD
    from .gemm import IMPL
    from .kernels import indexer as IDX
    from .kernels import mla_attn as ATT
    from .kernels import fi_mla as FI
    from .kernels import mla_decode as DEC
    return {"gemm_impl": dict(IMPL), "attn_config": dict(ATT.CONFIG), "attn_config_dec": dict(ATT.CONFIG_DEC),
            "decode_config": dict(DEC.CONFIG), "dense_impl": ATT.DENSE_IMPL, "fi_mla_config": dict(FI.CONFIG),
            "indexer_gen_config": dict(IDX.GEN_CONFIG), "indexer_config": dict(IDX.CTX_CONFIG),
            "sdpa": {"pad_v": bool(MOD.SDPA_PAD_V)}, "prologue": MOD.PROLOGUE}


def apply_configs(cfg: dict) -> None:
    from . import modules as MOD
    from .gemm import IMPL
    from .kernels import indexer as IDX
    from .kernels import mla_attn as ATT
    from .kernels import fi_mla as FI
    from .kernels import mla_decode as DEC
    IMPL.update(cfg.get("gemm_impl", {}))
    ATT.CONFIG.update(cfg.get("attn_config", {}))
    ATT.CONFIG_DEC.update(cfg.get("attn_config_dec", {}))
    DEC.CONFIG.update(cfg.get("decode_config", {}))
    ATT.DENSE_IMPL = cfg.get("dense_impl", ATT.DENSE_IMPL)  # "legacy" = 0.1, "flashinfer" = 0.3 (fi_mla.py), "flashmla" (flashmla.py)
    FI.CONFIG.update(cfg.get("fi_mla_config", {}))
    IDX.GEN_CONFIG.update(cfg.get("indexer_gen_config", {}))
    IDX.CTX_CONFIG.update(cfg.get("indexer_config", {}))
    MOD.SDPA_PAD_V = bool(cfg.get("sdpa", {}).get("pad_v", False))
    prologue = cfg.get("prologue", MOD.PROLOGUE)  # "eager" (reference) or "fused" (kernels/prologue.py)
    if prologue not in PROLOGUES:
        raise ValueError(f"prologue {prologue!r}: expected one of {PROLOGUES}")
    MOD.PROLOGUE = prologue


def is_device_error(exc: BaseException) -> bool:
    """A CUDA error that leaves the context unusable (illegal address, device assert, launch failure)."""
    text = f"{type(exc).__name__}: {exc}"
    if "AcceleratorError" in text or "CUDA error" in text or "device-side assert" in text:
        return True
    import torch
    try:  # the context may be broken even when the message does not say so
        torch.cuda.synchronize()
    except Exception:  # noqa: BLE001
        return True
    return False


class GpuMeasurer:
    def __init__(self, timing: dict | None = None, configs: dict | None = None,
                 inject_fault: list[str] | None = None):
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device: the collector measures on a GPU")
        torch.backends.cuda.matmul.allow_tf32 = False
        from .timing import Bencher
        if configs:
            apply_configs(configs)
        self.torch = torch
        self.tcfg = dict(timing or {})
        self.bench = Bencher(flush=self.tcfg.get("l2_flush", True))
        self.mods: dict = {}
        self.inject = set(inject_fault or ())
        self.n = 0

    def info(self) -> dict:
        from .timing import env_info
        env = env_info()
        env["timing"] = f"cuda_graph_replay+events, l2_flush={self.tcfg.get('l2_flush', True)}, median"
        return {"device": self.torch.cuda.get_device_name(), "env": env}

    def measure(self, shape: dict, rep: int = 0) -> dict:
        from .kernel_ops import is_kernel_op, prepare_kernel
        from .modules import AttentionModule
        s = Shape(**shape)
        if s.label() in self.inject:
            poke_illegal_address()
        if is_kernel_op(s.op):  # the attention kernel alone: no weights to keep
            self.mods.clear()
            step = prepare_kernel(s)
        else:
            key = (s.family, s.num_heads, s.gemm_type, s.kv_cache_dtype)
            if key not in self.mods:
                self.mods.clear()
                self.mods[key] = AttentionModule(s.family, s.num_heads, s.gemm_type, s.kv_cache_dtype)
            m = self.mods[key]
            step = m.prepare_context(s.batch_size, s.isl, s.prefix) if s.phase == "context" \
                else m.prepare_generation(s.batch_size, s.prefix)
        t = self.tcfg
        tm = self.bench.time(step.run, target_ms=t.get("target_ms", 12), min_samples=t.get("min_samples", 5),
                             max_samples=t.get("max_samples", 20), warmup=t.get("warmup", 1))
        del step
        self.n += 1
        torch = self.torch
        if self.n % 25 == 0 or torch.cuda.memory_reserved() > 40 << 30:
            gc.collect()
            torch.cuda.empty_cache()
        return {"median_ms": tm.median_ms, "samples_ms": tm.samples_ms, "timing_method": tm.method,
                "l2_flush": tm.l2_flush}

    def classify(self, exc: BaseException) -> str:
        torch = self.torch
        if isinstance(exc, torch.OutOfMemoryError):
            kind = "oom"
        elif is_device_error(exc):
            return "device"
        else:
            kind = "error"
        self.mods.clear()
        gc.collect()
        try:
            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            return "device"
        return kind


from .kernels.mla_attn import HAVE_TRITON  # noqa: E402

if HAVE_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _poke(P, OFF):
        tl.store(P + OFF, 1.0)


def poke_illegal_address() -> None:
    """Fault injection (tests): a Triton store far outside any allocation -> illegal memory access."""
    import torch
    buf = torch.zeros(16, device="cuda")
    _poke[(1,)](buf, 1 << 44)
    torch.cuda.synchronize()
