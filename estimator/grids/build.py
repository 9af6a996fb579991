"""Interpolation grids: one dense batch x sequence grid of log2(measured/SOL) per slice.

`build_grids(points, calibration)` is pure (frames in, frame out) and is what
the Dagster grid asset calls; `GridSet.from_frame` turns the stored table into
numpy arrays for fast lookups. Every cell carries its provenance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from estimator.grids import interp
from estimator.physics import sol
from estimator.physics.calibrate import CAL_KEYS, CalibrationParams, calibrated_ms, params_from_frame
from estimator.slices import CONTEXT_OPS, SLICE_KEYS, group_rows, model_for, points_shape, seq_values
from estimator.physics.specs import load_system
from estimator.grids.schema import GRID_SCHEMA, METHOD, SOURCES, grids_hash, input_hash
from estimator.grids.rules import (
    _aligned, affine_extension, choose_extension, choose_fill_rule, choose_pooling, choose_powers,
    choose_seq_trend, choose_hole_blend, choose_extrapolation, fill_rule_errors,
    fill_slice, fill_values, hole_blend_errors,
    pool_siblings,
)
from estimator.grids.batched import extrapolation_errors_many, power_errors_many, slice_estimates_many


def with_sol(points: pl.DataFrame, params: dict[tuple, CalibrationParams]) -> pl.DataFrame:
    """Add `sol_ms` (calibrated SOL at each point's own shape and system)."""
    out = np.empty(points.height)
    keys = ["system", "framework", "version", "op", "kernel_source", "architecture", "gemm_type", "kv_cache_dtype"]
    shape = points_shape(points) if points.height else {}
    for (system, fw, ver, op, source, arch, gemm, kv), rows in group_rows(points, keys):
        p = params[(system, fw, ver, op, source)]
        spec = load_system(system)
        ks = sol.kernels(op, model_for(op, arch), gemm_type=gemm or "bfloat16", kv_cache_dtype=kv,
                         kernel_source=source, launch=p.launch_on(spec), **{k: v[rows] for k, v in shape.items()})
        out[rows] = np.broadcast_to(calibrated_ms(ks, spec, p), rows.size)
    return points.with_columns(pl.Series("sol_ms", out))


@dataclass
class SliceGrid:
    """One slice: log2 axes, filled log2-ratio grid, source codes, measured latencies."""

    batch: np.ndarray  # int values
    seq: np.ndarray
    xb: np.ndarray  # log2 of the above
    xs: np.ndarray
    ratio: np.ndarray  # (nb, ns) log2(latency / calibrated SOL)
    source: np.ndarray  # (nb, ns) int8 codes (interp.MEASURED ...)
    latency: np.ndarray  # (nb, ns) grid latency_ms
    trend: float = 0.0  # slope damping past the last sequence value
    measured: np.ndarray | None = None  # (nb, ns) measured log2 ratio, NaN where not measured
    batch_power: float = 0.0  # interpolation coordinate along batch (interp.power_weight)
    seq_power: float = 0.0


def _slice_matrix(batch_col: np.ndarray, seq_col: np.ndarray, log2_ratio: np.ndarray, axes: dict | None = None):
    """(batch axis, seq axis, matrix); with `axes`, equal axes are one shared (read-only) array, so
    that `rules._aligned` sees siblings on the same axes by identity instead of comparing values."""
    batch = np.unique(batch_col)
    seq = np.unique(seq_col)
    if axes is not None:
        batch = axes.setdefault((batch.dtype.str, batch.tobytes()), batch)
        seq = axes.setdefault((seq.dtype.str, seq.tobytes()), seq)
    bi = np.searchsorted(batch, batch_col)
    si = np.searchsorted(seq, seq_col)
    vals = np.full((batch.size, seq.size), np.nan)
    vals[bi, si] = log2_ratio
    return batch, seq, vals


def _slice_matrices(pts: pl.DataFrame) -> dict[tuple, tuple]:
    """{slice key: (batch axis, seq axis, measured log2 ratio matrix)}, slices in order of first
    appearance. One group_by and flat numpy columns cut by offsets: a polars frame
    per slice (thousands) cost more than the matrices themselves."""
    g = pts.group_by(list(SLICE_KEYS), maintain_order=True).agg(
        "batch_size", "seq_len", (pl.col("latency_ms") / pl.col("sol_ms")).alias("ratio"))
    flat = g.select(pl.col("batch_size", "seq_len", "ratio").explode())
    batch, seq = flat["batch_size"].to_numpy(), flat["seq_len"].to_numpy()
    ratio = np.log2(flat["ratio"].to_numpy())
    ends = np.cumsum(g["batch_size"].list.len().to_numpy().astype(np.int64))
    starts = ends - np.diff(ends, prepend=0)
    axes: dict = {}
    return {tuple(key): _slice_matrix(batch[a:b], seq[a:b], ratio[a:b], axes)
            for key, a, b in zip(g.select(SLICE_KEYS).iter_rows(), starts, ends)}


def build_grids(points: pl.DataFrame, calibration: pl.DataFrame, *, inputs_tag: str | None = None) -> pl.DataFrame:
    """Dense per-slice grids (GRID_SCHEMA) from perf points and a calibration table.

    Every row carries `input_hash`: `inputs_tag` when given (the warehouse passes
    the identity of its source files), else a digest of the points; either way
    combined with the calibration and the method version.
    """
    params = params_from_frame(calibration)
    pts = with_sol(points, params).with_columns(seq_values(points).alias("seq_len"))
    pts = pts.with_columns(pl.col("prefix").fill_null(0))
    ihash = grids_hash(inputs_tag or input_hash(points), calibration)
    raw = _slice_matrices(pts)
    siblings = _sibling_index(list(raw))
    aligned = {(key, o): _aligned(raw[key][0], raw[key][1], raw[o]) for key in raw for o in siblings[key]}
    logs = {key: (np.log2(batch), np.log2(seq)) for key, (batch, seq, _) in raw.items()}
    power_errs: dict[tuple, list] = {}
    for key, errs in zip(raw, power_errors_many([(vals, *logs[key]) for key, (_, _, vals) in raw.items()])):
        power_errs.setdefault(key[: len(CAL_KEYS)], []).append(errs)
    powers = {g: choose_powers(e) for g, e in power_errs.items()}
    inputs = []
    for key, (_, _, vals) in raw.items():
        sibs = [m for m in (aligned[key, o] for o in siblings[key]) if not np.isnan(m).all()]
        inputs.append((vals, *logs[key], sibs, powers[key[: len(CAL_KEYS)]]))
    est = dict(zip(raw, slice_estimates_many(inputs)))
    rule_errors: dict[tuple, list] = {}
    for key, (_, _, vals) in raw.items():
        rule_errors.setdefault(key[: len(CAL_KEYS)], []).append(fill_rule_errors(vals, est[key]))
    rules = {g: choose_fill_rule(e) for g, e in rule_errors.items()}
    extrap_errors: dict[tuple, list] = {}
    for key, errs in zip(raw, extrapolation_errors_many([(vals, *logs[key]) for key, (_, _, vals) in raw.items()])):
        extrap_errors.setdefault(key[: len(CAL_KEYS)], []).append(errs)
    extrapolation = {g: choose_extrapolation(e) for g, e in extrap_errors.items()}
    filled_by_key = {key: fill_slice(vals, batch, seq, est[key], rules[key[: len(CAL_KEYS)]],
                                     extrapolation[key[: len(CAL_KEYS)]])
                     for key, (batch, seq, vals) in raw.items()}
    pooled, own_share = {}, {}
    for key in raw:
        pooled[key], own_share[key] = pool_siblings(key, raw, filled_by_key, siblings, aligned)
    by_group: dict[tuple, list] = {}
    for key, (batch, seq, vals) in raw.items():
        by_group.setdefault(key[: len(CAL_KEYS)], []).append(
            (np.log2(seq), filled_by_key[key][0], pooled[key], vals))
    use_pool = {g: choose_pooling(v, powers[g][1]) for g, v in by_group.items()}
    surface = {key: pooled[key] if use_pool[key[: len(CAL_KEYS)]] else filled_by_key[key][0] for key in raw}
    surface = _hole_blend(raw, est, rules, use_pool, filled_by_key, surface, own_share)
    sources = {k: f[1] for k, f in filled_by_key.items()}
    trends = {g: choose_seq_trend([(xs, pool if use_pool[g] else plain, m) for xs, plain, pool, m in v])
              for g, v in by_group.items()}
    if not raw:
        raise ValueError("build_grids: no perf points")
    raw, surface, sources, trends = _extend_seq(raw, surface, sources, trends, params)
    grids = _attach_sol(_cells_frame(raw, surface, sources, {k: trends[k[: len(CAL_KEYS)]] for k in raw},
                                     {k: powers[k[: len(CAL_KEYS)]] for k in raw}), params)
    return grids.with_columns(pl.lit(ihash).alias("input_hash"), pl.lit(METHOD).alias("method")).select(
        [pl.col(c).cast(t) for c, t in GRID_SCHEMA.items()]
    )


def _hole_blend(raw, est, rules, use_pool, filled_by_key, surface, own_share):
    """At the interpolated holes of pooling ops, the `choose_hole_blend` mean of the fill rule's
    value and the pooled mean, where the op's leave-one-out errors choose it; other cells as
    they are. The pooled mean of the leave-one-out surface is the pooled surface moved by the
    own surface's share of the change (`pool_siblings`), not a second pooling."""
    blend_errs: dict[tuple, list] = {}
    own_fill = {}
    for key, (_, _, vals) in raw.items():
        g = key[: len(CAL_KEYS)]
        if not use_pool[g]:
            continue
        own_fill[key] = fill_values(vals, est[key], rules[g])
        own = filled_by_key[key][0]
        pooled_loo = surface[key] + own_share[key] * (np.where(np.isnan(vals), own, own_fill[key]) - own)
        blend_errs.setdefault(g, []).append(hole_blend_errors(vals, est[key], own_fill[key], pooled_loo))
    weights = {g: choose_hole_blend(e) for g, e in blend_errs.items()}
    out = dict(surface)
    for key, fill in own_fill.items():
        w = weights[key[: len(CAL_KEYS)]]
        if w is not None:
            holes = filled_by_key[key][1] == interp.INTERPOLATED
            out[key] = np.where(holes, w * fill + (1 - w) * surface[key], surface[key])
    return out


def _sibling_index(keys) -> dict[tuple, list[tuple]]:
    """Slices that differ in exactly one of num_heads (adjacent), kv dtype or gemm type."""
    pos = {c: i for i, c in enumerate(SLICE_KEYS)}
    out: dict[tuple, list[tuple]] = {k: [] for k in keys}
    for col in ("num_heads", "kv_cache_dtype", "gemm_type"):
        buckets: dict[tuple, list[tuple]] = {}
        for k in keys:
            buckets.setdefault(k[: pos[col]] + k[pos[col] + 1 :], []).append(k)
        for members in buckets.values():
            for k in members:
                for o in members:
                    if o == k:
                        continue
                    if col == "num_heads" and max(k[pos[col]], o[pos[col]]) > 2 * min(k[pos[col]], o[pos[col]]):
                        continue
                    out[k].append(o)
    return out


EXTEND_FACTORS = (2, 4, 8)  # extra sequence columns (x the last measured value) of an affine extension


def _extend_seq(raw, surface, sources, trends, params):
    """Per op, past the last measured sequence value: keep the ratio trend, or add the columns
    EXTEND_FACTORS x last with `affine_extension` values (source extrapolated; trend 0 past them),
    whichever `choose_extension` scores better on the slices' own last measured columns."""
    tail = {k: np.concatenate([seq[-3:], seq[-1] * np.array(EXTEND_FACTORS)]) for k, (_, seq, _) in raw.items()
            if seq.size >= 4}
    sol_tail = _sol_cells({k: (raw[k][0], t) for k, t in tail.items()}, params)
    by_group: dict[tuple, list] = {}
    for k in tail:
        by_group.setdefault(k[: len(CAL_KEYS)], []).append(
            (np.log2(raw[k][1]), surface[k], raw[k][2], sol_tail[k][:, :3]))
    extend = {g: choose_extension(v, trends[g]) for g, v in by_group.items()}
    raw, surface, sources, trends = dict(raw), dict(surface), dict(sources), dict(trends)
    for k in tail:
        g = k[: len(CAL_KEYS)]
        if not extend[g]:
            continue
        batch, seq, vals = raw[k]
        new = affine_extension(surface[k][:, -2:], sol_tail[k][:, 1:3], sol_tail[k][:, 3:])
        raw[k] = (batch, np.concatenate([seq, tail[k][3:]]), np.concatenate([vals, np.full(new.shape, np.nan)], axis=1))
        surface[k] = np.concatenate([surface[k], new], axis=1)
        sources[k] = np.concatenate([sources[k], np.full(new.shape, interp.EXTRAPOLATED, dtype=np.int8)], axis=1)
        trends[g] = 0.0
    return raw, surface, sources, trends


def _axes_frame(axes) -> pl.DataFrame:
    """Slice keys, batch_size and seq_len of every cell of {slice key: (batch axis, seq axis)}
    (slices in order, cells row-major), from one gather of the keys: a small frame per slice
    (thousands of them) cost more than the grid fill."""
    keys = list(axes)
    nb = np.array([axes[k][0].size for k in keys])
    ns = np.array([axes[k][1].size for k in keys])
    slice_of_cell = np.repeat(np.arange(len(keys)), nb * ns)
    key_frame = pl.DataFrame([list(col) for col in zip(*keys)], orient="col",
                             schema={c: GRID_SCHEMA[c] for c in SLICE_KEYS})[slice_of_cell]
    return key_frame.with_columns(
        pl.Series("batch_size", np.concatenate([np.repeat(axes[k][0], axes[k][1].size) for k in keys]), pl.Int32),
        pl.Series("seq_len", np.concatenate([np.tile(axes[k][1], axes[k][0].size) for k in keys]), pl.Int32))


def _sol_cells(axes, params) -> dict[tuple, np.ndarray]:
    """Calibrated SOL (ms) on each slice's (batch x seq) axes: {slice key: (nb, ns) array}."""
    if not axes:
        return {}
    sol_ms = _attach_sol(_axes_frame(axes), params, latency=False)["sol_ms"].to_numpy()
    out, at = {}, 0
    for k, (batch, seq) in axes.items():
        out[k] = sol_ms[at : at + batch.size * seq.size].reshape(batch.size, seq.size)
        at += batch.size * seq.size
    return out


def _cells_frame(raw, surface, sources, trends, powers) -> pl.DataFrame:
    """Every slice's cells as one frame (slices in `raw` order, cells row-major)."""
    keys = list(raw)
    nb = np.array([raw[k][0].size for k in keys])
    ns = np.array([raw[k][1].size for k in keys])
    codes = np.concatenate([sources[k].ravel() for k in keys])
    return _axes_frame({k: raw[k][:2] for k in keys}).with_columns(
        pl.Series("log2_ratio", np.concatenate([surface[k].ravel() for k in keys])),
        pl.Series("source", np.asarray(SOURCES, dtype=object)[codes], pl.String),
        pl.Series("seq_trend", np.repeat(np.array([float(trends[k]) for k in keys]), nb * ns)),
        pl.Series("batch_power", np.repeat(np.array([float(powers[k][0]) for k in keys]), nb * ns)),
        pl.Series("seq_power", np.repeat(np.array([float(powers[k][1]) for k in keys]), nb * ns)),
        pl.Series("measured_log2_ratio", np.concatenate([raw[k][2].ravel() for k in keys])).fill_nan(None),
    )


def _attach_sol(grids: pl.DataFrame, params, latency: bool = True) -> pl.DataFrame:
    """sol_ms and (latency=True) latency_ms of each cell (latency = SOL * 2^log2_ratio)."""
    ctx = pl.col("op").is_in(CONTEXT_OPS)
    g = grids.with_columns(
        pl.when(ctx).then(pl.col("seq_len")).otherwise(1).alias("isl"),
        pl.when(ctx).then(None).otherwise(pl.col("seq_len")).alias("kv_len"),
    )
    g = with_sol(g, params).drop("isl", "kv_len")
    if not latency:
        return g
    ratio = pl.coalesce("measured_log2_ratio", "log2_ratio")
    return g.with_columns((pl.col("sol_ms") * (2.0**ratio)).alias("latency_ms"))
