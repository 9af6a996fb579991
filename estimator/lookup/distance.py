"""Distance of a query to the nearest measured cell of its group (octaves, Chebyshev), the
input of the interval buckets; scalar and vectorised forms agree.
"""

from __future__ import annotations

import math
from bisect import bisect_left

import numpy as np

from estimator.lookup.grids import GroupGrids
from estimator.lookup.intervals import BUCKETS, _LOG2


# ---- distance to measured data --------------------------------------------------------------

def _cell_coords(st) -> list[np.ndarray]:
    return [st.xh, np.log2(1.0 + st.xp), st.xb, st.xs]


def distance_field(grp: GroupGrids) -> np.ndarray | None:
    """Per grid cell of a stacked group: L-inf octave distance to the nearest measured cell
    (0 on measured cells; inf when the group has none). None for unstacked groups."""
    st = grp.stacked
    if st is None:
        return None
    cached = grp.cache.get("interval_dist")
    if cached is not None:
        return cached
    axes = _cell_coords(st)
    mesh = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], axis=1)
    meas = ~np.isnan(st.measured.ravel())
    field = np.full(mesh.shape[0], np.inf)
    if meas.any():  # nearest measured cell in the Chebyshev (L-inf) metric, by k-d tree
        from scipy.spatial import cKDTree

        field = cKDTree(mesh[meas]).query(mesh, k=1, p=np.inf)[0]
    field = field.reshape(st.measured.shape)
    grp.cache["interval_dist"] = field
    mids = [_mids(a).tolist() for a in axes]  # as distance_many
    grp.cache["interval_dist_py"] = ([a.tolist() for a in axes], mids, field.tolist(), {})
    return field


def _nearest_py(axis: list[float], mids: list[float], q: float) -> tuple[int, float]:
    """Nearest axis value (ties to the lower one) via the midpoints between values."""
    i = bisect_left(mids, q)
    d = q - axis[i]
    return i, (d if d >= 0 else -d)


def distance_one(grp: GroupGrids | None, heads: float, prefix: float, batch: float, seq: float) -> float:
    """Scalar twin of `distance_many` (plain Python on precomputed lists; heads/prefix memoised;
    the nearest-value search inlined: this runs on every scalar estimate)."""
    if grp is None:
        return math.inf
    py = grp.cache.get("interval_dist_py")
    if py is None:
        if distance_field(grp) is None:
            return math.inf
        py = grp.cache["interval_dist_py"]
    (ah, ap, ab, as_), (mh, mp, mb, ms), field, hp_memo = py
    hp = hp_memo.get((heads, prefix))
    if hp is None:
        ih, dh = _nearest_py(ah, mh, math.log2(heads))
        ip, dp = _nearest_py(ap, mp, math.log2(1.0 + prefix))
        hp = hp_memo[(heads, prefix)] = (field[ih][ip], dh if dh > dp else dp)
    rows, d = hp
    q = _LOG2(batch)
    ib = bisect_left(mb, q)
    x = q - ab[ib]
    if x < 0:
        x = -x
    if x > d:
        d = x
    q = _LOG2(seq)
    i = bisect_left(ms, q)
    x = q - as_[i]
    if x < 0:
        x = -x
    if x > d:
        d = x
    return d + rows[ib][i]


TABLE_LIMIT = 1 << 17  # integer queries up to this use per-axis lookup tables (searchsorted is the cost)


def _axis_nearest(grp: GroupGrids, k: int, axis: np.ndarray, q: np.ndarray, offset: float):
    """(nearest index, |distance| in octaves) of log2(q + offset) on `axis`, ties to the lower value.

    Integer queries (estimate_many's columns are validated integers) up to TABLE_LIMIT gather from a
    per-group table built once; others bisect. Both work in float64 like the scalar twin."""
    mids = _mids(axis)
    qmax = float(q.max()) if q.size else 0.0
    if 0 <= qmax <= TABLE_LIMIT and float(q.min()) >= 0:
        tables = grp.cache.setdefault("interval_tables", {})
        t = tables.get(k)
        if t is None or t[0].size <= qmax:
            size = 1 << max(int(qmax).bit_length(), 10)
            with np.errstate(divide="ignore"):
                lq = np.log2(np.arange(size, dtype=np.float64) + offset)
            ti = np.searchsorted(mids, lq, side="left")
            t = tables[k] = (ti.astype(np.int16), np.abs(lq - axis[ti]))
        qi = q.astype(np.int64)
        if np.array_equal(qi, q):
            return t[0][qi].astype(np.int64), t[1][qi]
    lq = np.log2(np.asarray(q, dtype=np.float64) + offset)
    i = np.searchsorted(mids, lq, side="left")
    return i, np.abs(lq - axis[i])


def distance_many(grp: GroupGrids | None, heads, prefix, batch, seq) -> np.ndarray:
    """Per query: the L-inf distance to the nearest grid cell (nearest axis value on each axis) plus
    that cell's distance to the nearest measured cell (the precomputed field): 0 on a measured
    cell, the gap to the neighbouring lines on a filled hole, the distance past the edge when
    extrapolating. inf for unstacked groups and missing grids (the widest bucket answers).
    Same float64 arithmetic as the scalar twin `distance_one`."""
    batch = np.asarray(batch)
    field = None if grp is None else distance_field(grp)
    if field is None:
        return np.full(batch.shape[0], np.inf)
    axes = _cell_coords(grp.stacked)
    d = None
    flat = None
    for k, (axis, q, offset, stride) in enumerate(zip(axes, (heads, prefix, batch, seq), (0.0, 1.0, 0.0, 0.0),
                                                      _strides(field.shape))):
        i, di = _axis_nearest(grp, k, axis, np.asarray(q), offset)
        d = di if d is None else np.maximum(d, di)
        flat = i * stride if flat is None else flat + i * stride
    return d + field.reshape(-1)[flat]


def _mids(axis):
    return (axis[:-1] + axis[1:]) / 2


def _strides(shape) -> list[int]:
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= n
    return out[::-1]


def bucket_of(distance) -> np.ndarray:
    """Bucket index (0..len(BUCKETS)-2) of distances."""
    return np.clip(np.searchsorted(np.asarray(BUCKETS), np.asarray(distance, dtype=np.float64), side="left") - 1,
                   0, len(BUCKETS) - 2)
