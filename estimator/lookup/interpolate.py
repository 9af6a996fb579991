"""Lookups in a group's grids: interpolate log2(latency/SOL) over heads, prefix, batch, sequence.

Two implementations of the same rule: `lookup_many` (numpy, for
`estimate_many`) and `lookup_one` (plain Python floats, for one scalar
`estimate` in a few microseconds). Tests check they agree.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import NamedTuple

import numpy as np

from estimator.grids import interp
from estimator.lookup.grids import GroupGrids

_LOG2 = math.log2


def lookup_many(grp: GroupGrids, heads, prefix, batch, seq):
    """(log2 ratio, source code) per point; NaN ratio where no slice covers the point."""
    if grp.stacked is not None:
        return _lookup_stacked(grp.stacked, heads, prefix, batch, seq)
    return _lookup_by_slice(grp, heads, prefix, batch, seq)


def _lookup_stacked(st, heads, prefix, batch, seq):
    """One pass over all points: multilinear in (log2 heads, prefix, log2 batch, log2 seq).

    Works in the precision of `batch` (float32 from estimate_many, else float64).
    """
    batch = np.asarray(batch)
    dt = batch.dtype if batch.dtype in (np.float32, np.float64) else np.float64
    hi0, hi1, hw, hout = interp.bracket(st.xh.astype(dt), np.log2(np.asarray(heads, dtype=dt)))
    pi0, pi1, pw, pout = interp.bracket(st.xp.astype(dt), np.asarray(prefix, dtype=dt))
    bi0, bi1, bw, bout = interp.bracket(st.xb.astype(dt), np.log2(np.asarray(batch, dtype=dt)),
                                        power=st.batch_power)
    si0, si1, sw, sout = interp.bracket(st.xs.astype(dt), np.log2(np.asarray(seq, dtype=dt)), st.trend,
                                        st.seq_power)
    nh, npf, nb, ns = st.ratio.shape
    flat_r = st.ratio.reshape(-1).astype(dt)
    flat_s = st.source.reshape(-1)
    n = hw.shape[0]
    acc = np.zeros(n, dtype=dt)
    code = np.zeros(n, dtype=np.int8)
    # Most queries sit exactly on a measured heads / prefix value: those need the 4 (batch, seq)
    # corners of one slice, the rest all 16 corners.
    on_hp = ((hw == 0) | (hw == 1)) & ((pw == 0) | (pw == 1))
    simple = np.flatnonzero(on_hp)
    general = np.flatnonzero(~on_hp)
    if simple.size:
        hs = np.where(hw[simple] == 1, hi1[simple], hi0[simple])
        ps = np.where(pw[simple] == 1, pi1[simple], pi0[simple])
        _corners(acc, code, simple, [((hs * npf + ps) * nb, None)], bi0[simple], bi1[simple], bw[simple],
                 si0[simple], si1[simple], sw[simple], nb, ns, flat_r, flat_s, whole=simple.size == n)
    if general.size:
        g = general
        bases = []
        for hidx, hwt in ((hi0[g], 1.0 - hw[g]), (hi1[g], hw[g])):
            for pidx, pwt in ((pi0[g], 1.0 - pw[g]), (pi1[g], pw[g])):
                bases.append(((hidx * npf + pidx) * nb, hwt * pwt))
        _corners(acc, code, g, bases, bi0[g], bi1[g], bw[g], si0[g], si1[g], sw[g], nb, ns, flat_r, flat_s,
                 whole=g.size == n)
    exact = ~(hout | pout | bout | sout)
    for w in (hw, pw, bw, sw):
        exact &= (w == 0) | (w == 1)
    rows = np.flatnonzero(exact)
    if rows.size:  # exact hits of a measured cell answer with the measurement, not the pooled surface
        sel = [np.where(w[rows] == 1, i1[rows], i0[rows])
               for i0, i1, w in ((hi0, hi1, hw), (pi0, pi1, pw), (bi0, bi1, bw), (si0, si1, sw))]
        meas = st.measured.reshape(-1)[((sel[0] * npf + sel[1]) * nb + sel[2]) * ns + sel[3]]
        acc[rows] = np.where(np.isnan(meas), acc[rows], meas)
    code = np.where((code == interp.MEASURED) & ~exact, interp.INTERPOLATED, code)
    code = np.where(hout | pout | bout | sout, np.maximum(code, interp.EXTRAPOLATED), code)
    return acc, code.astype(np.int8)


def _corners(acc, code, rows, bases, bi0, bi1, bw, si0, si1, sw, nb, ns, flat_r, flat_s, *, whole: bool):
    """Accumulate the (batch, seq) corners of each base slice offset into acc/code at `rows`."""
    part = np.zeros(rows.size, dtype=acc.dtype)
    pcode = np.zeros(rows.size, dtype=np.int8)
    for base, wbase in bases:
        for bidx, bwt in ((bi0, 1.0 - bw), (bi1, bw)):
            row = (base + bidx) * ns
            wb = bwt if wbase is None else wbase * bwt
            for sidx, swt in ((si0, 1.0 - sw), (si1, sw)):
                cell = row + sidx
                w = wb * swt
                part += w * flat_r[cell]
                c = flat_s[cell]
                c *= w != 0
                np.maximum(pcode, c, out=pcode)
    if whole:
        acc += part
        np.maximum(code, pcode, out=code)
    else:
        acc[rows] += part
        code[rows] = np.maximum(code[rows], pcode)


def _lookup_by_slice(grp: GroupGrids, heads, prefix, batch, seq):
    """Slice by slice, for groups whose slices have different axes or missing (heads, prefix)."""
    heads = np.asarray(heads, dtype=np.float64)
    n = heads.shape[0]
    hi0, hi1, hw, hout = interp.bracket(np.log2(grp.heads), np.log2(heads))
    pi0, pi1, pw, pout = interp.bracket(grp.prefixes.astype(np.float64), np.asarray(prefix, dtype=np.float64))
    lb = np.log2(np.asarray(batch, dtype=np.float64))
    ls = np.log2(np.asarray(seq, dtype=np.float64))
    acc = np.zeros(n)
    wsum = np.zeros(n)
    code = np.full(n, interp.MEASURED, dtype=np.int8)
    exact = (~hout) & (~pout) & ((hw == 0) | (hw == 1)) & ((pw == 0) | (pw == 1))
    outside = hout | pout
    npref = grp.prefixes.size
    for hidx, hwt in ((hi0, 1.0 - hw), (hi1, hw)):
        for pidx, pwt in ((pi0, 1.0 - pw), (pi1, pw)):
            w = hwt * pwt
            combo = hidx * npref + pidx
            live = w > 0
            for c in np.unique(combo[live]):
                m = live & (combo == c)
                sg = grp.slices.get((int(grp.heads[c // npref]), int(grp.prefixes[c % npref])))
                if sg is None:
                    continue
                bi0, bi1, bw, bout = interp.bracket(sg.xb, lb[m], power=sg.batch_power)
                si0, si1, sw, sout = interp.bracket(sg.xs, ls[m], sg.trend, sg.seq_power)
                val = interp.bilinear(sg.ratio, bi0, bi1, bw, si0, si1, sw)
                if sg.measured is not None:
                    on = (w[m] == 1) & ~bout & ~sout & ((bw == 0) | (bw == 1)) & ((sw == 0) | (sw == 1))
                    meas = sg.measured[np.where(bw == 1, bi1, bi0), np.where(sw == 1, si1, si0)]
                    val = np.where(on & ~np.isnan(meas), meas, val)
                acc[m] += w[m] * val
                wsum[m] += w[m]
                corners = np.stack([
                    np.where((1 - bw) * (1 - sw) != 0, sg.source[bi0, si0], 0),
                    np.where((1 - bw) * sw != 0, sg.source[bi0, si1], 0),
                    np.where(bw * (1 - sw) != 0, sg.source[bi1, si0], 0),
                    np.where(bw * sw != 0, sg.source[bi1, si1], 0),
                ])
                code[m] = np.maximum(code[m], corners.max(axis=0))
                outside[m] |= bout | sout
                exact[m] &= (~bout) & (~sout) & ((bw == 0) | (bw == 1)) & ((sw == 0) | (sw == 1))
    ratio = np.where(wsum > 0, acc / np.where(wsum > 0, wsum, 1.0), np.nan)
    code = np.where((code == interp.MEASURED) & ~exact, interp.INTERPOLATED, code)
    code = np.where(outside, np.maximum(code, interp.EXTRAPOLATED), code)
    return ratio, code.astype(np.int8)


def _power_w(a0: float, a1: float, q: float, power: float) -> float:
    """Scalar twin of interp.power_weight for an inside point."""
    b0 = 2.0 ** (power * a0)
    return (2.0 ** (power * q) - b0) / (2.0 ** (power * a1) - b0)


def _bracket1(axis: list[float], q: float, trend: float = 0.0, power: float = 0.0):
    n = len(axis)
    if n == 1:
        return 0, 0, 0.0, q != axis[0]
    i1 = min(max(bisect_left(axis, q), 1), n - 1)
    a0, a1 = axis[i1 - 1], axis[i1]
    w = (q - a0) / (a1 - a0)
    out = q < axis[0] or q > axis[-1]
    if w > 1.0:
        w = 1.0 + trend * (w - 1.0)
    elif w < 0.0:
        w = trend * w
    elif power and 0.0 < w < 1.0:
        w = _power_w(a0, a1, q, power)
    return i1 - 1, i1, w, out


def _axis_py(axis: list[float], q: float, trend: float = 0.0, power: float = 0.0):
    """Inline-friendly bracket on a plain list: (i0, i1, w, outside)."""
    n = len(axis)
    if n == 1:
        return 0, 0, 0.0, q != axis[0]
    i1 = bisect_left(axis, q)
    if i1 < 1:
        i1 = 1
    elif i1 > n - 1:
        i1 = n - 1
    a0 = axis[i1 - 1]
    w = (q - a0) / (axis[i1] - a0)
    if w > 1.0:
        return i1 - 1, i1, 1.0 + trend * (w - 1.0), True
    if w < 0.0:
        return i1 - 1, i1, trend * w, True
    if power and w > 0.0 and w < 1.0:
        return i1 - 1, i1, _power_w(a0, axis[i1], q, power), False
    return i1 - 1, i1, w, False


class StackedCells(NamedTuple):
    """The corners one scalar lookup used, expanded into neighbours only when asked for."""

    py: tuple
    h: tuple
    p: tuple
    b: tuple
    s: tuple

    def expand(self) -> list[tuple]:
        """(num_heads, prefix, batch, seq, weight, source code) of every corner with weight != 0.

        Weights are clipped to [0, 1]: past the last sequence value they are the boundary cells'
        (the answer continues the slope from there), never negative."""
        xh, xp, xb, xs, ratio, source, trend, hv, pv, bv, sv = self.py[:11]
        out = []
        sw = min(max(self.s[2], 0.0), 1.0)
        for hidx, hwt in ((self.h[0], 1.0 - self.h[2]), (self.h[1], self.h[2])):
            for pidx, pwt in ((self.p[0], 1.0 - self.p[2]), (self.p[1], self.p[2])):
                for bidx, bwt in ((self.b[0], 1.0 - self.b[2]), (self.b[1], self.b[2])):
                    for sidx, swt in ((self.s[0], 1.0 - sw), (self.s[1], sw)):
                        w = hwt * pwt * bwt * swt
                        if w != 0.0:
                            out.append((hv[hidx], pv[pidx], bv[bidx], sv[sidx], w,
                                        source[hidx][pidx][bidx][sidx]))
        return out


def expand_cells(cells) -> list[tuple]:
    """Neighbour tuples from what `lookup_one` returned (a list already, or StackedCells)."""
    return cells.expand() if isinstance(cells, StackedCells) else list(cells)


def _stacked_py(st) -> tuple:
    return (st.xh.tolist(), st.xp.tolist(), st.xb.tolist(), st.xs.tolist(), st.ratio.tolist(), st.source.tolist(),
            st.trend, [int(round(2**x)) for x in st.xh.tolist()], [int(x) for x in st.xp.tolist()],
            [int(round(2**x)) for x in st.xb.tolist()], [int(round(2**x)) for x in st.xs.tolist()],
            st.measured.tolist(), st.batch_power, st.seq_power)


def lookup_one(grp: GroupGrids, heads: int, prefix: int, batch: int, seq: int):
    """Scalar twin of `lookup_many`: (log2 ratio, source code, neighbours).

    neighbours: list of (num_heads, prefix, batch, seq, weight, source code).
    """
    st = grp.stacked
    if st is not None:
        py = grp.cache.get("stacked_py")
        if py is None:
            py = grp.cache["stacked_py"] = _stacked_py(st)
        xh, xp, xb, xs, ratio, source, trend, hv, pv, bv, sv, measured, bpow, spow = py
        hi0, hi1, hw, hout = _axis_py(xh, _LOG2(heads))
        pi0, pi1, pw, pout = _axis_py(xp, float(prefix))
        bi0, bi1, bw, bout = _axis_py(xb, _LOG2(batch), 0.0, bpow)
        si0, si1, sw, sout = _axis_py(xs, _LOG2(seq), trend, spow)
        acc = 0.0
        code = interp.MEASURED
        used = 0
        last = None
        for hidx, hwt in ((hi0, 1.0 - hw), (hi1, hw)):
            if hwt == 0.0:
                continue
            rh, sh = ratio[hidx], source[hidx]
            for pidx, pwt in ((pi0, 1.0 - pw), (pi1, pw)):
                w1 = hwt * pwt
                if w1 == 0.0:
                    continue
                rp, sp = rh[pidx], sh[pidx]
                for bidx, bwt in ((bi0, 1.0 - bw), (bi1, bw)):
                    w2 = w1 * bwt
                    if w2 == 0.0:
                        continue
                    rb, sb = rp[bidx], sp[bidx]
                    for sidx, swt in ((si0, 1.0 - sw), (si1, sw)):
                        cw = w2 * swt
                        if cw == 0.0:
                            continue
                        acc += cw * rb[sidx]
                        c = sb[sidx]
                        if c > code:
                            code = c
                        used += 1
                        last = (hidx, pidx, bidx, sidx, cw)
        outside = hout or pout or bout or sout
        if used == 1 and not outside and last[4] == 1.0:
            m = measured[last[0]][last[1]][last[2]][last[3]]
            if m == m:  # a measured cell: answer with its measurement
                acc = m
        if code == interp.MEASURED and (outside or used != 1):
            code = interp.INTERPOLATED
        if outside and code < interp.EXTRAPOLATED:
            code = interp.EXTRAPOLATED
        return acc, code, StackedCells(py, (hi0, hi1, hw), (pi0, pi1, pw), (bi0, bi1, bw), (si0, si1, sw))
    cache = grp.cache.get("py_axes")
    if cache is None:
        cache = grp.cache["py_axes"] = _py_axes(grp)
    hi0, hi1, hw, hout = _bracket1(cache["heads"], _LOG2(heads))
    pi0, pi1, pw, pout = _bracket1(cache["prefixes"], float(prefix))
    lb, ls = _LOG2(batch), _LOG2(seq)
    acc = wsum = 0.0
    code = interp.MEASURED
    outside = hout or pout
    exact = not outside and hw in (0.0, 1.0) and pw in (0.0, 1.0)
    neighbours = []
    for hidx, hwt in ((hi0, 1.0 - hw), (hi1, hw)):
        if hwt <= 0:
            continue
        for pidx, pwt in ((pi0, 1.0 - pw), (pi1, pw)):
            w = hwt * pwt
            if w <= 0:
                continue
            h, p = grp.heads[hidx], grp.prefixes[pidx]
            py = cache["slices"].get((int(h), int(p)))
            if py is None:
                continue
            xb, xs, ratio, source, bvals, svals, trend, bpow, spow = py
            bi0, bi1, bw, bout = _bracket1(xb, lb, 0.0, bpow)
            si0, si1, sw, sout = _bracket1(xs, ls, trend, spow)
            outside = outside or bout or sout
            exact = exact and not (bout or sout) and bw in (0.0, 1.0) and sw in (0.0, 1.0)
            swc = min(max(sw, 0.0), 1.0)  # reported weights: the boundary's past the last sequence value
            for bi, bwt in ((bi0, 1.0 - bw), (bi1, bw)):
                if bwt <= 0:
                    continue
                row, srow = ratio[bi], source[bi]
                for si, swt, rwt in ((si0, 1.0 - sw, 1.0 - swc), (si1, sw, swc)):
                    cw = w * bwt * swt
                    if cw == 0:
                        continue
                    acc += cw * row[si]
                    c = srow[si]
                    code = c if c > code else code
                    if rwt > 0:
                        neighbours.append((int(h), int(p), bvals[bi], svals[si], w * bwt * rwt, c))
                    last_cell = (int(h), int(p), bi, si)
            wsum += w
    if wsum <= 0:
        return math.nan, interp.SOL, []
    if exact and len(neighbours) == 1 and neighbours[0][4] == 1.0:
        sg = grp.slices[last_cell[:2]]
        if sg.measured is not None and not math.isnan(sg.measured[last_cell[2], last_cell[3]]):
            acc = float(sg.measured[last_cell[2], last_cell[3]]) * wsum
    if code == interp.MEASURED and not exact:
        code = interp.INTERPOLATED
    if outside and code < interp.EXTRAPOLATED:
        code = interp.EXTRAPOLATED
    return acc / wsum, code, neighbours


def _py_axes(grp: GroupGrids) -> dict:
    """Plain-Python copies of a group's arrays (list indexing beats numpy for scalars)."""
    return {
        "heads": [math.log2(h) for h in grp.heads.tolist()],
        "prefixes": [float(p) for p in grp.prefixes.tolist()],
        "slices": {
            k: (sg.xb.tolist(), sg.xs.tolist(), sg.ratio.tolist(), sg.source.tolist(),
                sg.batch.tolist(), sg.seq.tolist(), sg.trend, sg.batch_power, sg.seq_power)
            for k, sg in grp.slices.items()
        },
    }


def nearest_measured(grp: GroupGrids, heads: int, prefix: int, batch: int, seq: int):
    """The measured cell nearest in log2 space: (latency_ms, (heads, prefix, batch, seq))."""
    best = None
    for (h, p), sg in grp.slices.items():
        mi, mj = np.nonzero(sg.source == interp.MEASURED)
        if mi.size == 0:
            continue
        d = ((sg.xb[mi] - math.log2(batch)) ** 2 + (sg.xs[mj] - math.log2(seq)) ** 2
             + (math.log2(h) - math.log2(heads)) ** 2 + (math.log2(p + 1) - math.log2(prefix + 1)) ** 2)
        k = int(np.argmin(d))
        if best is None or d[k] < best[0]:
            best = (float(d[k]), float(sg.latency[mi[k], mj[k]]), (h, p, int(sg.batch[mi[k]]), int(sg.seq[mj[k]])))
    if best is None:
        raise KeyError(f"no measured cell in group {grp.key}")
    return best[1], best[2]
