"""A model deployment's configuration and result records (ModelConfig, LayerSpec, ModelEstimate)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from estimator.common import FMHAQuantMode, GEMMQuantMode, KVCacheQuantMode, Source


SCOPE_NOTE = (
    "attention block only (projection GEMMs, indexer, attention, output projection) per "
    "layer, summed over layers; FFN/MoE, embeddings, sampling and communication excluded"
)
SOURCE_ORDER = tuple(s.value for s in Source)  # best first

# Attention dims the database reads from its own spec of an architecture.
SPEC_DIMS = ("hidden_size", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")

# The architecture whose MLA data answers an MLA layer of a DSA model (same attention dims).
MLA_EQUIVALENT = {"DeepseekV32ForCausalLM": "DeepseekV3ForCausalLM"}


@dataclass(frozen=True)
class ModelConfig:
    """Deployment settings of a model (aiconfigurator's ModelConfig, attention part).

    tp_size splits the attention heads; the quant modes select the warehouse
    slice (gemm_type, kv_cache_dtype, attn_dtype). dense_attention_layers > 0
    turns the first N layers of a DSA model into MLA layers (the original
    draft's 3 MLA + 58 DSA reading of DeepSeek-V3.2; not the real model).
    """

    tp_size: int = 1
    gemm_quant_mode: GEMMQuantMode = GEMMQuantMode.bfloat16
    kvcache_quant_mode: KVCacheQuantMode = KVCacheQuantMode.bfloat16
    fmha_quant_mode: FMHAQuantMode = FMHAQuantMode.bfloat16
    dense_attention_layers: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tp_size", _positive_int("tp_size", self.tp_size))
        object.__setattr__(self, "dense_attention_layers",
                           _nonneg_int("dense_attention_layers", self.dense_attention_layers))
        object.__setattr__(self, "gemm_quant_mode", GEMMQuantMode.parse(self.gemm_quant_mode))
        object.__setattr__(self, "kvcache_quant_mode", KVCacheQuantMode.parse(self.kvcache_quant_mode))
        object.__setattr__(self, "fmha_quant_mode", FMHAQuantMode.parse(self.fmha_quant_mode))


@dataclass(frozen=True)
class LayerSpec:
    index: int
    attention: str  # "mla" or "dsa"
    ffn: str  # "dense" or "moe"


@dataclass(frozen=True)
class ModelEstimate:
    """Attention time of one model deployment, in ms, with its provenance.

    context_ms: one prefill forward pass (batch_size requests of isl new tokens
    after prefix cached ones), summed over layers: the attention share of TTFT.
    generation_*_ms: one decode step (batch_size tokens) summed over layers, at
    KV length prefix+isl+j for steps j = 0..osl-1: the attention share of TPOT.
    provenance: phase -> source -> number of layer-estimates with that source.
    *_low_ms / *_high_ms: the 80% interval of the sum, as the sum of the layers'
    bounds (errors of the layers of one model are strongly correlated: they hit
    the same grids and calibration, so they do not average out).
    layers: one row per layer.
    """

    model: str
    architecture: str
    system: str
    backend: str
    version: str | None
    tp_size: int
    num_heads: int
    batch_size: int
    isl: int
    osl: int
    prefix: int
    context_ms: float
    generation_steps: int
    generation_first_ms: float
    generation_mean_ms: float
    generation_last_ms: float
    generation_total_ms: float
    provenance: dict[str, dict[str, int]]
    layers: pl.DataFrame = field(repr=False)
    scope: str = SCOPE_NOTE
    # 80% intervals (estimator.lookup.intervals), summed over layers and steps: see `rollup_bounds`.
    context_low_ms: float = float("nan")
    context_high_ms: float = float("nan")
    generation_mean_low_ms: float = float("nan")
    generation_mean_high_ms: float = float("nan")
    generation_total_low_ms: float = float("nan")
    generation_total_high_ms: float = float("nan")
    # why the bounds above are NaN where a reason is known (PerfDatabase.interval_note of the ops the layers
    # use: a transfer without its transfer_intervals rows), one line per distinct reason; None otherwise
    interval_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "layers"}
        out["layers"] = self.layers.to_dicts()
        return out

    def __str__(self) -> str:
        """A short block for print() (the repr stays the one-line dataclass form)."""
        def sources(phase: str) -> str:
            return ", ".join(f"{n} {s}" for s, n in sorted(self.provenance.get(phase, {}).items()))

        return "\n".join([
            f"{self.model} on {self.system} / {self.backend} {self.version}, tp {self.tp_size} "
            f"({self.num_heads} heads/GPU)",
            f"  batch {self.batch_size}, isl {self.isl}, osl {self.osl}, prefix {self.prefix}",
            f"  prefill (attention, all layers): {self.context_ms:,.3f} ms  [{sources('context')}]",
            f"  decode step: first {self.generation_first_ms:,.3f} ms, mean {self.generation_mean_ms:,.3f} ms, "
            f"last {self.generation_last_ms:,.3f} ms; {self.generation_steps} steps {self.generation_total_ms:,.1f} ms"
            f"  [{sources('generation')}]",
            f"  {self.scope}",
        ])


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _nonneg_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)
