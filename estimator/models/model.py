"""Whole-model roll-up: one attention op per layer, and the attention share of a step.

`get_model("deepseek-ai/DeepSeek-V3.2", "h200_sxm", "trtllm", ModelConfig(tp_size=8))`
builds `context_ops` / `generation_ops` (one `estimator.models.operations` op per
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

import os
from collections import Counter
from typing import Any

import numpy as np
import polars as pl

from estimator.lookup.intervals import rollup_bounds
from estimator.models.hf_config import DeepSeekV32Config, HFModelConfig, load_model_config
from estimator.models.config import (
    LayerSpec, MLA_EQUIVALENT, ModelConfig, ModelEstimate, SOURCE_ORDER, SPEC_DIMS, _nonneg_int, _positive_int,
)


def _canonical_backend(backend: str) -> str:
    """The backend name as the PerfDatabase knows it (trtllm, vllm, sglang, perfwh; aliases allowed)."""
    from estimator.lookup.query import FRAMEWORKS

    key = str(backend).strip().lower()
    if key not in FRAMEWORKS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(sorted(set(FRAMEWORKS.values())))}")
    return FRAMEWORKS[key]


def _op_classes():
    from estimator.models.operations import ContextDSA, ContextMLA, GenerationDSA, GenerationMLA

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
        from `estimator.physics.specs` by architecture; heads, index_topk and
        index_n_heads are passed per op, the dims listed here are not.
        """
        from estimator.physics.specs import load_model

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
            from estimator.lookup.database import PerfDatabase

            self._db = PerfDatabase(system=self.system, backend=self.backend, version=self.version,
                                    home=self.home)
        return self._db

    def _check_decode_length(self, last_kv: int) -> None:
        """Refuse a decode past the context length before allocating one array slot per step."""
        from estimator.lookup.limits import OutOfRangeError
        from estimator.physics.specs import load_model

        for values in self.op_settings.values():
            spec = load_model(values["architecture"])
            if last_kv > spec.max_position_embeddings:
                raise OutOfRangeError(
                    f"prefix + isl + osl - 1 = {last_kv} (the last decode step's kv_len) exceeds the context "
                    f"length {spec.max_position_embeddings} of {spec.name} (max_position_embeddings)")

    def _check_database(self, db):
        """A given database must answer for this deployment: the estimate is labelled with the model's
        system, backend and version, so another system's numbers would carry this one's name."""
        if not callable(getattr(db, "estimate_many", None)):
            raise TypeError(f"db must be a PerfDatabase, got {type(db).__name__}")
        for name, mine, theirs in (("system", self.system, getattr(db, "system", self.system)),
                                   ("backend", self.backend, getattr(db, "framework", self.backend)),
                                   ("version", self.version,
                                    getattr(db, "pinned_version", self.version) if self.version else None)):
            if theirs != mine:
                raise ValueError(f"db answers for {name} {theirs!r}, but this model is deployed on {name} "
                                 f"{mine!r}; open the model with get_model(..., {name}={theirs!r}) or pass "
                                 f"a matching PerfDatabase")
        return db

    def estimate(self, isl: int, osl: int, batch_size: int, prefix: int = 0, db=None) -> ModelEstimate:
        """Attention time of a prefill pass and of each decode step, summed over layers.

        One `estimate_many` call per op kind and phase (the layers of one kind
        share a shape), so the cost does not grow with layers x osl lookups.
        """
        isl = _positive_int("isl", isl)
        osl = _nonneg_int("osl", osl)
        batch_size = _positive_int("batch_size", batch_size)
        prefix = _nonneg_int("prefix", prefix)
        self._check_decode_length(prefix + isl + osl - 1 if osl else 0)
        db = self.database() if db is None else self._check_database(db)
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
            interval_note=self._interval_note(db),
        )

    def _interval_note(self, db) -> str | None:
        """The database's reasons (one line each) why the ops these layers use carry no interval, or None."""
        note = getattr(db, "interval_note", None)
        if note is None:
            return None
        ops = [f"{kind}_{phase}" for kind in sorted(self.op_settings) for phase in ("context", "generation")]
        return "\n".join(dict.fromkeys(n for n in map(note, ops) if n)) or None


def _worst(sources: np.ndarray) -> str:
    return max(sources.tolist(), key=SOURCE_ORDER.index)


def _versions_label(versions: set[str]) -> str | None:
    """One version, or several joined by '+' (oldest first) when the ops answered from different ones."""
    from estimator.lookup.versions import sort_versions

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
    from estimator.lookup.limits import OutOfRangeError

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
    from estimator.physics.specs import load_system

    config = ModelConfig() if config is None else config
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
    load_system(system)
    backend = _canonical_backend(backend)
    hf = load_model_config(model_path)
    return Model(hf, system, backend, config, version=version, home=home)
