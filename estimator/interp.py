"""Interpolation as pure functions over numpy arrays (no database needed).

Everything works on log2 coordinates and on the log2 of measured / calibrated
SOL, so between two measured points the SOL supplies the curvature and past
the last one the SOL supplies the growth law: holding the boundary ratio
constant is extrapolating along the SOL.
"""

from __future__ import annotations

import numpy as np

# Provenance codes stored in grids (index into estimator.common.Source order).
MEASURED, INTERPOLATED, EXTRAPOLATED, TRANSFERRED, SOL = range(5)


def bracket(axis: np.ndarray, q: np.ndarray):
    """Bracketing indices and weight of each query on a sorted axis.

    Returns (i0, i1, w, outside): value = (1-w)*v[i0] + w*v[i1]. Outside the
    axis the weight is clamped (w in {0, 1}), i.e. the boundary value holds.
    """
    n = axis.shape[0]
    q = np.asarray(q, dtype=np.float64)
    if n == 1:
        zero = np.zeros(q.shape, dtype=np.int64)
        return zero, zero, np.zeros(q.shape), q != axis[0]
    i1 = np.clip(np.searchsorted(axis, q, side="left"), 1, n - 1)
    i0 = i1 - 1
    a0 = axis[i0]
    a1 = axis[i1]
    w = (q - a0) / (a1 - a0)
    outside = (q < axis[0]) | (q > axis[-1])
    return i0, i1, np.clip(w, 0.0, 1.0), outside


def bilinear(grid: np.ndarray, bi0, bi1, bw, si0, si1, sw) -> np.ndarray:
    """Bilinear value on a dense 2-D grid from two `bracket` results."""
    top = grid[bi0, si0] * (1.0 - sw) + grid[bi0, si1] * sw
    bot = grid[bi1, si0] * (1.0 - sw) + grid[bi1, si1] * sw
    return top * (1.0 - bw) + bot * bw


def _interp_line(x: np.ndarray, v: np.ndarray, known: np.ndarray, j: int):
    """Linear value at x[j] from the nearest known entries on both sides, or None.

    Returns (value, distance to the nearer neighbour, (left, right)).
    """
    left = np.flatnonzero(known[:j])
    right = np.flatnonzero(known[j + 1 :])
    if left.size == 0 or right.size == 0:
        return None
    jl, jr = left[-1], j + 1 + right[0]
    w = (x[j] - x[jl]) / (x[jr] - x[jl])
    return v[jl] * (1 - w) + v[jr] * w, min(x[j] - x[jl], x[jr] - x[j]), (jl, jr)


def fill_holes(values: np.ndarray, xb: np.ndarray, xs: np.ndarray):
    """Fill NaN cells of a (batch x seq) grid of log-ratios.

    A hole between measured cells of its row (sequence axis) and/or column
    (batch axis) gets the linear value along that line (inverse-distance mean
    of both lines when both exist): `interpolated`. Any other hole is left NaN
    for the caller (sibling transfer, then extrapolation).
    Returns (filled values, source codes).
    """
    out = values.copy()
    known = ~np.isnan(values)
    src = np.where(known, MEASURED, -1).astype(np.int8)
    for i, j in zip(*np.nonzero(~known)):
        cands = []
        r = _interp_line(xs, values[i], known[i], j)
        if r is not None:
            cands.append((r[0], r[1]))
        c = _interp_line(xb, values[:, j], known[:, j], i)
        if c is not None:
            cands.append((c[0], c[1]))
        if cands:
            wsum = sum(1.0 / d for _, d in cands)
            out[i, j] = sum(v / d for v, d in cands) / wsum
            src[i, j] = INTERPOLATED
    return out, src


def extrapolate_holes(values: np.ndarray, src: np.ndarray, xb: np.ndarray, xs: np.ndarray):
    """Fill the remaining NaN cells by holding the nearest known cell's ratio.

    Nearest in log2 distance, preferring the same batch row (so the SOL's
    growth along the sequence carries the shape). Marks them `extrapolated`.
    """
    out = values.copy()
    known = ~np.isnan(values)
    if not known.any():
        return out, src
    ki, kj = np.nonzero(known)
    for i, j in zip(*np.nonzero(~known)):
        d = np.abs(xb[ki] - xb[i]) * 2.0 + np.abs(xs[kj] - xs[j])
        k = int(np.argmin(d))
        out[i, j] = values[ki[k], kj[k]]
        src[i, j] = EXTRAPOLATED
    return out, src


def nearest_index(axis: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Index of the nearest axis value (in whatever space the axis is given)."""
    i0, i1, w, _ = bracket(axis, q)
    return np.where(w > 0.5, i1, i0)
