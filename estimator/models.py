"""Whole-model roll-up: one attention op per layer, and the attention share of a step.

`get_model("deepseek-ai/DeepSeek-V3.2", "h200_sxm", "trtllm", ModelConfig(tp_size=8))`
builds `context_ops` / `generation_ops` (one `estimator.operations` op per
layer, named `context_dsa_layer_{i}` / `generation_mla_layer_{i}`), and
`model.estimate(isl, osl, batch_size)` sums their latencies over layers for the
prefill pass and for every decode step. Only the attention block of each
layer is estimated (projections, indexer, attention, output projection); FFN /
MoE, embeddings, sampling and communication are not part of these numbers.

DeepSeek-V3.2 and GLM-5 have the DSA indexer in every layer: all layers are
DSA. `first_k_dense_replace` makes the first layers' FFN dense, not their
attention; `ModelConfig(dense_attention_layers=3)` reproduces the original
draft's 3 MLA + 58 DSA split only when asked for.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from .common import FMHAQuantMode, GEMMQuantMode, KVCacheQuantMode, Source
from .intervals import rollup_bounds
from .utils import DeepSeekV32Config, HFModelConfig, load_model_config

__all__ = [
    "Crossover",
    "DeepSeekV32Config",
    "LayerSpec",
    "Model",
    "ModelConfig",
    "ModelEstimate",
    "SCOPE_NOTE",
    "attention_curve",
    "compare_models",
    "find_crossover",
    "fine_grid",
    "get_model",
]

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
        _positive_int("tp_size", self.tp_size)
        if isinstance(self.dense_attention_layers, bool) or not isinstance(self.dense_attention_layers, int) \
                or self.dense_attention_layers < 0:
            raise ValueError(f"dense_attention_layers must be an integer >= 0, got {self.dense_attention_layers!r}")
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
    # 80% intervals (estimator.intervals), summed over layers and steps: see `rollup_bounds`.
    context_low_ms: float = float("nan")
    context_high_ms: float = float("nan")
    generation_mean_low_ms: float = float("nan")
    generation_mean_high_ms: float = float("nan")
    generation_total_low_ms: float = float("nan")
    generation_total_high_ms: float = float("nan")

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


def _canonical_backend(backend: str) -> str:
    """The backend name as the PerfDatabase knows it (trtllm, vllm, sglang, perfwh; aliases allowed)."""
    from .database import FRAMEWORKS

    key = str(backend).strip().lower()
    if key not in FRAMEWORKS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(sorted(set(FRAMEWORKS.values())))}")
    return FRAMEWORKS[key]


def _op_classes():
    from .operations import ContextDSA, ContextMLA, GenerationDSA, GenerationMLA

    return {("dsa", "context"): ContextDSA, ("dsa", "generation"): GenerationDSA,
            ("mla", "context"): ContextMLA, ("mla", "generation"): GenerationMLA}


OP_FIELDS = ("scale_factor", "num_heads", "kvcache_quant_mode", "fmha_quant_mode", "gemm_quant_mode",
             "architecture")
DSA_OP_FIELDS = ("index_n_heads", "index_topk")


def _make_op(cls, name: str, values: dict[str, Any]):
    fields = OP_FIELDS + (DSA_OP_FIELDS if "index_topk" in values else ())
    return cls(name=name, **{k: values[k] for k in fields})


class Model:
    """A model deployment: its layers and one attention op per layer and phase."""

    def __init__(self, hf: HFModelConfig, system: str, backend: str, config: ModelConfig,
                 version: str | None = None, home: str | os.PathLike | None = None):
        self.hf = hf
        self.model_path = hf.model_path
        self.architecture = hf.architecture
        self.family = hf.family
        self.system = system
        self.backend = backend
        self.version = version
        self.home = home
        self.config = config
        self.num_layers = hf.num_hidden_layers
        self.dsa_config: DeepSeekV32Config | None = hf.dsa
        if hf.num_attention_heads % config.tp_size:
            raise ValueError(
                f"tp_size {config.tp_size} does not divide {hf.num_attention_heads} attention heads of "
                f"{hf.model_path}; valid tp sizes: "
                f"{', '.join(str(t) for t in range(1, hf.num_attention_heads + 1) if hf.num_attention_heads % t == 0)}"
            )
        self.num_heads = hf.num_attention_heads // config.tp_size
        n_mla = self.num_layers if hf.attention == "mla" else config.dense_attention_layers
        if n_mla > self.num_layers:
            raise ValueError(
                f"dense_attention_layers {config.dense_attention_layers} exceeds the "
                f"{self.num_layers} layers of {hf.model_path}"
            )
        self.layers = [
            LayerSpec(i, "mla" if i < n_mla else "dsa", "moe" if hf.is_moe_layer(i) else "dense")
            for i in range(self.num_layers)
        ]
        self._db = None
        self.context_ops, self.generation_ops = self._build_ops()

    def _op_values(self, attention: str) -> dict[str, Any]:
        c = self.config
        arch = self.architecture
        if attention != self.hf.attention:
            arch = MLA_EQUIVALENT.get(self.architecture)
            if arch is None:
                raise ValueError(
                    f"dense_attention_layers is not available for {self.architecture}: no MLA architecture "
                    f"with its attention dims; available for {', '.join(MLA_EQUIVALENT)}")
        values = dict(
            scale_factor=1.0,
            num_heads=self.num_heads,
            kvcache_quant_mode=c.kvcache_quant_mode,
            fmha_quant_mode=c.fmha_quant_mode,
            gemm_quant_mode=c.gemm_quant_mode,
            architecture=arch,
        )
        if attention == "dsa":
            values.update(index_n_heads=self.dsa_config.index_n_heads,
                          index_head_dim=self.dsa_config.index_head_dim,
                          index_topk=self.dsa_config.index_topk)
        return values

    def _build_ops(self):
        classes = _op_classes()
        ctx, gen = [], []
        self.op_settings = values = {a: self._op_values(a) for a in {layer.attention for layer in self.layers}}
        for layer in self.layers:
            a = layer.attention
            ctx.append(_make_op(classes[(a, "context")], f"context_{a}_layer_{layer.index}", values[a]))
            gen.append(_make_op(classes[(a, "generation")], f"generation_{a}_layer_{layer.index}", values[a]))
        return ctx, gen

    def spec_differences(self) -> list[str]:
        """Attention dims of this config that the database's spec of its architecture does not share.

        The PerfDatabase takes a slice's dims (for the SOL and for transfers)
        from `estimator.specs` by architecture; heads, index_topk and
        index_n_heads are passed per op, the dims listed here are not.
        """
        from .specs import load_model

        out = []
        for attention, values in self.op_settings.items():
            spec = load_model(values["architecture"])
            for name in SPEC_DIMS + (("index_head_dim",) if attention == "dsa" else ()):
                mine = getattr(self.hf, name) if name != "index_head_dim" else self.dsa_config.index_head_dim
                if getattr(spec, name) != mine:
                    out.append(f"{name} {mine} (spec of {values['architecture']}: {getattr(spec, name)})")
        return out

    @property
    def layer_counts(self) -> dict[str, int]:
        c = Counter(layer.attention for layer in self.layers)
        return {"mla": c.get("mla", 0), "dsa": c.get("dsa", 0)}

    @property
    def ffn_counts(self) -> dict[str, int]:
        c = Counter(layer.ffn for layer in self.layers)
        return {"dense": c.get("dense", 0), "moe": c.get("moe", 0)}

    def database(self):
        """The PerfDatabase of this model's system/backend/version (opened once)."""
        if self._db is None:
            from .database import PerfDatabase

            self._db = PerfDatabase(system=self.system, backend=self.backend, version=self.version,
                                    home=self.home)
        return self._db

    def estimate(self, isl: int, osl: int, batch_size: int, prefix: int = 0, db=None) -> ModelEstimate:
        """Attention time of a prefill pass and of each decode step, summed over layers.

        One `estimate_many` call per op kind and phase (the layers of one kind
        share a shape), so the cost does not grow with layers x osl lookups.
        """
        isl = _positive_int("isl", isl)
        osl = _nonneg_int("osl", osl)
        batch_size = _positive_int("batch_size", batch_size)
        prefix = _nonneg_int("prefix", prefix)
        db = self.database() if db is None else db
        n = self.num_layers
        kv = prefix + isl + np.arange(osl, dtype=np.int64)

        ctx_ms = np.zeros(n)
        ctx_lo, ctx_hi = np.zeros(n), np.zeros(n)
        step_lo, step_hi = np.zeros(osl), np.zeros(osl)
        ctx_src = np.empty(n, dtype=object)
        gen_first = np.zeros(n)
        gen_mean = np.zeros(n)
        gen_last = np.zeros(n)
        gen_worst = np.empty(n, dtype=object)
        step_total = np.zeros(osl)
        prov = {"context": Counter(), "generation": Counter()}
        used: set[str] = set()  # the data versions that answered (per op: docs/limits.md)

        for kind in sorted({layer.attention for layer in self.layers}):
            idx = np.array([layer.index for layer in self.layers if layer.attention == kind])
            scale_c = np.array([self.context_ops[i].scale_factor for i in idx], dtype=np.float64)
            scale_g = np.array([self.generation_ops[i].scale_factor for i in idx], dtype=np.float64)
            c_lat, c_src, c_lo, c_hi = _estimate_rows(db, f"{kind}_context", self.op_settings[kind],
                                          batch=np.array([batch_size]), seq=np.array([isl]),
                                          prefix=np.array([prefix]), versions=used)
            ctx_ms[idx] = c_lat[0] * scale_c
            ctx_lo[idx], ctx_hi[idx] = c_lo[0] * scale_c, c_hi[0] * scale_c
            ctx_src[idx] = c_src[0]
            prov["context"][c_src[0]] += idx.size
            if osl:
                g_lat, g_src, g_lo, g_hi = _estimate_rows(db, f"{kind}_generation", self.op_settings[kind],
                                              batch=np.full(osl, batch_size), seq=kv,
                                              prefix=np.zeros(osl, dtype=np.int64), versions=used)
                gen_first[idx] = g_lat[0] * scale_g
                gen_mean[idx] = g_lat.mean() * scale_g
                gen_last[idx] = g_lat[-1] * scale_g
                gen_worst[idx] = _worst(g_src)
                step_total += g_lat * scale_g.sum()
                step_lo += g_lo * scale_g.sum()
                step_hi += g_hi * scale_g.sum()
                for s, cnt in Counter(g_src.tolist()).items():
                    prov["generation"][s] += cnt * idx.size
            else:
                gen_worst[idx] = None

        layers = pl.DataFrame({
            "layer": np.arange(n, dtype=np.int64),
            "attention": [layer.attention for layer in self.layers],
            "ffn": [layer.ffn for layer in self.layers],
            "context_op": [op.name for op in self.context_ops],
            "generation_op": [op.name for op in self.generation_ops],
            "context_ms": ctx_ms,
            "context_source": ctx_src.tolist(),
            "context_low_ms": ctx_lo,
            "context_high_ms": ctx_hi,
            "generation_first_ms": gen_first,
            "generation_mean_ms": gen_mean,
            "generation_last_ms": gen_last,
            "generation_worst_source": gen_worst.tolist(),
        }, schema_overrides={"context_source": pl.String, "generation_worst_source": pl.String})
        return ModelEstimate(
            model=self.model_path, architecture=self.architecture, system=self.system,
            backend=self.backend, version=_versions_label(used) or getattr(db, "version", self.version),
            tp_size=self.config.tp_size, num_heads=self.num_heads, batch_size=batch_size,
            isl=isl, osl=osl, prefix=prefix,
            context_ms=float(ctx_ms.sum()),
            generation_steps=osl,
            generation_first_ms=float(step_total[0]) if osl else 0.0,
            generation_mean_ms=float(step_total.mean()) if osl else 0.0,
            generation_last_ms=float(step_total[-1]) if osl else 0.0,
            generation_total_ms=float(step_total.sum()),
            provenance={p: {s: c[s] for s in SOURCE_ORDER if c.get(s)} for p, c in prov.items()},
            layers=layers,
            **dict(zip(("context_low_ms", "context_high_ms"), rollup_bounds(ctx_lo, ctx_hi))),
            **dict(zip(("generation_total_low_ms", "generation_total_high_ms"), rollup_bounds(step_lo, step_hi))),
            generation_mean_low_ms=float(step_lo.mean()) if osl else 0.0,
            generation_mean_high_ms=float(step_hi.mean()) if osl else 0.0,
        )


def _worst(sources: np.ndarray) -> str:
    return max(sources.tolist(), key=SOURCE_ORDER.index)


def _versions_label(versions: set[str]) -> str | None:
    """One version, or several joined by '+' (oldest first) when the ops answered from different ones."""
    from .versions import sort_versions

    return "+".join(sort_versions(versions)) or None


def _estimate_rows(db, table: str, values: dict[str, Any], *, batch: np.ndarray, seq: np.ndarray,
                   prefix: np.ndarray, versions: set | None = None):
    """(latency_ms, source, low_ms, high_ms) arrays of one op kind at many shapes: one
    `db.estimate_many` call (adds the data versions that answered to `versions`)."""
    context = table.endswith("_context")
    cols = {"batch_size": batch.astype(np.int64), ("isl" if context else "kv_len"): seq.astype(np.int64),
            "num_heads": np.full(seq.size, values["num_heads"], dtype=np.int64)}
    if context:
        cols["prefix"] = prefix.astype(np.int64)
    opts = dict(gemm_type=values["gemm_quant_mode"].value, kv_cache_dtype=values["kvcache_quant_mode"].value,
                attn_dtype=values["fmha_quant_mode"].value, architecture=values["architecture"])
    if table.startswith("dsa"):
        opts.update(index_topk=values["index_topk"], index_n_heads=values["index_n_heads"])
    from .limits import OutOfRangeError

    try:
        out = db.estimate_many(table, pl.DataFrame(cols), **opts)
    except OutOfRangeError as exc:  # its rows are internal to the rollup: name the limit alone
        raise OutOfRangeError(f"{table}: {str(exc).split(': ', 1)[-1]}") from None
    if versions is not None and "version" in out.columns:
        versions.update(out["version"].cast(pl.String).unique().to_list())
    return (out["latency_ms"].to_numpy(), out["source"].to_numpy().astype(object), out["low_ms"].to_numpy(),
            out["high_ms"].to_numpy())


def get_model(model_path: str | os.PathLike, system: str = "h200_sxm", backend: str = "trtllm",
              config: ModelConfig | None = None, *, version: str | None = None,
              home: str | os.PathLike | None = None) -> Model:
    """A model deployment from a bundled id or a local HF config folder/file.

    Raises ValueError naming the problem for an unknown model, system or
    backend, a tp_size that does not divide the heads, or a config lacking a
    field the estimate needs.
    """
    from .specs import load_system

    config = ModelConfig() if config is None else config
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
    load_system(system)
    backend = _canonical_backend(backend)
    hf = load_model_config(model_path)
    return Model(hf, system, backend, config, version=version, home=home)



# ---- curves and comparisons ---------------------------------------------------------------

PHASES = ("context", "generation")
COMPARE_ISLS = tuple(1024 * 2**k for k in range(8))  # 1k .. 128k


def attention_curve(model: Model, phase: str, seq, batch_size: int, db=None, *, with_bounds: bool = False):
    """Attention time summed over layers at many sequence lengths, and the worst source per point
    (with_bounds: also the 80% interval's low and high sums, see `rollup_bounds`).

    context: one prefill pass of batch_size requests of `seq` new tokens;
    generation: one decode step at KV length `seq`.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")
    seq = np.asarray(seq, dtype=np.int64)
    if seq.ndim != 1 or seq.size == 0 or np.any(seq < 1):
        raise ValueError("sequence lengths must be a non-empty list of integers >= 1")
    batch_size = _positive_int("batch_size", batch_size)
    db = model.database() if db is None else db
    ops = model.context_ops if phase == "context" else model.generation_ops
    total = np.zeros(seq.size)
    low, high = np.zeros(seq.size), np.zeros(seq.size)
    worst = np.zeros(seq.size, dtype=np.int64)
    rank = {s: i for i, s in enumerate(SOURCE_ORDER)}
    for kind in sorted({layer.attention for layer in model.layers}):
        scale = sum(ops[layer.index].scale_factor for layer in model.layers if layer.attention == kind)
        lat, src, lo, hi = _estimate_rows(db, f"{kind}_{phase}", model.op_settings[kind],
                                          batch=np.full(seq.size, batch_size), seq=seq,
                                          prefix=np.zeros(seq.size, dtype=np.int64))
        total += lat * scale
        low += lo * scale
        high += hi * scale
        worst = np.maximum(worst, np.array([rank[s] for s in src]))
    src = np.array(SOURCE_ORDER, dtype=object)[worst]
    return (total, src, low, high) if with_bounds else (total, src)


def compare_models(models: list[Model], seq=COMPARE_ISLS, batch_size: int = 1, db=None) -> pl.DataFrame:
    """Long frame: model, attention, layers, phase, seq, model_ms, layer_ms (mean per layer), source,
    low_ms and high_ms (the model total's 80% interval)."""
    if not models:
        raise ValueError("compare needs at least one model")
    frames = []
    for m in models:
        for phase in PHASES:
            total, src, low, high = attention_curve(m, phase, seq, batch_size, db=db, with_bounds=True)
            frames.append(pl.DataFrame({
                "model": m.model_path, "attention": m.hf.attention, "layers": m.num_layers,
                "phase": phase, "seq": np.asarray(seq, dtype=np.int64), "model_ms": total,
                "layer_ms": total / m.num_layers, "source": src.tolist(), "low_ms": low, "high_ms": high,
            }, schema_overrides={"source": pl.String}))
    return pl.concat(frames)


@dataclass(frozen=True)
class Crossover:
    """Where model `cheaper` becomes cheaper than `baseline` in one phase.

    seq: interpolated crossover length (None when the order does not change
    in the range); status: 'crosses', 'always cheaper', 'never cheaper'.
    """

    baseline: str
    other: str
    phase: str
    status: str
    seq: float | None
    lo: int
    hi: int


def find_crossover(seq, baseline_ms, other_ms, *, baseline: str = "", other: str = "",
                   phase: str = "") -> Crossover:
    """The first length where `other` drops below `baseline`, interpolated in log-log space."""
    seq = np.asarray(seq, dtype=np.float64)
    d = np.log(np.asarray(other_ms, dtype=np.float64)) - np.log(np.asarray(baseline_ms, dtype=np.float64))
    lo, hi = int(seq[0]), int(seq[-1])
    cheaper = d < 0
    if cheaper.all():
        return Crossover(baseline, other, phase, "always cheaper", None, lo, hi)
    after = np.flatnonzero(~cheaper[:-1] & cheaper[1:])
    if after.size == 0:
        return Crossover(baseline, other, phase, "never cheaper", None, lo, hi)
    i = int(after[0])
    x0, x1 = np.log(seq[i]), np.log(seq[i + 1])
    t = d[i] / (d[i] - d[i + 1])
    return Crossover(baseline, other, phase, "crosses", float(np.exp(x0 + t * (x1 - x0))), lo, hi)


def fine_grid(lo: int = 1024, hi: int = 131072, per_octave: int = 8) -> np.ndarray:
    """Log2-spaced integer lengths from lo to hi (inclusive), per_octave points per doubling."""
    k = np.arange(0, per_octave * np.log2(hi / lo) + 1) / per_octave
    return np.unique(np.round(lo * np.exp2(k)).astype(np.int64))
