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
    def col(name):  # fill_null only where there are nulls: it costs a polars query per call
        s = points[name]
        return (s.fill_null(0) if s.null_count() else s).to_numpy().astype(np.float64)

    return dict(batch=col("batch_size"), isl=col("isl"), prefix=col("prefix"),
                kv_len=col("kv_len"), num_heads=col("num_heads"))


def group_rows(frame: pl.DataFrame, keys) -> list[tuple[tuple, np.ndarray]]:
    """(key values, row indices) of every group of `keys`, in order of first appearance: the groups
    `frame.group_by(keys, maintain_order=True)` iterates, as row numbers into `frame` instead of one
    frame per group (gathering a frame per group cost more than the work done on it)."""
    keys = list(keys)
    g = frame.select(keys).with_row_index("_row").group_by(keys, maintain_order=True).agg("_row")
    rows = g["_row"].explode().to_numpy()
    ends = np.cumsum(g["_row"].list.len().to_numpy().astype(np.int64))
    starts = ends - np.diff(ends, prepend=0)
    return [(tuple(key), rows[a:b]) for key, a, b in zip(g.select(keys).iter_rows(), starts, ends)]


def seq_values(points: pl.DataFrame) -> pl.Expr:
    """Expression: the sequence-axis value of each row (isl for context, kv_len for generation)."""
    return pl.when(pl.col("op").is_in(CONTEXT_OPS)).then(pl.col("isl")).otherwise(pl.col("kv_len"))
