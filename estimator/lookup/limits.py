"""Limits on what the estimator answers (docs/limits.md holds the rules and their reasons).

Three kinds of limit, checked before any lookup:

* refused (`OutOfRangeError`, one line naming the limit): an integer above
  2^31-1, more heads per GPU than the model has, a sequence (prefix + isl for
  context, kv_len for generation) beyond the model's `max_position_embeddings`;
* answered by the calibrated SOL alone (source `sol`): a query more than
  `BEYOND_FACTOR` (4x) beyond the measured range of its slice group along an
  axis, where neither interpolation nor the ratio trend has support;
* left out of calibration and grids: measured points far below the raw
  roofline of their own shape (`impossible_points`), which no kernel can reach.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl

MAX_INT = 2**31 - 1  # the warehouse stores shapes as int32
BEYOND_FACTOR = 4.0  # past this multiple of the measured range an answer is the calibrated SOL alone
ROOFLINE_FLOOR = 0.5  # a measurement below this fraction of its raw roofline is physically impossible


class OutOfRangeError(ValueError):
    """A query outside what the model or the warehouse can answer (one-line message names the limit)."""


def check_int_max(name: str, value: int) -> int:
    if value > MAX_INT:
        raise OutOfRangeError(f"{name}={value} is above the largest supported value {MAX_INT} (2^31-1)")
    return value


def check_model(op: str, model, num_heads: int, seq: int, prefix: int, context: bool) -> None:
    """Refuse heads beyond the model's attention heads and sequences beyond its context length."""
    if num_heads > model.num_attention_heads:
        raise OutOfRangeError(
            f"num_heads={num_heads} per GPU exceeds the {model.num_attention_heads} attention heads of "
            f"{model.name} ({op}); heads per GPU = model heads / tensor-parallel size")
    total = seq + prefix if context else seq
    if total > model.max_position_embeddings:
        what = f"prefix + isl = {prefix} + {seq}" if context and prefix else ("isl" if context else "kv_len")
        value = "" if context and prefix else f"={seq}"
        raise OutOfRangeError(f"{what}{value} exceeds the context length {model.max_position_embeddings} of "
                              f"{model.name} (max_position_embeddings)")


class Bounds(NamedTuple):
    """The measured range of a slice group, widened by BEYOND_FACTOR: inside, the data answers."""

    heads: tuple[float, float]
    batch: tuple[float, float]
    seq: tuple[float, float]
    context: float  # largest prefix + seq (context) or seq (generation)
    measured: dict  # the measured ranges themselves, for messages


def group_bounds(grp) -> Bounds | None:
    """Bounds from the measured cells of every slice of a `GroupGrids` (None without any)."""
    if grp is None:
        return None
    hit = grp.cache.get("limits_bounds", False)
    if hit is not False:
        return hit
    from estimator.grids.interp import MEASURED

    heads, batch, seq, ctx = [], [], [], []
    for (h, p), sg in grp.slices.items():
        mi, mj = np.nonzero(sg.source == MEASURED)
        if mi.size == 0:
            continue
        heads.append(h)
        batch += [int(sg.batch[mi].min()), int(sg.batch[mi].max())]
        seq += [int(sg.seq[mj].min()), int(sg.seq[mj].max())]
        ctx.append(int(sg.seq[mj].max()) + int(p))
    out = None
    if heads:
        f = BEYOND_FACTOR
        measured = {"num_heads": (min(heads), max(heads)), "batch_size": (min(batch), max(batch)),
                    "seq": (min(seq), max(seq)), "context": max(ctx)}
        out = Bounds((min(heads) / f, max(heads) * f), (min(batch) / f, max(batch) * f),
                     (min(seq) / f, max(seq) * f), max(ctx) * f, measured)
    grp.cache["limits_bounds"] = out
    return out


def beyond(bounds: Bounds, num_heads, batch, seq, prefix) -> str | None:
    """Why a scalar query lies past the bounds (None when inside)."""
    m = bounds.measured
    for name, v, (lo, hi) in (("num_heads", num_heads, bounds.heads), ("batch_size", batch, bounds.batch),
                              ("seq", seq, bounds.seq)):
        if v > hi or v < lo:
            a, b = m[name]
            return f"{name}={v} is more than {BEYOND_FACTOR:g}x outside the measured {a}..{b}"
    if seq + prefix > bounds.context:
        return (f"prefix + seq = {prefix + seq} is more than {BEYOND_FACTOR:g}x the largest measured "
                f"{m['context']}")
    return None


def beyond_many(bounds: Bounds, num_heads, batch, seq, prefix) -> np.ndarray:
    """Boolean mask of the points of arrays that lie past the bounds."""
    out = (num_heads > bounds.heads[1]) | (num_heads < bounds.heads[0])
    out |= (batch > bounds.batch[1]) | (batch < bounds.batch[0])
    out |= (seq > bounds.seq[1]) | (seq < bounds.seq[0])
    out |= (seq + prefix) > bounds.context
    return out


def raw_roofline_ms(points: pl.DataFrame) -> np.ndarray:
    """Lower bound on each point's latency: the whole module's FLOPs at peak or its bytes at full
    bandwidth, whichever is larger (even perfectly overlapped kernels cannot beat it)."""
    from estimator.physics import sol
    from estimator.physics.calibrate import kernel_times
    from estimator.slices import model_for, points_shape
    from estimator.physics.specs import load_system, system_names

    out = np.zeros(points.height)
    keys = ["system", "op", "kernel_source", "architecture", "gemm_type", "kv_cache_dtype"]
    for (system, op, source, arch, gemm, kv), sub in points.with_row_index("_row").group_by(keys, maintain_order=True):
        if system not in system_names():
            continue
        try:
            ks = sol.kernels(op, model_for(op, arch), gemm_type=gemm or "bfloat16", kv_cache_dtype=kv or "bfloat16",
                             kernel_source=source, **points_shape(sub))
        except (KeyError, ValueError):  # a precision / architecture the SOL model lacks: no bound (build_errors)
            continue
        ct, bt, _ = kernel_times(ks, load_system(system), sub.height)
        out[sub["_row"].to_numpy()] = np.maximum(ct.sum(axis=0), bt.sum(axis=0))
    return out


def impossible_points(points: pl.DataFrame) -> pl.Series:
    """Mask of perf points measured below ROOFLINE_FLOOR x their raw roofline (physically impossible:
    a unit slip or a broken timer). Used by the grid build (left out) and the asset check (flagged)."""
    if points.height == 0:
        return pl.Series("impossible", [], dtype=pl.Boolean)
    floor = raw_roofline_ms(points) * ROOFLINE_FLOOR
    return pl.Series("impossible", points["latency_ms"].to_numpy() < floor)


def drop_impossible(points: pl.DataFrame) -> pl.DataFrame:
    """The perf points calibration and grids may use (pure: `store` calls it before fitting)."""
    if points.height == 0:
        return points
    return points.filter(~impossible_points(points))
