"""Rules of the grid build, each chosen per op by held-out error: hole filling, axis powers,
sequence trend, affine extension and sibling pooling.
"""

from __future__ import annotations


import numpy as np

from estimator.grids import interp
from estimator.slices import SLICE_KEYS


TREND_CHOICES = (0.0, 0.25, 0.5, 0.75, 1.0)
LOO_CELLS = 48  # measured cells per slice scored when choosing the hole-filling rule


def _aligned(batch, seq, sibling) -> np.ndarray:
    """A sibling slice's measured log-ratios on this slice's (batch, seq) axes; NaN elsewhere."""
    sb, ss, sv = sibling
    if (sb is batch or np.array_equal(sb, batch)) and (ss is seq or np.array_equal(ss, seq)):
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
    i, j = i[ok], j[ok]
    v = vals[i, j]
    return {r: np.abs(est[r][i, j] - v) for r in FILL_RULES}


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


def extrapolation_errors(vals, xb, xs) -> dict[str, np.ndarray]:
    """Leave-one-out errors (log2) of each mode of `interp.extrapolate_holes` (interp.EXTRAPOLATION_MODES)
    on the cells they stand for: each row's last measured cell (the cells past it are the slice's
    extrapolated holes), predicted from the slice's other measured cells, where the cell's
    column holds another measured cell. A mode that cannot answer a cell (no corner for
    'additive') scores the cell as 'hold' does, as `extrapolate_holes` would fill it.

    Computed by `batched.extrapolation_errors_many` (every slice of one shape at once, the same
    values bit for bit as the one-cell-at-a-time reference below, which the tests compare)."""
    from estimator.grids.batched import extrapolation_errors_many

    return extrapolation_errors_many([(vals, xb, xs)])[0]


def _extrapolation_errors_one_by_one(vals, xb, xs) -> dict[str, np.ndarray]:
    """The reference of `extrapolation_errors`: one left-out cell at a time (tests compare them)."""
    known = ~np.isnan(vals)
    ki, kj = np.nonzero(known)
    out: dict[str, list] = {m: [] for m in interp.EXTRAPOLATION_MODES}
    for i in range(vals.shape[0]):
        cols = np.flatnonzero(known[i])
        if cols.size < 2:
            continue
        j = cols[-1]
        if known[:, j].sum() < 2:
            continue
        keep = ~((ki == i) & (kj == j))
        a, b = ki[keep], kj[keep]
        d = np.abs(xb[a] - xb[i]) * 2.0 + np.abs(xs[b] - xs[j])
        k = int(np.argmin(d))
        held = vals[a[k], b[k]]
        out["hold"].append(abs(held - vals[i, j]))
        masked = vals.copy()
        masked[i, j] = np.nan
        for mode in interp.EXTRAPOLATION_MODES[1:]:
            ok, val = interp.row_column_fill(masked, a, b, np.array([i]), np.array([j]), xb, xs, mode)
            out[mode].append(abs((val[0] if ok[0] else held) - vals[i, j]))
    return {m: np.asarray(v) for m, v in out.items()}


def choose_extrapolation(errors: list[dict[str, np.ndarray]]) -> str:
    """The mode of `interp.extrapolate_holes` for an op (`extrapolation_errors`, the op's slices
    together): of the modes whose mean and median leave-one-out errors are both below
    'hold''s, the one with the lowest mean; else 'hold' (also with fewer than 5 scored
    cells). Chosen on the fit data only.

    Why per op: on smooth tables the column's change carries over ('additive'; vLLM DSA
    context 0.77% mean against 8.9% holding the row's last cell), on a noisy one three
    noisy cells add up and the mean of two wins (TensorRT-LLM MLA context: additive 21.2,
    cross 14.3, hold 17.1, log2 x 100)."""
    errs = {m: np.concatenate([e[m] for e in errors]) if errors else np.empty(0) for m in interp.EXTRAPOLATION_MODES}
    if errs["hold"].size < 5:
        return "hold"
    base_mean, base_median = float(np.mean(errs["hold"])), float(np.median(errs["hold"]))
    better = [m for m in interp.EXTRAPOLATION_MODES[1:]
              if float(np.mean(errs[m])) < base_mean and float(np.median(errs[m])) < base_median]
    return min(better, key=lambda m: float(np.mean(errs[m]))) if better else "hold"


def fill_slice(vals, batch, seq, est, rule: str, extrapolation: str = "hold"):
    """Fill one slice's holes from its `slice_estimates`; returns (filled log-ratios, source codes).

    Holes inside the slice's own lines use `rule` (`interpolated`); holes only
    siblings cover are `transferred`; the rest are `extrapolated` by `interp.extrapolate_holes`
    in mode `extrapolation` (hold the nearest cell, or fill from the row and the column).
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
        out, src = interp.extrapolate_holes(out, src, xb, xs, mode=extrapolation)
    return out, src


def _last_column_errors(slices) -> dict:
    """Errors (log2) of predicting each slice's last measured column from the two before it, per
    rule: a ratio trend t in TREND_CHOICES, or 'affine' (latency affine in the calibrated SOL).

    slices: (xs, surface, measured, sol) with sol the calibrated SOL (ms) of the last three
    columns (nb, 3), or None where unknown (then only the trends are scored).
    Every prediction is per batch row, so the rows of all slices go through numpy together
    (slice by slice, row by row: the order, and the values, of a loop over the slices).
    """
    errs: dict = {t: np.empty(0) for t in (*TREND_CHOICES, "affine")}
    use = [s for s in slices if s[0].size >= 4]
    if not use:
        return errs
    step = np.concatenate([np.full(f.shape[0], (xs[-1] - xs[-2]) / (xs[-2] - xs[-3])) for xs, f, _, _ in use])
    last2 = np.concatenate([f[:, -2] for _, f, _, _ in use])
    slope = np.concatenate([f[:, -2] - f[:, -3] for _, f, _, _ in use])
    target = np.concatenate([m[:, -1] for _, _, m, _ in use])
    ok = ~np.isnan(target)
    for t in TREND_CHOICES:
        errs[t] = np.abs(last2[ok] + t * slope[ok] * step[ok] - target[ok])
    with_sol = [s for s in use if s[3] is not None]
    if with_sol:
        f3 = np.concatenate([f[:, -3:-1] for _, f, _, _ in with_sol])
        sol3 = np.concatenate([s3 for _, _, _, s3 in with_sol])
        pred = affine_extension(f3, sol3[:, :2], sol3[:, 2:])[:, 0]
        t_ok = np.concatenate([~np.isnan(m[:, -1]) for _, _, m, _ in with_sol])
        t_m = np.concatenate([m[:, -1] for _, _, m, _ in with_sol])
        errs["affine"] = np.abs(pred[t_ok] - t_m[t_ok])
    return errs


def choose_seq_trend(slices) -> float:
    """Damping of the log-ratio slope beyond the last sequence value, chosen by measurement:
    predict each slice's last measured column from the two before it, keep the best.
    slices: (xs, surface, measured[, sol]) per slice."""
    errs = _last_column_errors([(*s[:3], None) for s in slices])
    if not errs[0.0].size:
        return 0.0
    return min(TREND_CHOICES, key=lambda t: (float(np.mean(errs[t])), t))


def choose_extension(slices, trend: float) -> bool:
    """Extend affinely in the SOL (`affine_extension`) rather than along the ratio trend: only if
    that predicts the slices' last measured columns better (same scoring as `choose_seq_trend`)."""
    errs = _last_column_errors(slices)
    return bool(errs["affine"].size) and float(np.mean(errs["affine"])) < float(np.mean(errs[trend]))


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


def pool_siblings(key, raw, filled_by_key, siblings, aligned=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean of a slice's filled log-ratios and those of its same-heads siblings (other kv dtype,
    other gemm type), each shifted by the median offset on the cells both measured; and the
    own surface's share of that mean per cell (d mean / d own: 1 where nothing is pooled).

    Near-duplicate slices measure nearly the same thing with independent noise;
    their mean is a less noisy surface to interpolate on. The share gives the pooled
    mean of another own surface without pooling again (`_hole_blend` in build.py).
    """
    pos = SLICE_KEYS.index("num_heads")
    batch, seq, vals = raw[key]
    own = filled_by_key[key][0]
    ests = [own]
    own_terms = np.ones(own.shape)
    for o in siblings[key]:
        if o[pos] != key[pos]:
            continue
        other = _aligned(batch, seq, (raw[o][0], raw[o][1], filled_by_key[o][0]))
        measured = aligned[key, o] if aligned is not None else _aligned(batch, seq, raw[o])
        common = ~np.isnan(vals) & ~np.isnan(measured)
        if common.sum() < 3:
            continue
        offset = float(np.median((vals - measured)[common]))
        missing = np.isnan(other)
        ests.append(np.where(missing, own, other + offset))
        own_terms += missing
    if len(ests) == 1:
        return own, own_terms
    return np.mean(ests, axis=0), own_terms / len(ests)


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


def fill_values(vals, est, rule: str) -> np.ndarray:
    """The value `fill_slice` gives a cell inside the slice's own lines under `rule`, for every
    cell, measured ones included (there it is a leave-one-out estimate: no estimate uses the cell)."""
    if rule == "line":
        return est["line"]
    return np.where(est["has_sibling"] & ~np.isnan(est[rule]), est[rule], est["line"])


def hole_blend_errors(vals, est, own_loo, pooled_loo) -> tuple[np.ndarray, np.ndarray]:
    """Signed leave-one-out errors (log2) of the op's fill rule (`fill_values`) and of the
    sibling-pooled mean (of the leave-one-out own surface) on the cells
    `fill_rule_errors` scores. The pooled mean's sibling offsets still include the cell
    (a median over a row and column of common cells; one cell barely moves it)."""
    cells = np.argwhere(~np.isnan(vals))
    if cells.shape[0] > LOO_CELLS:
        cells = cells[np.linspace(0, cells.shape[0] - 1, LOO_CELLS).astype(int)]
    i, j = cells[:, 0], cells[:, 1]
    ok = est["has_line"][i, j] & est["has_sibling"][i, j] & ~np.isnan(own_loo[i, j]) & ~np.isnan(pooled_loo[i, j])
    v = vals[i, j][ok]
    return own_loo[i, j][ok] - v, pooled_loo[i, j][ok] - v


def choose_hole_blend(errors: list[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """Weight of the fill rule's value in the hole blend of a pooling op (the pooled mean gets
    1 - weight), or None to keep the pooled mean at its interpolated holes.

    The two candidates are weighted by the inverse of their mean squared leave-one-out
    error (`hole_blend_errors`, the op's slices together); the blend is kept only if its
    own mean absolute leave-one-out error is below both candidates' (at least 5 cells).
    Why: where a table jumps between levels (MLA context), the fill rule follows the
    slice's own batch and sequence lines and the pooled mean follows the siblings; their
    errors are about as large and partly independent, so their weighted mean is closer
    on average than either. Where the pooled mean is clearly better (DSA context) the
    blend loses to it and is not used.
    """
    if not errors:
        return None
    own = np.concatenate([e[0] for e in errors])
    pool = np.concatenate([e[1] for e in errors])
    if own.size < 5:
        return None
    inv_own = 1.0 / max(float(np.mean(own**2)), 1e-12)
    inv_pool = 1.0 / max(float(np.mean(pool**2)), 1e-12)
    w = inv_own / (inv_own + inv_pool)
    blend = float(np.mean(np.abs(w * own + (1 - w) * pool)))
    return w if blend < min(float(np.mean(np.abs(own))), float(np.mean(np.abs(pool)))) else None
