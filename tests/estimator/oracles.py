"""Scalar reference versions of the vectorised interpolation rules (test oracles only).

`estimator.grids.interp.line_estimates` / `sibling_estimates` fill every cell of a grid at once;
these loop over one cell at a time, written the plain way, so the tests can check the
vectorised rules against them. Production code never calls them.
"""

from __future__ import annotations

import numpy as np

from estimator.grids.interp import INTERPOLATED, MEASURED


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


def line_estimate(values: np.ndarray, known: np.ndarray, xb: np.ndarray, xs: np.ndarray, i: int, j: int):
    """Value of cell (i, j) from known cells of its row (sequence axis) and column (batch axis).

    Linear along each line between the nearest known cells on both sides; the
    inverse-distance mean when both lines bracket the cell; None when neither does.
    """
    cands = []
    r = _interp_line(xs, values[i], known[i], j)
    if r is not None:
        cands.append((r[0], r[1]))
    c = _interp_line(xb, values[:, j], known[:, j], i)
    if c is not None:
        cands.append((c[0], c[1]))
    if not cands:
        return None
    wsum = sum(1.0 / d for _, d in cands)
    return sum(v / d for v, d in cands) / wsum


def fill_holes(values: np.ndarray, xb: np.ndarray, xs: np.ndarray):
    """Fill NaN cells of a (batch x seq) grid of log-ratios with `line_estimate`.

    Filled cells are `interpolated`; holes no line brackets stay NaN for the
    caller (sibling transfer, then extrapolation). Returns (values, source codes).
    """
    out = values.copy()
    known = ~np.isnan(values)
    src = np.where(known, MEASURED, -1).astype(np.int8)
    for i, j in zip(*np.nonzero(~known)):
        v = line_estimate(values, known, xb, xs, i, j)
        if v is not None:
            out[i, j] = v
            src[i, j] = INTERPOLATED
    return out, src


def sibling_estimate(values: np.ndarray, known: np.ndarray, siblings: list[np.ndarray], i: int, j: int):
    """Value of cell (i, j) from sibling slices (aligned grids, NaN where unmeasured).

    Each sibling that measured the cell gives its value plus the median offset
    (self - sibling) over the cells both measured in row i and column j; the
    estimate is the mean over siblings, None when no sibling qualifies.
    """
    ests = []
    for sib in siblings:
        sv = sib[i, j]
        if np.isnan(sv):
            continue
        row = known[i] & ~np.isnan(sib[i])
        col = known[:, j] & ~np.isnan(sib[:, j])
        row[j] = False
        col[i] = False
        diffs = np.concatenate([values[i][row] - sib[i][row], values[:, j][col] - sib[:, j][col]])
        if diffs.size >= 2:
            ests.append(sv + float(np.median(diffs)))
    return float(np.mean(ests)) if ests else None
