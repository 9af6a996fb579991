"""Slice keys and shape columns: how perf points are grouped for interpolation.

A slice is every point that shares the categorical keys and the slower numeric
keys (num_heads, prefix); inside a slice the points form a batch x sequence
grid (sequence = isl for context ops, kv_len for generation ops).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from warehouse.vocab import OPS, Op

from estimator.physics.specs import ModelSpec, default_model, load_model

CONTEXT_OPS = [o.name for o in OPS if o.context]

# Categorical part of a slice key; an estimate must match these (or be transferred).
GROUP_KEYS = (
    "system",
    "framework",
    "version",
    "op",
    "kernel_source",
    "architecture",
    "attn_dtype",
    "kv_cache_dtype",
    "gemm_type",
)
SLICE_KEYS = GROUP_KEYS + ("num_heads", "prefix")


def family_of(op: str) -> str:
    return Op.parse(op).family


def model_for(op: str, architecture: str | None) -> ModelSpec:
    """The model spec of a slice; kernel tables carry no architecture (DeepSeek-V3 dims)."""
    if architecture:
        return load_model(architecture)
    return default_model(family_of(op))


def points_shape(points: pl.DataFrame) -> dict[str, np.ndarray]:
    """SOL keyword shape arrays (float) of a frame of one op's points."""
    def col(name):
        return points[name].fill_null(0).to_numpy().astype(np.float64)

    return dict(batch=col("batch_size"), isl=col("isl"), prefix=col("prefix"),
                kv_len=col("kv_len"), num_heads=col("num_heads"))


def seq_values(points: pl.DataFrame) -> pl.Expr:
    """Expression: the sequence-axis value of each row (isl for context, kv_len for generation)."""
    return pl.when(pl.col("op").is_in(CONTEXT_OPS)).then(pl.col("isl")).otherwise(pl.col("kv_len"))
