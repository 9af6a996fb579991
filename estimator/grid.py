"""Interpolation grids: one dense batch x sequence grid of log2(measured/SOL) per slice.

`build_grids(points, calibration)` is pure (frames in, frame out) and is what
the Dagster grid asset calls; `GridSet.from_frame` turns the stored table into
numpy arrays for fast lookups. Every cell carries its provenance.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from . import interp, sol
from .calibrate import CAL_KEYS, CalibrationParams, calibrated_ms, params_from_frame
from .common import Source
from .slices import CONTEXT_OPS, GROUP_KEYS, SLICE_KEYS, model_for, points_shape, seq_values
from .specs import load_system

METHOD = "grid-logratio-v6"
SOURCES = tuple(s.value for s in Source)
GRID_SCHEMA: dict[str, pl.DataType] = {
    **{k: (pl.Int32() if k in ("num_heads", "prefix") else pl.String()) for k in SLICE_KEYS},
    "batch_size": pl.Int32(),
    "seq_len": pl.Int32(),
    "log2_ratio": pl.Float64(),  # the surface lookups interpolate on
    "measured_log2_ratio": pl.Float64(),  # the cell's own measurement (null when not measured)
    "sol_ms": pl.Float64(),
    "latency_ms": pl.Float64(),
    "source": pl.String(),
    "seq_trend": pl.Float64(),  # damping of the log-ratio slope past the last sequence value
    "batch_power": pl.Float64(),  # interpolation coordinate along batch: batch**p, log2 when 0 (choose_powers)
    "seq_power": pl.Float64(),  # the same along the sequence
    "input_hash": pl.String(),
    "method": pl.String(),
}


def frame_digest(frame: pl.DataFrame) -> str:
    """Order-independent digest of a frame's content (polars row hashes, summed)."""
    total = int(frame.hash_rows().sum()) if frame.height else 0
    return hashlib.sha256(f"{frame.height}:{total}:{','.join(frame.columns)}".encode()).hexdigest()


def input_hash(points: pl.DataFrame, *extra: str) -> str:
    """Hash of the points' keys and latencies plus method tags: a grid's identity."""
    cols = [c for c in (*SLICE_KEYS, "batch_size", "isl", "kv_len", "latency_ms") if c in points.columns]
    digest = hashlib.sha256(frame_digest(points.select(cols)).encode())
    for e in (METHOD, *extra):
        digest.update(e.encode())
    return digest.hexdigest()[:16]


def with_sol(points: pl.DataFrame, params: dict[tuple, CalibrationParams]) -> pl.DataFrame:
    """Add `sol_ms` (calibrated SOL at each point's own shape and system)."""
    out = np.empty(points.height)
    keys = ["system", "framework", "version", "op", "kernel_source", "architecture", "gemm_type", "kv_cache_dtype"]
    for (system, fw, ver, op, source, arch, gemm, kv), sub in points.with_row_index("_row").group_by(
        keys, maintain_order=True
    ):
        p = params[(system, fw, ver, op, source)]
        ks = sol.kernels(op, model_for(op, arch), gemm_type=gemm or "bfloat16", kv_cache_dtype=kv,
                         **points_shape(sub))
        out[sub["_row"].to_numpy()] = np.broadcast_to(calibrated_ms(ks, load_system(system), p), sub.height)
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


def _slice_matrix(batch_col: np.ndarray, seq_col: np.ndarray, log2_ratio: np.ndarray):
    batch = np.unique(batch_col)
    seq = np.unique(seq_col)
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
    return {tuple(key): _slice_matrix(batch[a:b], seq[a:b], ratio[a:b])
            for key, a, b in zip(g.select(SLICE_KEYS).iter_rows(), starts, ends)}


TREND_CHOICES = (0.0, 0.25, 0.5, 0.75, 1.0)
LOO_CELLS = 48  # measured cells per slice scored when choosing the hole-filling rule


def _aligned(batch, seq, sibling) -> np.ndarray:
    """A sibling slice's measured log-ratios on this slice's (batch, seq) axes; NaN elsewhere."""
    sb, ss, sv = sibling
    if np.array_equal(sb, batch) and np.array_equal(ss, seq):
        return sv.copy()  # the common case: siblings measured on the same axes
    out = np.full((batch.size, seq.size), np.nan)
    bi = np.searchsorted(sb, batch)
    si = np.searchsorted(ss, seq)
    bok = (bi < sb.size) & (sb[np.minimum(bi, sb.size - 1)] == batch)
    sok = (si < ss.size) & (ss[np.minimum(si, ss.size - 1)] == seq)
    out[np.ix_(bok, sok)] = sv[np.ix_(bi[bok], si[sok])]
    return out


FILL_RULES = ("line", "sibling", "blend", "median", "median_row", "median_col", "median_local", "median_local_row")


def fill_rule_errors(vals, est) -> dict[str, np.ndarray]:
    """Leave-one-out errors (log2) of each of FILL_RULES on a slice's measured cells (up to
    LOO_CELLS of them) that both a line and a sibling cover; empty arrays if none.

    Leaving a cell out changes none of its estimates (all already skip the
    cell itself), so the leave-one-out values are read from `slice_estimates`
    of the full slice instead of being recomputed per cell.
    """
    cells = np.argwhere(~np.isnan(vals))
    if cells.shape[0] > LOO_CELLS:
        cells = cells[np.linspace(0, cells.shape[0] - 1, LOO_CELLS).astype(int)]
    i, j = cells[:, 0], cells[:, 1]
    ok = est["has_line"][i, j] & est["has_sibling"][i, j]
    return {r: np.abs(est[r][i, j][ok] - vals[i, j][ok]) for r in FILL_RULES}


def choose_fill_rule(errors: list[dict[str, np.ndarray]]) -> str:
    """One of FILL_RULES: the lowest mean leave-one-out error over the given slices'
    `fill_rule_errors` (one op's slices together: a per-slice choice from a few dozen
    noisy cells flipped between rules); 'line' when fewer than 5 cells can be scored."""
    errs = {r: np.concatenate([e[r] for e in errors]) if errors else np.empty(0) for r in FILL_RULES}
    if errs["line"].size < 5:
        return "line"
    return min(errs, key=lambda k: (float(np.median(errs[k])), float(np.mean(errs[k])), k != "line"))


def power_errors(vals, xb, xs) -> dict[tuple[str, float], np.ndarray]:
    """Leave-one-out errors (log2) of line interpolation along each axis, per coordinate power:
    every measured cell predicted from the nearest measured cells on both sides of its row
    (axis 'seq') or column ('batch'), weights linear in x**power (interp.POWERS)."""
    known = ~np.isnan(vals)
    out = {}
    rvs, _, rh = interp._line_brackets(xs, vals, known, interp.POWERS)
    cvs, _, ch = interp._line_brackets(xb, vals.T, known.T, interp.POWERS)
    for p, rv, cv in zip(interp.POWERS, rvs, cvs):
        out["seq", p] = np.abs(rv - vals)[known & rh]
        out["batch", p] = np.abs(cv.T - vals)[known & ch.T]
    return out


POWER_MARGIN = 0.98  # a power replaces log2 only if its mean error is at least 2% lower (and its median lower)


def choose_powers(errors: list[dict]) -> tuple[float, float]:
    """(batch power, seq power) of one op: per axis the power of interp.POWERS with the lowest
    mean `power_errors` over the op's slices, if it beats log2 (power 0) by POWER_MARGIN in the
    mean and also in the median; else log2 (also with fewer than 5 scored cells).

    Chosen on the fit data only; one choice per op (a per-slice choice from a few
    dozen noisy cells flips between powers). The margin: on the published and the
    project's tables the powers' mean errors differ by under 1.5%, and switching on such
    a difference made held-out lines worse (MLA decode G 1.17% -> 1.45% on the project's data)."""
    chosen = []
    for axis in ("batch", "seq"):
        errs = {p: np.concatenate([e[axis, p] for e in errors]) if errors else np.empty(0) for p in interp.POWERS}
        if errs[0.0].size < 5:
            chosen.append(0.0)
            continue
        best = min(interp.POWERS, key=lambda p: (float(np.mean(errs[p])), p))
        wins = (float(np.mean(errs[best])) < POWER_MARGIN * float(np.mean(errs[0.0]))
                and float(np.median(errs[best])) < float(np.median(errs[0.0])))
        chosen.append(best if wins else 0.0)
    return chosen[0], chosen[1]


def slice_estimates(vals, xb, xs, sibs, powers: tuple[float, float] = (0.0, 0.0)) -> dict[str, np.ndarray]:
    """Every hole-filling estimate of every cell, by rule (FILL_RULES), plus has_line / has_sibling.

    'median' is the median of the row line, the column line and each sibling's
    own estimate (`interp.median_estimates`): robust where cells jump between levels.
    'median_row' / 'median_col' leave out the column / row line (decode: the batch
    line is the weak one). 'median_local' adds each sibling with a local offset
    (`interp.local_sibling_estimates`) to 'median'; 'median_local_row' is the row line
    with the local-offset siblings.
    """
    known = ~np.isnan(vals)
    line, has_line, row, col = interp.line_estimates(vals, known, xb, xs, parts=True, powers=powers)
    sib, has_sib, each = interp.sibling_estimates(vals, known, sibs, parts=True)
    med, _ = interp.median_estimates(np.concatenate([row[None], col[None], each]))
    med_row, _ = interp.median_estimates(np.concatenate([row[None], each]))
    med_col, _ = interp.median_estimates(np.concatenate([col[None], each]))
    local = interp.local_sibling_estimates(vals, sibs, xb, xs)
    med_local, _ = interp.median_estimates(np.concatenate([row[None], col[None], each, local]))
    med_local_row, _ = interp.median_estimates(np.concatenate([row[None], local]))
    return {"line": line, "has_line": has_line, "sibling": sib, "has_sibling": has_sib,
            "blend": 0.5 * (line + sib), "median": med, "median_row": med_row, "median_col": med_col,
            "median_local": med_local, "median_local_row": med_local_row}


def fill_slice(vals, batch, seq, est, rule: str):
    """Fill one slice's holes from its `slice_estimates`; returns (filled log-ratios, source codes).

    Holes inside the slice's own lines use `rule` (`interpolated`); holes only
    siblings cover are `transferred`; the rest hold the nearest cell's ratio (`extrapolated`).
    """
    xb, xs = np.log2(batch), np.log2(seq)
    line, has_line, sib, has_sib = est["line"], est["has_line"], est["sibling"], est["has_sibling"]
    known = ~np.isnan(vals)
    inside = line if rule == "line" else np.where(has_sib & ~np.isnan(est[rule]), est[rule], line)
    interpolated = ~known & has_line
    transferred = ~known & ~has_line & has_sib
    out = np.where(interpolated, inside, np.where(transferred, sib, vals))
    src = np.where(known, interp.MEASURED, -1).astype(np.int8)
    src[interpolated] = interp.INTERPOLATED
    src[transferred] = interp.TRANSFERRED
    if np.isnan(out).any():
        out, src = interp.extrapolate_holes(out, src, xb, xs)
    return out, src


def _last_column_errors(slices) -> dict:
    """Errors (log2) of predicting each slice's last measured column from the two before it, per
    rule: a ratio trend t in TREND_CHOICES, or 'affine' (latency affine in the calibrated SOL).

    slices: (xs, surface, measured, sol) with sol the calibrated SOL (ms) of the last three
    columns (nb, 3), or None where unknown (then only the trends are scored).
    """
    errs: dict = {t: [] for t in (*TREND_CHOICES, "affine")}
    for xs, filled, measured, sol3 in slices:
        if xs.size < 4:
            continue
        step = (xs[-1] - xs[-2]) / (xs[-2] - xs[-3])
        slope = filled[:, -2] - filled[:, -3]
        ok = ~np.isnan(measured[:, -1])
        for t in TREND_CHOICES:
            errs[t].extend(np.abs(filled[ok, -2] + t * slope[ok] * step - measured[ok, -1]).tolist())
        if sol3 is not None:
            pred = affine_extension(filled[:, -3:-1], sol3[:, :2], sol3[:, 2:])[:, 0]
            errs["affine"].extend(np.abs(pred[ok] - measured[ok, -1]).tolist())
    return errs


def choose_seq_trend(slices) -> float:
    """Damping of the log-ratio slope beyond the last sequence value, chosen by measurement:
    predict each slice's last measured column from the two before it, keep the best.
    slices: (xs, surface, measured[, sol]) per slice."""
    errs = _last_column_errors([(*s[:3], None) for s in slices])
    if not errs[0.0]:
        return 0.0
    return min(TREND_CHOICES, key=lambda t: (float(np.mean(errs[t])), t))


def choose_extension(slices, trend: float) -> bool:
    """Extend affinely in the SOL (`affine_extension`) rather than along the ratio trend: only if
    that predicts the slices' last measured columns better (same scoring as `choose_seq_trend`)."""
    errs = _last_column_errors(slices)
    return bool(errs["affine"]) and float(np.mean(errs["affine"])) < float(np.mean(errs[trend]))


def affine_extension(ratio2: np.ndarray, sol2: np.ndarray, sol_new: np.ndarray) -> np.ndarray:
    """log2 ratios at new sequence columns from the last two columns (nb, 2), with latency
    affine in the calibrated SOL: t = t_last + k * (SOL - SOL_last), k the measured marginal
    cost per unit of SOL between the two columns (>= 0).

    Why: the calibrated SOL is fitted over the whole table, so its growth in the sequence
    can be off for one slice (DSA decode: the overhead's p-norm hides the kv_len term, and
    the measured log-ratio keeps rising with kv_len, faster at large batch); the measured
    increment carries the slice's own growth, the SOL its shape (linear in kv_len for decode,
    quadratic in isl for context).
    """
    lat = sol2 * np.exp2(ratio2)
    dsol = sol2[:, 1] - sol2[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(dsol > 0, (lat[:, 1] - lat[:, 0]) / dsol, 0.0)
    k = np.maximum(k, 0.0)[:, None]
    return np.log2((lat[:, 1:] + k * (sol_new - sol2[:, 1:])) / sol_new)


def pool_siblings(key, raw, filled_by_key, siblings, aligned=None) -> np.ndarray:
    """Mean of a slice's filled log-ratios and those of its same-heads siblings (other kv dtype,
    other gemm type), each shifted by the median offset on the cells both measured.

    Near-duplicate slices measure nearly the same thing with independent noise;
    their mean is a less noisy surface to interpolate on.
    """
    pos = SLICE_KEYS.index("num_heads")
    batch, seq, vals = raw[key]
    own = filled_by_key[key][0]
    ests = [own]
    for o in siblings[key]:
        if o[pos] != key[pos]:
            continue
        other = _aligned(batch, seq, (raw[o][0], raw[o][1], filled_by_key[o][0]))
        measured = aligned[key, o] if aligned is not None else _aligned(batch, seq, raw[o])
        common = ~np.isnan(vals) & ~np.isnan(measured)
        if common.sum() < 3:
            continue
        offset = float(np.median((vals - measured)[common]))
        ests.append(np.where(np.isnan(other), own, other + offset))
    return np.mean(ests, axis=0) if len(ests) > 1 else own


def choose_pooling(slices: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], seq_power: float = 0.0) -> bool:
    """Pool siblings for this op only if that predicts held-out sequence lines better:
    each interior column is predicted from its two neighbour columns (linear in log2 seq)
    on the plain and on the pooled surface, and scored against the measured column.

    All interior columns of a slice at once; errors are collected column by column
    (the transposed mask), the order a per-column loop would produce.
    """
    errs: dict[bool, list[np.ndarray]] = {False: [], True: []}
    for xs, plain, pooled, measured in slices:
        if xs.size < 3:
            continue
        w = interp.power_weight(xs[:-2], xs[2:], xs[1:-1], seq_power)
        target = measured[:, 1:-1]
        ok = ~np.isnan(target)
        for flag, surf in ((False, plain), (True, pooled)):
            pred = surf[:, :-2] * (1 - w) + surf[:, 2:] * w
            errs[flag].append(np.abs(pred - target).T[ok.T])
    plain_errs = np.concatenate(errs[False]) if errs[False] else np.empty(0)
    if not plain_errs.size:
        return False
    return float(np.mean(np.concatenate(errs[True]))) < float(np.mean(plain_errs))


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
    power_errs: dict[tuple, list] = {}
    for key, (batch, seq, vals) in raw.items():
        power_errs.setdefault(key[: len(CAL_KEYS)], []).append(power_errors(vals, np.log2(batch), np.log2(seq)))
    powers = {g: choose_powers(e) for g, e in power_errs.items()}
    est = {}
    for key, (batch, seq, vals) in raw.items():
        sibs = [m for m in (aligned[key, o] for o in siblings[key]) if not np.isnan(m).all()]
        est[key] = slice_estimates(vals, np.log2(batch), np.log2(seq), sibs, powers[key[: len(CAL_KEYS)]])
    rule_errors: dict[tuple, list] = {}
    for key, (_, _, vals) in raw.items():
        rule_errors.setdefault(key[: len(CAL_KEYS)], []).append(fill_rule_errors(vals, est[key]))
    rules = {g: choose_fill_rule(e) for g, e in rule_errors.items()}
    filled_by_key = {key: fill_slice(vals, batch, seq, est[key], rules[key[: len(CAL_KEYS)]])
                     for key, (batch, seq, vals) in raw.items()}
    pooled = {key: pool_siblings(key, raw, filled_by_key, siblings, aligned) for key in raw}
    by_group: dict[tuple, list] = {}
    for key, (batch, seq, vals) in raw.items():
        by_group.setdefault(key[: len(CAL_KEYS)], []).append(
            (np.log2(seq), filled_by_key[key][0], pooled[key], vals))
    use_pool = {g: choose_pooling(v, powers[g][1]) for g, v in by_group.items()}
    surface = {key: pooled[key] if use_pool[key[: len(CAL_KEYS)]] else filled_by_key[key][0] for key in raw}
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


def grid_summary(grids: pl.DataFrame) -> dict:
    """Counts for asset metadata: slices, cells, and cells per provenance (with shares)."""
    cells = grids.height
    by_source = {s: int(n) for s, n in grids.group_by("source").len().iter_rows()}
    return {
        "slices": grids.select(list(SLICE_KEYS)).unique().height,
        "cells": cells,
        "cells_by_source": {s: by_source.get(s, 0) for s in SOURCES},
        "share_by_source": {s: (by_source.get(s, 0) / cells if cells else 0.0) for s in SOURCES},
        "input_hash": grids["input_hash"][0] if cells else None,
        "method": METHOD,
    }


def grids_hash(inputs_tag: str, calibration: pl.DataFrame) -> str:
    """Identity of a grid build: its inputs, the calibration it used, the method version."""
    return hashlib.sha256(f"{inputs_tag}|{calibration_tag(calibration)}|{METHOD}".encode()).hexdigest()[:16]


def calibration_tag(calibration: pl.DataFrame) -> str:
    return frame_digest(calibration.select(*CAL_KEYS, "param", "group", "value"))[:16]


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


@dataclass
class GroupGrids:
    """All slices of one categorical key, indexed by (num_heads, prefix)."""

    key: tuple
    heads: np.ndarray  # sorted num_heads values
    prefixes: np.ndarray  # sorted prefix values
    slices: dict[tuple[int, int], SliceGrid]
    stacked: "StackedGrid | None" = None  # when every slice shares one batch x seq axis pair


@dataclass
class StackedGrid:
    """All slices of a group on common axes: (heads, prefix, batch, seq) arrays for one-pass lookups."""

    xh: np.ndarray  # log2 heads
    xp: np.ndarray  # prefix values
    xb: np.ndarray
    xs: np.ndarray
    ratio: np.ndarray  # (nh, np, nb, ns)
    source: np.ndarray
    trend: float
    measured: np.ndarray  # (nh, np, nb, ns), NaN where not measured
    batch_power: float = 0.0
    seq_power: float = 0.0


def stack_group(grp: "GroupGrids") -> "StackedGrid | None":
    """A StackedGrid when all (heads, prefix) slices exist and share axes, else None."""
    first = next(iter(grp.slices.values()))
    if len(grp.slices) != grp.heads.size * grp.prefixes.size:
        return None
    if any(not (np.array_equal(sg.batch, first.batch) and np.array_equal(sg.seq, first.seq)
                and sg.trend == first.trend and sg.batch_power == first.batch_power
                and sg.seq_power == first.seq_power) for sg in grp.slices.values()):
        return None
    ratio = np.stack([np.stack([grp.slices[(int(h), int(p))].ratio for p in grp.prefixes]) for h in grp.heads])
    source = np.stack([np.stack([grp.slices[(int(h), int(p))].source for p in grp.prefixes]) for h in grp.heads])
    measured = np.stack([np.stack([grp.slices[(int(h), int(p))].measured for p in grp.prefixes])
                         for h in grp.heads])
    return StackedGrid(np.log2(grp.heads.astype(np.float64)), grp.prefixes.astype(np.float64), first.xb, first.xs,
                       ratio, source, first.trend, measured, first.batch_power, first.seq_power)


def _slice_cells(g: pl.DataFrame):
    """(slice key, {column: numpy array}) per slice of a grids frame sorted by slice keys.

    Columns go to numpy once and are cut at the slice boundaries; source names
    become int8 codes in one pass (an unknown name fails). A polars frame per slice
    (thousands) made loading a grid cost more than a second.
    """
    bounds = g.group_by(list(SLICE_KEYS), maintain_order=True).len()
    ends = np.cumsum(bounds["len"].to_numpy().astype(np.int64))
    starts = ends - np.diff(ends, prepend=0)
    cols = {c: g[c].to_numpy() for c in ("batch_size", "seq_len", "log2_ratio", "latency_ms", "seq_trend")}
    for c in ("batch_power", "seq_power"):  # grids written before grid-logratio-v6 interpolate in log2
        cols[c] = g[c].to_numpy() if c in g.columns else np.zeros(g.height)
    cols["measured_log2_ratio"] = g["measured_log2_ratio"].fill_null(np.nan).to_numpy()
    cols["source"] = g["source"].replace_strict(list(SOURCES), list(range(len(SOURCES))),
                                                return_dtype=pl.Int8).to_numpy()
    for key, a, b in zip(bounds.select(SLICE_KEYS).iter_rows(), starts, ends):
        yield key, {c: v[a:b] for c, v in cols.items()}


class GridSet:
    """Grids by group key (GROUP_KEYS order) for lookups."""

    def __init__(self, groups: dict[tuple, GroupGrids]):
        self.groups = groups

    @classmethod
    def from_frame(cls, grids: pl.DataFrame) -> "GridSet":
        groups: dict[tuple, GroupGrids] = {}
        g = grids.sort(list(SLICE_KEYS) + ["batch_size", "seq_len"], nulls_last=True)
        for key, cells in _slice_cells(g):
            batch = np.unique(cells["batch_size"])
            seq = np.unique(cells["seq_len"])
            shape = (batch.size, seq.size)
            n = cells["batch_size"].size
            if n != batch.size * seq.size:
                raise ValueError(f"grid slice {key} is not dense ({n} cells for {shape})")
            sg = SliceGrid(batch, seq, np.log2(batch), np.log2(seq), cells["log2_ratio"].reshape(shape),
                           cells["source"].reshape(shape), cells["latency_ms"].reshape(shape),
                           float(cells["seq_trend"][0]), cells["measured_log2_ratio"].reshape(shape),
                           float(cells["batch_power"][0]), float(cells["seq_power"][0]))
            gkey = tuple(key[: len(GROUP_KEYS)])
            heads, prefix = int(key[-2]), int(key[-1])
            grp = groups.setdefault(gkey, GroupGrids(gkey, np.array([], dtype=np.int64), np.array([], dtype=np.int64), {}))
            grp.slices[(heads, prefix)] = sg
        for grp in groups.values():
            grp.heads = np.array(sorted({h for h, _ in grp.slices}), dtype=np.int64)
            grp.prefixes = np.array(sorted({p for _, p in grp.slices}), dtype=np.int64)
            grp.stacked = stack_group(grp)
        return cls(groups)
