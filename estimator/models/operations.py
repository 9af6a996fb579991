"""Operation objects for model-level rollups: one attention block of one layer.

Field names follow the original draft (name, scale_factor, num_heads,
index_n_heads, index_topk, quant modes). `query` returns milliseconds from
the database's data and, where the warehouse has no data for the slice, from
the rest of the fallback chain (a related slice, then the calibrated SOL),
never from a constant; `estimate` returns the full `Estimate`. Both multiply
the latency by `scale_factor` (e.g. a layer count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from estimator.common import FMHAQuantMode, GEMMQuantMode, KVCacheQuantMode
from estimator.lookup.estimate import Estimate

if TYPE_CHECKING:
    from estimator.lookup.database import PerfDatabase


@dataclass
class Operation:
    """Base: an attention op with quant modes; subclasses set `op`."""

    op: ClassVar[str] = ""
    name: str = ""
    scale_factor: float = 1.0
    num_heads: int = 128
    kvcache_quant_mode: KVCacheQuantMode = KVCacheQuantMode.bfloat16
    fmha_quant_mode: FMHAQuantMode = FMHAQuantMode.bfloat16
    gemm_quant_mode: GEMMQuantMode = GEMMQuantMode.bfloat16
    architecture: str | None = None

    def _dsa_kw(self) -> dict:
        return {}

    def _shape(self, batch_size: int, s: int, kw: dict) -> dict:
        extra = {k: kw.pop(k) for k in ("prefix", "kernel_source", "method") if k in kw}
        if kw:
            raise ValueError(f"{type(self).__name__}: unknown arguments {', '.join(sorted(kw))}; "
                             "valid: prefix (context ops), kernel_source, method")
        return dict(batch_size=batch_size, s=s, num_heads=self.num_heads,
                    gemm_type=self.gemm_quant_mode, kv_cache_dtype=self.kvcache_quant_mode,
                    attn_dtype=self.fmha_quant_mode, architecture=self.architecture, **self._dsa_kw(), **extra)

    def estimate(self, db: "PerfDatabase", batch_size: int, s: int, **kw) -> Estimate:
        """The full Estimate (latency multiplied by scale_factor)."""
        est = db.estimate(self.op, **self._shape(batch_size, s, dict(kw)))
        return est._replace(latency_ms=est.latency_ms * self.scale_factor)

    def query(self, db: "PerfDatabase", batch_size: int, s: int, **kw) -> float:
        """Milliseconds x scale_factor: measured/interpolated data, else the fallback chain."""
        return self.estimate(db, batch_size, s, **kw).latency_ms


@dataclass
class _DSA(Operation):
    index_n_heads: int = 64
    index_topk: int = 2048

    def _dsa_kw(self) -> dict:
        return {"index_n_heads": self.index_n_heads, "index_topk": self.index_topk}


@dataclass
class ContextDSA(_DSA):
    """DSA prefill of one layer: s = new tokens per request (prefix= cached tokens)."""

    op: ClassVar[str] = "dsa_context"
    name: str = "context_dsa"


@dataclass
class GenerationDSA(_DSA):
    """DSA decode of one layer: s = KV length per request."""

    op: ClassVar[str] = "dsa_generation"
    name: str = "generation_dsa"


@dataclass
class ContextMLA(Operation):
    """MLA prefill of one layer: s = new tokens per request (prefix= cached tokens)."""

    op: ClassVar[str] = "mla_context"
    name: str = "context_mla"


@dataclass
class GenerationMLA(Operation):
    """MLA decode of one layer: s = KV length per request."""

    op: ClassVar[str] = "mla_generation"
    name: str = "generation_mla"


__all__ = ["Operation", "ContextDSA", "GenerationDSA", "ContextMLA", "GenerationMLA"]
