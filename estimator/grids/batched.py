"""The grid build's per-slice rule scoring (`rules.power_errors`, `rules.slice_estimates`)
for many slices at once: slices of one shape (and sibling count, powers) are stacked on a
leading axis and go through numpy together.

Why: an op holds hundreds of small slices (a few batch x a few sequence values), so the
per-slice Python and numpy call overhead, not the arithmetic, was most of the rule choice.
Every element sees the same operations in the same order as the per-slice functions,
so the results are bit-identical (tests/estimator/grids/test_batched.py).
"""

from __future__ import annotations

import numpy as np

from estimator.grids import interp


def _groups(keys) -> dict:
    """{group key: [positions]} in first-appearance order."""
    out: dict = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return out


def power_errors_many(slices) -> list[dict[tuple[str, float], np.ndarray]]:
    """`rules.power_errors(vals, xb, xs)` of each (vals, xb, xs) in `slices`, in order."""
    out: list = [None] * len(slices)
    for _, pos in _groups([s[0].shape for s in slices]).items():
        vals = np.stack([slices[i][0] for i in pos])
        xb = np.stack([slices[i][1] for i in pos])
        xs = np.stack([slices[i][2] for i in pos])
        k, nb, ns = vals.shape
        known = ~np.isnan(vals)
        rvs, _, rh = interp._line_brackets(np.repeat(xs, nb, axis=0), vals.reshape(-1, ns), known.reshape(-1, ns),
                                    interp.POWERS)
        vt, kt = vals.transpose(0, 2, 1), known.transpose(0, 2, 1)
        cvs, _, ch = interp._line_brackets(np.repeat(xb, ns, axis=0), vt.reshape(-1, nb), kt.reshape(-1, nb),
                                    interp.POWERS)
        rh = rh.reshape(k, nb, ns)
        ch = ch.reshape(k, ns, nb).transpose(0, 2, 1)
        for n, i in enumerate(pos):
            out[i] = {}
        for p, rv, cv in zip(interp.POWERS, rvs, cvs):
            rerr = np.abs(rv.reshape(k, nb, ns) - vals)
            cerr = np.abs(cv.reshape(k, ns, nb).transpose(0, 2, 1) - vals)
            for n, i in enumerate(pos):
                out[i]["seq", p] = rerr[n][known[n] & rh[n]]
                out[i]["batch", p] = cerr[n][known[n] & ch[n]]
    return out


def _median_offsets(values: np.ndarray, known: np.ndarray, sibs: np.ndarray):
    """`interp._median_offsets` of stacked slices: values, known (k, nb, ns), sibs (k, n_sib, nb, ns)."""
    _, _, nb, ns = sibs.shape
    both = known[:, None] & ~np.isnan(sibs)
    diff = np.where(both, values[:, None] - sibs, np.nan)  # (k, s, nb, ns)
    not_self_s = ~np.eye(ns, dtype=bool)
    not_self_b = ~np.eye(nb, dtype=bool)
    row = np.where(both[..., None, :] & not_self_s, diff[..., None, :], np.nan)  # (k, s, nb, ns, ns)
    bt, dt = np.swapaxes(both, -1, -2), np.swapaxes(diff, -1, -2)
    colT = np.where(bt[..., None, :] & not_self_b, dt[..., None, :], np.nan)  # (k, s, ns, nb, nb)
    cand = np.sort(np.concatenate([row, np.swapaxes(colT, -2, -3)], axis=-1), axis=-1)
    count = (~np.isnan(cand)).sum(axis=-1)
    lo = np.clip((count - 1) // 2, 0, None)[..., None]
    hi = np.clip(count // 2, 0, cand.shape[-1] - 1)[..., None]
    a = np.take_along_axis(cand, lo, axis=-1)[..., 0]
    b = np.take_along_axis(cand, hi, axis=-1)[..., 0]
    med = np.where(count % 2 == 1, b, (a + b) / 2)
    return med, count


def _sibling_estimates(values, known, sibs):
    """`interp.sibling_estimates(..., parts=True)` of stacked slices with sibs (k, n_sib, nb, ns), n_sib >= 1."""
    total = np.zeros(values.shape)
    count = np.zeros(values.shape, dtype=np.int64)
    med, n = _median_offsets(values, known, sibs)
    each = np.full(sibs.shape, np.nan)
    for s in range(sibs.shape[1]):
        sib, m, c = sibs[:, s], med[:, s], n[:, s]
        ok = ~np.isnan(sib) & (c >= 2)
        total = np.where(ok, total + (sib + m), total)
        count += ok
        each[:, s] = np.where(ok, sib + m, np.nan)
    has = count > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        est = np.where(has, total / count, np.nan)
    return est, has, each


def _median_estimates(candidates: np.ndarray) -> np.ndarray:
    """`interp.median_estimates(...)[0]` of stacked candidates (k, n, nb, ns)."""
    count = (~np.isnan(candidates)).sum(axis=1)
    ordered = np.sort(candidates, axis=1)
    lo = np.take_along_axis(ordered, np.clip((count - 1) // 2, 0, None)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(ordered, np.clip(count // 2, 0, max(candidates.shape[1] - 1, 0))[:, None], axis=1)[:, 0]
    return np.where(count == 0, np.nan, np.where(count % 2 == 1, hi, (lo + hi) / 2))


def slice_estimates_many(slices) -> list[dict[str, np.ndarray]]:
    """`rules.slice_estimates(vals, xb, xs, sibs, powers)` of each (vals, xb, xs, sibs, powers)
    in `slices`, in order. Slices without siblings go to the per-slice function."""
    from estimator.grids.rules import slice_estimates

    out: list = [None] * len(slices)
    keys = [(s[0].shape, len(s[3]), tuple(s[4])) for s in slices]
    for (_, n_sib, powers), pos in _groups(keys).items():
        if n_sib == 0:
            for i in pos:
                out[i] = slice_estimates(*slices[i])
            continue
        vals = np.stack([slices[i][0] for i in pos])
        xb = np.stack([slices[i][1] for i in pos])
        xs = np.stack([slices[i][2] for i in pos])
        sibs = np.stack([np.stack(slices[i][3]) for i in pos])  # (k, n_sib, nb, ns)
        known = ~np.isnan(vals)
        line, has_line, row, col = interp.line_estimates(vals, known, xb, xs, parts=True, powers=powers)
        sib, has_sib, each = _sibling_estimates(vals, known, sibs)
        diff = vals[:, None] - sibs
        lest, lhas = interp.line_estimates(diff, ~np.isnan(diff), xb, xs)
        local = np.where(lhas & ~np.isnan(sibs), sibs + lest, np.nan)
        r, c = row[:, None], col[:, None]
        med = _median_estimates(np.concatenate([r, c, each], axis=1))
        med_row = _median_estimates(np.concatenate([r, each], axis=1))
        med_col = _median_estimates(np.concatenate([c, each], axis=1))
        med_local = _median_estimates(np.concatenate([r, c, each, local], axis=1))
        med_local_row = _median_estimates(np.concatenate([r, local], axis=1))
        blend = 0.5 * (line + sib)
        for n, i in enumerate(pos):
            out[i] = {"line": line[n], "has_line": has_line[n], "sibling": sib[n], "has_sibling": has_sib[n],
                      "blend": blend[n], "median": med[n], "median_row": med_row[n], "median_col": med_col[n],
                      "median_local": med_local[n], "median_local_row": med_local_row[n]}
    return out


CHUNK_CELLS = 4_000_000  # (slices x rows x cells) entries per distance matrix: bounds the memory


def extrapolation_errors_many(slices) -> list[dict[str, np.ndarray]]:
    """The extrapolation-mode errors (`rules.extrapolation_errors`: its meaning; its reference
    `rules._extrapolation_errors_one_by_one`) of each (vals, xb, xs) in `slices`, in order.

    Dense per shape: every row of every slice is a candidate target (its last measured cell),
    every cell a candidate neighbour (unmeasured ones and the target itself at infinity), in
    row-major order as the per-slice function's measured cells, so the first minimum is the
    same cell and every value is the same."""
    out: list = [None] * len(slices)
    for (nb, ns), pos in _groups([s[0].shape for s in slices]).items():
        step = max(1, CHUNK_CELLS // max(1, nb * nb * ns))
        for at in range(0, len(pos), step):
            part = pos[at : at + step]
            vals = np.stack([slices[i][0] for i in part]).reshape(len(part), nb * ns)
            xb = np.stack([slices[i][1] for i in part])
            xs = np.stack([slices[i][2] for i in part])
            for i, errs in zip(part, _extrapolation_errors_dense(vals, xb, xs, nb, ns)):
                out[i] = errs
    return out


def _extrapolation_errors_dense(vals, xb, xs, nb: int, ns: int) -> list[dict[str, np.ndarray]]:
    """`extrapolation_errors_many` for k slices of one shape: vals (k, nb*ns) row-major, xb (k, nb),
    xs (k, ns)."""
    k = vals.shape[0]
    known = ~np.isnan(vals)
    kn = known.reshape(k, nb, ns)
    last = np.where(kn, np.arange(ns), -1).max(axis=2)  # (k, nb): each row's last measured column
    lastc = np.maximum(last, 0)
    col_count = np.take_along_axis(kn.sum(axis=1), lastc, axis=1)  # measured cells in that column
    valid = (kn.sum(axis=2) >= 2) & (col_count >= 2)
    a = np.repeat(np.arange(nb), ns)  # each cell's row and column (row-major)
    b = np.tile(np.arange(ns), nb)
    rows = np.arange(nb)
    own = (a[None, None, :] == rows[None, :, None]) & (b[None, None, :] == lastc[:, :, None])  # (k, nb, cells)
    cand = known[:, None, :] & ~own
    db = np.abs(xb[:, a][:, None, :] - xb[:, :, None])  # |xb[a] - xb[i]|
    xs_last = np.take_along_axis(xs, lastc, axis=1)
    ds = np.abs(xs[:, b][:, None, :] - xs_last[:, :, None])  # |xs[b] - xs[j]|
    kk = np.argmin(np.where(cand, db * 2.0 + ds, np.inf), axis=2)
    same_row = a[None, None, :] == rows[None, :, None]
    same_col = b[None, None, :] == lastc[:, :, None]
    drow = np.where(cand & same_row, ds, np.inf)
    dcol = np.where(cand & same_col, db, np.inf)
    kr, kc = np.argmin(drow, axis=2), np.argmin(dcol, axis=2)
    ok = (np.isfinite(np.take_along_axis(drow, kr[..., None], axis=2)[..., 0])
          & np.isfinite(np.take_along_axis(dcol, kc[..., None], axis=2)[..., 0]))
    v = vals.reshape(k, nb, ns)
    s_ix = np.arange(k)[:, None]
    target = v[s_ix, rows[None, :], lastc]
    held = v[s_ix, a[kk], b[kk]]
    r, c = v[s_ix, a[kr], b[kr]], v[s_ix, a[kc], b[kc]]
    corner = v[s_ix, a[kc], b[kr]]
    errs = {"hold": np.abs(held - target),
            "cross": np.abs(np.where(ok, 0.5 * (r + c), held) - target),
            "additive": np.abs(np.where(ok & ~np.isnan(corner), r + c - corner, held) - target)}
    return [{m: e[n][valid[n]] for m, e in errs.items()} for n in range(k)]
