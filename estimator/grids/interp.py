"""Interpolation as pure functions over numpy arrays (no database needed).

Everything works on log2 coordinates and on the log2 of measured / calibrated
SOL, so between two measured points the SOL supplies the curvature and past
the last one the SOL supplies the growth law: holding the boundary ratio
constant is extrapolating along the SOL.
"""

from __future__ import annotations

import numpy as np

# Provenance codes stored in grids (index into estimator.common.Source order).
MEASURED, INTERPOLATED, EXTRAPOLATED, TRANSFERRED, SOL, NEAREST = range(6)


POWERS = (0.0, 0.5, 1.0)  # interpolation coordinate along an axis: 0 = log2(x), p > 0 = x**p


def power_weight(x0, x1, x, power: float):
    """Weight of x between x0 and x1 (all log2 values) in the coordinate x**power (log2 when 0).

    Why: the log2-ratio surface is not equally straight in every coordinate
    (decode latency is affine in kv_len and batch, so its ratio to a SOL with a
    max() in it bends in log2 space); the grid build picks the power per op and
    axis by cross-validation (`grid.choose_powers`).
    """
    if not power:
        return (x - x0) / (x1 - x0)
    a0 = np.exp2(power * x0)
    return (np.exp2(power * x) - a0) / (np.exp2(power * x1) - a0)


def bracket(axis: np.ndarray, q: np.ndarray, trend: float = 0.0, power: float = 0.0):
    """Bracketing indices and weight of each query on a sorted (log2) axis.

    Returns (i0, i1, w, outside): value = (1-w)*v[i0] + w*v[i1]. Inside the
    axis the weight is linear in x**power (`power_weight`; log2 when 0). Outside
    the axis the boundary value holds (trend 0) or the last segment's slope
    continues in log2, damped by `trend` (0..1).
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
    if power:
        with np.errstate(invalid="ignore", over="ignore"):
            w = np.where((w > 0.0) & (w < 1.0), power_weight(a0, a1, q, power), w)
    outside = (q < axis[0]) | (q > axis[-1])
    if trend:
        return i0, i1, np.where(w > 1.0, 1.0 + trend * (w - 1.0), np.where(w < 0.0, trend * w, w)), outside
    return i0, i1, np.clip(w, 0.0, 1.0), outside


def bilinear(grid: np.ndarray, bi0, bi1, bw, si0, si1, sw) -> np.ndarray:
    """Bilinear value on a dense 2-D grid from two `bracket` results."""
    top = grid[bi0, si0] * (1.0 - sw) + grid[bi0, si1] * sw
    bot = grid[bi1, si0] * (1.0 - sw) + grid[bi1, si1] * sw
    return top * (1.0 - bw) + bot * bw


EXTRAPOLATION_MODES = ("hold", "cross", "additive")


def extrapolate_holes(values: np.ndarray, src: np.ndarray, xb: np.ndarray, xs: np.ndarray, mode: str = "hold"):
    """Fill the remaining NaN cells by holding the nearest known cell's ratio.

    Nearest in log2 distance, preferring the same batch row (so the SOL's
    growth along the sequence carries the shape). Marks them `extrapolated`.
    All holes at once: one (holes x known) distance matrix, first minimum wins
    (as a per-hole argmin would).

    mode (chosen per op by `rules.choose_extrapolation`), for a hole with a known cell in
    its batch row (nearest in seq: r) and in its sequence column (nearest in batch: c):
    'cross' holds the mean of r and c (two noisy cells instead of one); 'additive' carries
    the column's change over: r + (c - corner), corner the cell in c's row and r's column,
    where it is known (`row_column_fill`). Other holes hold the nearest cell.
    """
    out = values.copy()
    known = ~np.isnan(values)
    if not known.any():
        return out, src
    ki, kj = np.nonzero(known)
    hi, hj = np.nonzero(~known)
    d = np.abs(xb[ki][None, :] - xb[hi][:, None]) * 2.0 + np.abs(xs[kj][None, :] - xs[hj][:, None])
    k = np.argmin(d, axis=1)
    out[hi, hj] = values[ki[k], kj[k]]
    if mode != "hold":
        ok, val = row_column_fill(values, ki, kj, hi, hj, xb, xs, mode)
        out[hi[ok], hj[ok]] = val[ok]
    src[hi, hj] = EXTRAPOLATED
    return out, src


def row_column_fill(values: np.ndarray, ki, kj, hi, hj, xb: np.ndarray, xs: np.ndarray, mode: str):
    """For target cells (hi, hj) and known cells (ki, kj): (mask, value). r = the nearest known cell
    in the target's batch row (nearest in log2 seq), c = the nearest in its sequence column
    (nearest in log2 batch). mode 'cross': (r + c) / 2 where both exist; 'additive':
    r + c - values[c's row, r's column] where that corner is known too."""
    if mode not in EXTRAPOLATION_MODES[1:]:
        raise ValueError(f"unknown extrapolation mode {mode!r}; valid: {', '.join(EXTRAPOLATION_MODES)}")
    drow = np.where(ki[None, :] == hi[:, None], np.abs(xs[kj][None, :] - xs[hj][:, None]), np.inf)
    dcol = np.where(kj[None, :] == hj[:, None], np.abs(xb[ki][None, :] - xb[hi][:, None]), np.inf)
    kr, kc = np.argmin(drow, axis=1), np.argmin(dcol, axis=1)
    at = np.arange(hi.size)
    ok = np.isfinite(drow[at, kr]) & np.isfinite(dcol[at, kc])
    r, c = values[ki[kr], kj[kr]], values[ki[kc], kj[kc]]
    if mode == "cross":
        return ok, 0.5 * (r + c)
    corner = values[ki[kc], kj[kr]]
    ok &= ~np.isnan(corner)
    return ok, r + c - corner


def _line_brackets(x: np.ndarray, values: np.ndarray, known: np.ndarray, power: float | tuple = 0.0):
    """`_interp_line` for every cell of every row at once (rows = lines along `x`).

    Returns (value, distance to the nearer neighbour, has): the nearest known
    entries strictly left and right of each cell (the cell itself never counts,
    so the same answer serves leave-one-out scoring and hole filling). With a
    tuple of powers, value is a list (one per power) on the same neighbours.
    x: one axis shared by every row (n,), or one axis per row (rows, n).
    """
    n = values.shape[1]
    idx = np.arange(n)
    last_le = np.maximum.accumulate(np.where(known, idx, -1), axis=1)
    first_ge = np.minimum.accumulate(np.where(known, idx, n)[:, ::-1], axis=1)[:, ::-1]
    left = np.concatenate([np.full((values.shape[0], 1), -1), last_le[:, :-1]], axis=1)
    right = np.concatenate([first_ge[:, 1:], np.full((values.shape[0], 1), n)], axis=1)
    has = (left >= 0) & (right < n)
    jl, jr = np.clip(left, 0, n - 1), np.clip(right, 0, n - 1)
    rows = np.arange(values.shape[0])[:, None]
    x = np.broadcast_to(x, values.shape)
    xj, xl, xr = x, x[rows, jl], x[rows, jr]
    vl, vr = values[rows, jl], values[rows, jr]
    values_out = []
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for p in (power if isinstance(power, tuple) else (power,)):
            w = power_weight(xl, xr, xj, p)
            values_out.append(vl * (1 - w) + vr * w)
    value = values_out if isinstance(power, tuple) else values_out[0]
    return value, np.minimum(xj - xl, xr - xj), has


def _rows_axis(x: np.ndarray, shape: tuple) -> np.ndarray:
    """Per-plane axes x (k, n) broadcast to values of `shape` (k, ..., n), one row per line."""
    lead = (x.shape[0],) + (1,) * (len(shape) - 2) + (x.shape[1],)
    return np.broadcast_to(x.reshape(lead), shape).reshape(-1, shape[-1])


def line_estimates(values: np.ndarray, known: np.ndarray, xb: np.ndarray, xs: np.ndarray, *, parts: bool = False,
                   powers: tuple[float, float] = (0.0, 0.0)):
    """`line_estimate` (tests/estimator/oracles.py) of every cell at once: (estimates, has-estimate mask).

    Same arithmetic, in the same order, as the scalar function (row candidate
    first, then column), so the results are bit-identical; the per-cell Python
    loop was the grid build's main cost. parts=True also returns the row and
    column estimates themselves (NaN where that line does not bracket the cell).
    powers: (batch, seq) coordinate of each line (`power_weight`); distances stay log2.
    values may carry leading axes (..., nb, ns): each (nb, ns) plane is its own grid. xb / xs are
    one axis for every plane, or one per leading index k ((k, nb) / (k, ns), values (k, ..., nb, ns)).
    """
    shape = values.shape
    nb, ns = shape[-2:]
    vt, kt = np.swapaxes(values, -1, -2), np.swapaxes(known, -1, -2)
    if xs.ndim == 2:
        xs, xb = _rows_axis(xs, shape), _rows_axis(xb, vt.shape)
    rv, rd, rh = (a.reshape(shape) for a in
                  _line_brackets(xs, values.reshape(-1, ns), known.reshape(-1, ns), powers[1]))
    cv, cd, ch = (np.swapaxes(a.reshape(vt.shape), -1, -2) for a in
                  _line_brackets(xb, vt.reshape(-1, nb), kt.reshape(-1, nb), powers[0]))
    with np.errstate(divide="ignore", invalid="ignore"):
        both = (rv / rd + cv / cd) / (1.0 / rd + 1.0 / cd)
        row_only = (rv / rd) / (1.0 / rd)
        col_only = (cv / cd) / (1.0 / cd)
    est = np.where(rh & ch, both, np.where(rh, row_only, np.where(ch, col_only, np.nan)))
    if parts:
        return est, rh | ch, np.where(rh, rv, np.nan), np.where(ch, cv, np.nan)
    return est, rh | ch


def _median_offsets(values: np.ndarray, known: np.ndarray, sibs: np.ndarray):
    """For every sibling s and cell (i, j): median of (self - sibling) over the cells both
    measured in row i and column j, the cell itself left out; and how many such cells.

    `sibs` is (n_siblings, nb, ns). Each cell's candidates (its row, then its column)
    sit in one padded axis with NaN for non-candidates; sorting puts the NaN last,
    so the median is read at the count's middle, as np.median would compute it.
    All siblings go through in one pass (one sort), not one call per sibling.
    """
    _, nb, ns = sibs.shape
    both = known[None] & ~np.isnan(sibs)
    diff = np.where(both, values[None] - sibs, np.nan)  # (k, nb, ns)
    not_self_s = ~np.eye(ns, dtype=bool)  # [j, m]: m != j
    not_self_b = ~np.eye(nb, dtype=bool)
    row = np.where(both[:, :, None, :] & not_self_s, diff[:, :, None, :], np.nan)  # (k, nb, ns, ns)
    colT = np.where(both.transpose(0, 2, 1)[:, :, None, :] & not_self_b, diff.transpose(0, 2, 1)[:, :, None, :],
                    np.nan)  # (k, ns, nb, nb)
    cand = np.sort(np.concatenate([row, colT.transpose(0, 2, 1, 3)], axis=3), axis=3)
    count = (~np.isnan(cand)).sum(axis=3)
    lo = np.clip((count - 1) // 2, 0, None)[..., None]
    hi = np.clip(count // 2, 0, cand.shape[3] - 1)[..., None]
    a = np.take_along_axis(cand, lo, axis=3)[..., 0]
    b = np.take_along_axis(cand, hi, axis=3)[..., 0]
    med = np.where(count % 2 == 1, b, (a + b) / 2)
    return med, count


def sibling_estimates(values: np.ndarray, known: np.ndarray, siblings: list[np.ndarray], *, parts: bool = False):
    """`sibling_estimate` (tests/estimator/oracles.py) of every cell at once: (estimates, has-estimate mask).

    The mean over qualifying siblings is summed in sibling order, as np.mean
    does for a handful of values. parts=True also returns each sibling's own
    estimate, stacked (n_siblings, nb, ns), NaN where it does not qualify.
    """
    total = np.zeros(values.shape)
    count = np.zeros(values.shape, dtype=np.int64)
    if not siblings:
        est, has = np.full(values.shape, np.nan), count > 0
        return (est, has, np.empty((0, *values.shape))) if parts else (est, has)
    sibs = np.stack(siblings)
    med, n = _median_offsets(values, known, sibs)
    each = np.full(sibs.shape, np.nan)
    for s, (sib, m, k) in enumerate(zip(sibs, med, n)):
        ok = ~np.isnan(sib) & (k >= 2)
        total = np.where(ok, total + (sib + m), total)
        count += ok
        each[s] = np.where(ok, sib + m, np.nan)
    has = count > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        est = np.where(has, total / count, np.nan)
    return (est, has, each) if parts else (est, has)


def local_sibling_estimates(values: np.ndarray, siblings: list[np.ndarray], xb: np.ndarray, xs: np.ndarray):
    """Each sibling's estimate of every cell with a local offset: its value plus the difference
    (self - sibling) interpolated at the cell along its row and column (`line_estimates` of the
    difference surface). Stacked (n_siblings, nb, ns), NaN where it does not qualify.

    Why: the offset between two slices drifts (FP8 vs BF16 KV cache differ more at long
    kv_len); the median over a whole row and column (`sibling_estimates`) misses the drift.
    """
    if not siblings:
        return np.full((0, *values.shape), np.nan)
    sibs = np.stack(siblings)
    diff = values[None] - sibs
    est, has = line_estimates(diff, ~np.isnan(diff), xb, xs)  # all siblings in one pass
    return np.where(has & ~np.isnan(sibs), sibs + est, np.nan)


def median_estimates(candidates: np.ndarray):
    """Median over candidate estimates (n, nb, ns), NaN ignored: (estimates, has-estimate mask).

    Why: some tables are not noisy around one level but jump between two (MLA
    context: neighbouring cells ~20% apart in a pattern no sibling repeats). A
    mean of the candidates lands between the levels, away from both; the median
    follows the majority, which is what the median error rewards.
    """
    # np.nanmedian goes through masked arrays (most of the grid build's time with five
    # medians per slice): sort instead (NaN last) and read the middle of the finite values.
    count = (~np.isnan(candidates)).sum(axis=0)
    ordered = np.sort(candidates, axis=0)
    lo = np.take_along_axis(ordered, np.clip((count - 1) // 2, 0, None)[None], axis=0)[0]
    hi = np.take_along_axis(ordered, np.clip(count // 2, 0, max(candidates.shape[0] - 1, 0))[None], axis=0)[0]
    med = np.where(count == 0, np.nan, np.where(count % 2 == 1, hi, (lo + hi) / 2))
    return med, count > 0
