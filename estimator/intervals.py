"""80% intervals on estimates, learned from cross-validation residuals.

Why: a latency without an error bar cannot be planned on. The error of an
answer depends on how it was obtained (its provenance), on the op, and on how
far the query sits from measured data, so the interval model is a table of
residual quantiles per (op, provenance, distance bucket):

* residuals: hold-out folds like `estimator.accuracy` (R random interior
  points, G a middle sequence line, E the largest sequence line, plus E2 the
  two largest lines and B the largest batch, for farther extrapolation); each
  fold refits calibration and grids without the held-out points. Residual =
  log2(measured / estimated). `sol` residuals come from the calibrated SOL
  alone, `nearest` from the literal nearest measured point.
* distance: in octaves along (log2 heads, log2(1+prefix), log2 batch, log2
  seq), L-infinity: the distance from the query to its nearest grid cell plus
  that cell's precomputed distance to the nearest measured cell (0 on
  measured data, the gap to the neighbouring lines in a filled hole, the
  distance past the edge when extrapolating). Cheap: two bisects and a list
  lookup per query, the same rule for fitting and for answering.
* quantiles: split-conformal order statistics per cell (the
  floor((n+1)*0.1)-th and ceil((n+1)*0.9)-th smallest residual), so that a new
  exchangeable point lands inside with probability >= 80%. Cells with fewer
  than MIN_CELL residuals borrow the nearest lower bucket (the first filled one
  below them); past the farthest held-out data (`grow_from`, the borrowed
  bucket's upper edge) the log-width grows in proportion to the distance
  (extrapolation error grows with it; capped at MAX_GROWTH). That widening is
  a rule, not validated: no held-out point lies there. Widths are not forced to grow with distance: measured, the
  error of interpolated context answers is larger close to data (the
  closely spaced isl lines where latency zig-zags) than one octave away.
* coverage: cross-fitted. Residual points are split into folds by slice; each
  fold's intervals come from a model fitted on the other folds, so the
  reported coverage is on points held out from every fit (grids, calibration
  and the quantiles).

`measured` answers cannot be held out (they are the data); they borrow the
op's interpolated interval at the smallest distance (an upper bound on
repeat noise). `transferred` answers borrow `sol` (and, for distance, the
widest extrapolated bucket) unless residuals for them are supplied
(`extra_residuals`); both are marked `borrowed_from` in the table.

Pure functions of frames; persistence lives in `estimator.store`.
"""

from __future__ import annotations

import math
from bisect import bisect_left

import numpy as np
import polars as pl

from .grid import SOURCES, GroupGrids

TABLE = "interval_model"
METHOD = "intervals-2"  # bump when the residual folds, buckets or quantile rule change
LEVEL = 0.8
BUCKETS = (0.0, 0.5, 1.0, 2.0, math.inf)  # distance buckets (octaves): [0, 0.5], (0.5, 1], (1, 2], (2, inf)
MIN_CELL = 30
POOLED = "*"  # op row used when an op has no cell of its own
FOLDS = ("R", "G", "E", "E2", "B")
CLASSES = ("measured", "interpolated", "extrapolated", "transferred", "sol", "nearest")
SCHEMA = {"op": pl.String, "provenance": pl.String, "bucket": pl.Int8, "d_lo": pl.Float64, "d_hi": pl.Float64,
          "n": pl.Int64, "q_lo": pl.Float64, "q_hi": pl.Float64, "expected_error_pct": pl.Float64,
          "coverage_pct": pl.Float64, "n_heldout": pl.Int64, "borrowed_from": pl.String,
          "grow_from": pl.Float64}
_LOG2 = math.log2
MAX_GROWTH = 4.0  # cap on the distance widening of cells above the data


# ---- distance to measured data --------------------------------------------------------------

def _cell_coords(st) -> list[np.ndarray]:
    return [st.xh, np.log2(1.0 + st.xp), st.xb, st.xs]


def distance_field(grp: GroupGrids) -> np.ndarray | None:
    """Per grid cell of a stacked group: L-inf octave distance to the nearest measured cell
    (0 on measured cells; inf when the group has none). None for unstacked groups."""
    st = grp.stacked
    if st is None:
        return None
    cached = grp.__dict__.get("_interval_dist")
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
    grp.__dict__["_interval_dist"] = field
    mids = [_mids(a).tolist() for a in axes]  # as distance_many
    grp.__dict__["_interval_dist_py"] = ([a.tolist() for a in axes], mids, field.tolist(), {})
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
    py = grp.__dict__.get("_interval_dist_py")
    if py is None:
        if distance_field(grp) is None:
            return math.inf
        py = grp.__dict__["_interval_dist_py"]
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
        tables = grp.__dict__.setdefault("_interval_tables", {})
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


# ---- residuals ------------------------------------------------------------------------------

def _fold_masks(pts: pl.DataFrame, folds, seed: int) -> dict[str, np.ndarray]:
    from .accuracy import holdout_masks

    masks = holdout_masks(pts, seed=seed)
    ops = pts["op"].to_numpy()
    seq = pts["seq_len"].to_numpy()
    batch = pts["batch_size"].to_numpy()
    e2 = np.zeros(pts.height, dtype=bool)
    b = np.zeros(pts.height, dtype=bool)
    for op in np.unique(ops):
        m = ops == op
        seqs = np.unique(seq[m])
        if seqs.size > 3:
            e2 |= m & (seq >= seqs[-2])
        batches = np.unique(batch[m])
        if batches.size > 3:
            b |= m & (batch == batches[-1])
    masks["E2"] = e2
    masks["B"] = b
    return {f: masks[f] for f in folds}


def cv_residuals(points: pl.DataFrame, *, tables: tuple[str, ...] | None = None, folds=FOLDS,
                 seed: int = 0) -> pl.DataFrame:
    """One row per held-out point and method: fold, op, slice keys, provenance, distance,
    measured_ms, pred_ms and resid (log2 measured / estimated).

    For fold E2 (two largest sequence lines held out) only the largest line is scored.
    """
    from .accuracy import MODULE_TABLES, _with_seq, predict
    from .calibrate import calibrate, params_from_frame
    from .engine import estimate_group
    from .grid import GridSet, build_grids
    from .slices import GROUP_KEYS, SLICE_KEYS, model_for, points_shape
    from .specs import load_system

    tables = tables or MODULE_TABLES
    pts = _with_seq(points.filter(pl.col("op").is_in(list(tables)))).sort(
        [*SLICE_KEYS, "batch_size", "seq_len"], nulls_last=True)
    if pts.height == 0:
        raise ValueError(f"no points for tables {', '.join(tables)}")
    frames = []
    for fold, hold in _fold_masks(pts, folds, seed).items():
        if not hold.any() or hold.all():
            continue
        train, test = pts.filter(~pl.Series(hold)), pts.filter(pl.Series(hold))
        if fold == "E2":
            test = test.filter(pl.col("seq_len") == pl.col("seq_len").max().over("op"))
        cal = calibrate(train)
        params = params_from_frame(cal)
        grids = GridSet.from_frame(build_grids(train, cal))
        test = test.with_row_index("_row")
        n = test.height
        pred, sol_ms, code, dist = (np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, np.int8),
                                    np.full(n, np.inf))
        for key, sub in test.group_by(list(GROUP_KEYS), maintain_order=True):
            k = dict(zip(GROUP_KEYS, key))
            grp = grids.groups.get(tuple(key))
            shape = points_shape(sub)
            p = params.get((k["system"], k["framework"], k["version"], k["op"], k["kernel_source"]))
            if p is None:
                continue
            lat, cd, sol = estimate_group(grp, k["op"], model_for(k["op"], k["architecture"]),
                                          load_system(k["system"]), p, gemm_type=k["gemm_type"] or "bfloat16",
                                          kv_cache_dtype=k["kv_cache_dtype"], **shape)
            rows = sub["_row"].to_numpy()
            pred[rows], code[rows], sol_ms[rows] = lat, cd, sol
            seqv = shape["isl"] if "context" in k["op"] else shape["kv_len"]
            dist[rows] = distance_many(grp, shape["num_heads"], shape["prefix"], shape["batch"], seqv)
        base = test.select("op", *[c for c in SLICE_KEYS if c != "op"], "batch_size", "seq_len",
                           pl.col("latency_ms").alias("measured_ms"))
        src = np.asarray(SOURCES, dtype=object)[code]
        frames.append(base.with_columns(pl.lit(fold).alias("fold"), pl.lit("interp").alias("method"),
                                        pl.Series("provenance", src, pl.String), pl.Series("distance", dist),
                                        pl.Series("pred_ms", pred)))
        if fold == "R":
            frames.append(base.with_columns(pl.lit(fold).alias("fold"), pl.lit("sol").alias("method"),
                                            pl.lit("sol").alias("provenance"), pl.Series("distance", dist),
                                            pl.Series("pred_ms", sol_ms)))
        near = predict(train, test.drop("_row"), calibration=cal, method="nearest")["pred_ms"].to_numpy()
        frames.append(base.with_columns(pl.lit(fold).alias("fold"), pl.lit("nearest").alias("method"),
                                        pl.lit("nearest").alias("provenance"), pl.Series("distance", dist),
                                        pl.Series("pred_ms", near)))
    out = pl.concat(frames, how="vertical_relaxed")
    return out.filter(pl.col("pred_ms").is_finite() & (pl.col("pred_ms") > 0)).with_columns(
        (pl.col("measured_ms") / pl.col("pred_ms")).log(2).alias("resid"))


# ---- fitting --------------------------------------------------------------------------------

def _conformal(r: np.ndarray) -> tuple[float, float]:
    """Split-conformal (lo, hi) order statistics of residuals for a central LEVEL interval."""
    r = np.sort(r)
    n = r.size
    tail = (1.0 - LEVEL) / 2.0
    k_lo = max(int(math.floor((n + 1) * tail)), 1)
    k_hi = min(int(math.ceil((n + 1) * (1.0 - tail))), n)
    return float(r[k_lo - 1]), float(r[k_hi - 1])


def _expected_pct(r: np.ndarray) -> float:
    """Mean absolute % error of the estimate (|measured/estimate - 1|, as the accuracy table)."""
    return float(np.mean(np.abs(1.0 - 2.0 ** -r) * 100.0)) if r.size else math.nan


def fit_cells(resid: pl.DataFrame, extra_classes: bool = True) -> pl.DataFrame:
    """The interval table (SCHEMA, coverage columns null) from residual rows (op, provenance,
    distance, resid): conformal quantiles per (op, provenance, bucket), pooled op rows, borrowing."""
    r = resid.select("op", "provenance", "distance", "resid").with_columns(
        pl.Series("bucket", bucket_of(resid["distance"].to_numpy()), pl.Int8))
    pooled = r.with_columns(pl.lit(POOLED).alias("op"))
    rows = []
    nb = len(BUCKETS) - 1
    for (op, prov), sub in pl.concat([r, pooled]).group_by("op", "provenance", maintain_order=True):
        by_bucket = {int(b): s["resid"].to_numpy() for (b,), s in sub.group_by("bucket")}
        if prov == "transferred":  # a handful of points when any: one cell
            by_bucket = {0: sub["resid"].to_numpy()}
        cells = []
        for b in range(nb):
            vals = by_bucket.get(b, np.empty(0))
            if vals.size >= MIN_CELL:
                lo, hi = _conformal(vals)
                cells.append([b, vals.size, lo, hi, _expected_pct(vals), None, None, b])
            elif cells and cells[-1][2] is not None:  # above the data: widen with distance
                prev = cells[-1]
                src = prev[7]
                grow = None if prov == "transferred" else BUCKETS[src + 1]
                cells.append([b, vals.size, prev[2], prev[3], prev[4], f"{op}/{prov}/bucket{src}", grow, src])
            else:
                cells.append([b, vals.size, None, None, None, None, None, None])
        filled = [c for c in cells if c[2] is not None and c[5] is None]
        if not filled and sub.height >= MIN_CELL:  # no bucket is big enough alone: pool the buckets
            v = sub["resid"].to_numpy()
            lo, hi = _conformal(v)
            cells = [[b, int((sub["bucket"] == b).sum()), lo, hi, _expected_pct(v),
                      None if b == 0 else f"{op}/{prov}/bucket0", None, 0] for b in range(nb)]
            filled = cells[:1]
        if not filled:
            continue
        for c in cells:
            if c[2] is None:  # below the first filled bucket: the nearest filled one
                f = filled[0]
                c[2], c[3], c[4], c[5] = f[2], f[3], f[4], f"{op}/{prov}/bucket{f[0]}"
            rows.append(dict(op=op, provenance=prov, bucket=c[0], d_lo=BUCKETS[c[0]], d_hi=BUCKETS[c[0] + 1],
                             n=c[1], q_lo=c[2], q_hi=c[3], expected_error_pct=c[4], coverage_pct=None,
                             n_heldout=None, borrowed_from=c[5], grow_from=c[6]))
    table = pl.DataFrame(rows, schema=SCHEMA)
    return _borrow_classes(table) if extra_classes else table


def _borrow_classes(table: pl.DataFrame) -> pl.DataFrame:
    """Rows for provenances the residuals could not hold out: measured (the op's interpolated
    bucket 0, at every distance) and transferred (sol, widened to the op's widest extrapolation)."""
    add = []
    have = set(table.select("op", "provenance").unique().iter_rows())
    for op in table["op"].unique(maintain_order=True).to_list():
        mine = table.filter(pl.col("op") == op)
        if (op, "measured") not in have:
            interp_rows = mine.filter(pl.col("provenance") == "interpolated").sort("bucket")
            if interp_rows.height:
                b0 = interp_rows.row(0, named=True)
                add += [{**b0, "provenance": "measured", "bucket": b, "d_lo": BUCKETS[b], "d_hi": BUCKETS[b + 1],
                         "n": 0, "borrowed_from": f"{op}/interpolated/bucket0"} for b in range(len(BUCKETS) - 1)]
        if (op, "transferred") not in have:
            sol_rows = mine.filter(pl.col("provenance") == "sol")
            ext = mine.filter(pl.col("provenance") == "extrapolated")
            if sol_rows.height:
                s = sol_rows.row(0, named=True)
                lo = min(s["q_lo"], ext["q_lo"].min() if ext.height else s["q_lo"])
                hi = max(s["q_hi"], ext["q_hi"].max() if ext.height else s["q_hi"])
                err = max(s["expected_error_pct"], ext["expected_error_pct"].max() if ext.height else 0.0)
                add += [{**s, "provenance": "transferred", "bucket": b, "d_lo": BUCKETS[b], "d_hi": BUCKETS[b + 1],
                         "n": 0, "q_lo": lo, "q_hi": hi, "expected_error_pct": err,
                         "borrowed_from": f"{op}/sol+extrapolated"} for b in range(len(BUCKETS) - 1)]
    if not add:
        return table
    return pl.concat([table, pl.DataFrame(add, schema=SCHEMA)])


def _covered(table: pl.DataFrame, resid: pl.DataFrame) -> np.ndarray:
    lk = IntervalLookup(table)
    codes = {p: i for i, p in enumerate(lk.classes)}
    out = np.zeros(resid.height, dtype=bool)
    for (op, prov), sub in resid.with_row_index("_i").group_by("op", "provenance"):
        lo, hi, _ = lk.quantiles_many(op, codes.get(prov, -1), sub["distance"].to_numpy())
        r = sub["resid"].to_numpy()
        out[sub["_i"].to_numpy()] = (r >= lo) & (r <= hi)
    return out


def crossfit_covered(resid: pl.DataFrame, k: int = 5) -> np.ndarray:
    """Per residual row: inside the interval of a model fitted without its fold (folds by slice)?"""
    from .slices import SLICE_KEYS

    keys = [c for c in SLICE_KEYS if c in resid.columns]
    fold = (resid.select(pl.struct(keys).hash(seed=7)).to_series().to_numpy() % np.uint64(k)).astype(np.int64)
    out = np.zeros(resid.height, dtype=bool)
    for f in range(k):
        test = fold == f
        if not test.any():
            continue
        model = fit_cells(resid.filter(pl.Series(~test)))
        out[test] = _covered(model, resid.filter(pl.Series(test)))
    return out


def build_interval_model(resid: pl.DataFrame, extra_residuals: pl.DataFrame | None = None, *,
                         crossfit: int = 5) -> pl.DataFrame:
    """The `interval_model` table from `cv_residuals` output (plus optional extra residual rows,
    e.g. from a transfer protocol, with op, provenance, distance, resid); per-cell coverage_pct
    and n_heldout are the cross-fitted held-out coverage."""
    cols = ["op", "provenance", "distance", "resid", *[c for c in resid.columns if c not in
                                                        ("op", "provenance", "distance", "resid")]]
    r = resid.select(cols)
    if extra_residuals is not None and extra_residuals.height:
        r = pl.concat([r, extra_residuals], how="diagonal_relaxed")
    table = fit_cells(r)
    covered = crossfit_covered(r, crossfit)
    cov = (r.with_columns(pl.Series("covered", covered), pl.Series("bucket", bucket_of(r["distance"].to_numpy()),
                                                                   pl.Int8))
           .group_by("op", "provenance", "bucket").agg(pl.len().alias("_n"), pl.col("covered").mean().alias("_c")))
    return (table.join(cov, on=["op", "provenance", "bucket"], how="left")
            .with_columns((pl.col("_c") * 100).alias("coverage_pct"), pl.col("_n").cast(pl.Int64).alias("n_heldout"))
            .drop("_n", "_c").select(list(SCHEMA)).sort("op", "provenance", "bucket"))


def build_for_partition(points: pl.DataFrame, tables: dict | None = None) -> pl.DataFrame:
    """`estimator.store` builder: the interval table of one partition's perf points (points below
    the raw roofline left out, per op, as the grids leave them out; docs/limits.md). A partition
    without module-table points gets an empty table (its answers carry NaN bounds)."""
    from .accuracy import MODULE_TABLES
    from .limits import drop_impossible
    from .slices import GROUP_KEYS

    pts = points.filter(pl.col("op").is_in(list(MODULE_TABLES)))
    grids = (tables or {}).get("grids")
    if grids is not None:  # only what the partition modelled (its build_errors name the rest)
        pts = pts.join(grids.select(GROUP_KEYS).unique(), on=list(GROUP_KEYS), how="semi", nulls_equal=True)
    # an op with too few points to hold any out leaves no residuals (its answers get no interval)
    pts = pts.filter(pl.len().over("op") >= MIN_CELL)
    if pts.height == 0:
        return pl.DataFrame(schema=SCHEMA)
    pts = pl.concat([drop_impossible(sub) for _, sub in pts.group_by("op", maintain_order=True)],
                    how="vertical_relaxed")
    return build_interval_model(cv_residuals(pts))


def coverage_table(resid: pl.DataFrame, *, crossfit: int = 5) -> pl.DataFrame:
    """Held-out coverage per (op, provenance): n, coverage %, median interval width %, and
    whether it is within 75-85%."""
    covered = crossfit_covered(resid, crossfit)
    model = fit_cells(resid)
    lk = IntervalLookup(model)
    width = np.full(resid.height, np.nan)
    codes = {p: i for i, p in enumerate(lk.classes)}
    for (op, prov), sub in resid.with_row_index("_i").group_by("op", "provenance"):
        lo, hi, _ = lk.quantiles_many(op, codes.get(prov, -1), sub["distance"].to_numpy())
        width[sub["_i"].to_numpy()] = (2.0 ** hi - 2.0 ** lo) * 100
    return (resid.with_columns(pl.Series("covered", covered), pl.Series("width_pct", width))
            .group_by("op", "provenance")
            .agg(pl.len().alias("n"), (pl.col("covered").mean() * 100).alias("coverage_pct"),
                 pl.col("width_pct").median().alias("median_width_pct"))
            .with_columns(pl.col("coverage_pct").is_between(75, 85).alias("within_75_85"))
            .sort("op", "provenance"))


def format_coverage(cov: pl.DataFrame) -> str:
    """Markdown coverage table."""
    lines = ["| op | provenance | n held out | 80% interval coverage % | median width % | 75-85% |",
             "|---|---|---:|---:|---:|---|"]
    for r in cov.iter_rows(named=True):
        lines.append(f"| {r['op']} | {r['provenance']} | {r['n']} | {r['coverage_pct']:.1f} | "
                     f"{r['median_width_pct']:.1f} | {'yes' if r['within_75_85'] else 'no'} |")
    return "\n".join(lines)


# ---- lookups --------------------------------------------------------------------------------

class IntervalLookup:
    """The interval table as plain lists per (op, provenance code), for microsecond lookups.

    bounds(...) -> (low_ms, high_ms, expected_error_pct). Unknown ops use the pooled `*` rows;
    a provenance without rows (e.g. an empty table) gives NaN bounds.
    """

    classes = CLASSES

    def __init__(self, table: pl.DataFrame | None):
        self.cells: dict[tuple[str, int], tuple] = {}
        self._by_op: dict[str, tuple] = {}
        if table is None or table.height == 0:
            return
        codes = {p: i for i, p in enumerate(self.classes)}
        for (op, prov), sub in table.sort("bucket").group_by("op", "provenance", maintain_order=True):
            if prov not in codes:
                continue
            self.cells[(op, codes[prov])] = (sub["d_lo"].to_list()[1:], sub["q_lo"].to_list(),
                                             sub["q_hi"].to_list(), sub["expected_error_pct"].to_list(),
                                             sub["grow_from"].fill_null(0.0).to_list())

    def _cell(self, op: str, code: int):
        c = self.cells.get((op, code))
        return self.cells.get((POOLED, code)) if c is None else c

    def bounds(self, op: str, code: int, distance: float, latency_ms: float) -> tuple[float, float, float]:
        c = self._cell(op, code)
        if c is None:
            return math.nan, math.nan, math.nan
        i = bisect_left(c[0], distance)
        g = c[4][i]
        if g and distance > g:  # past the farthest held-out data: log-width grows with distance
            f = min(distance / g, MAX_GROWTH)
            return latency_ms * 2.0 ** (c[1][i] * f), latency_ms * 2.0 ** (c[2][i] * f), c[3][i] * f
        return latency_ms * 2.0 ** c[1][i], latency_ms * 2.0 ** c[2][i], c[3][i]

    def _arrays(self, op: str):
        """(q_lo, q_hi, err) arrays of shape (classes, buckets) for one op (pooled rows where the op
        has none; NaN where neither has a class)."""
        got = self._by_op.get(op)
        if got is None:
            nb = len(BUCKETS) - 1
            got = tuple(np.full((len(self.classes) + 1, nb), np.nan) for _ in range(4))
            got[3][:] = 0.0
            for code in range(len(self.classes)):
                cell = self._cell(op, code)
                if cell is not None:
                    for arr, k in zip(got, (1, 2, 3, 4)):
                        arr[code, :] = cell[k]
            self._by_op[op] = got
        return got

    def quantiles_many(self, op: str, code, distance: np.ndarray):
        """(q_lo, q_hi, expected_error_pct) arrays for one op; `code` a scalar or an array
        (-1: no class, NaN)."""
        distance = np.asarray(distance)
        bucket = np.zeros(distance.shape, dtype=np.int64)
        for edge in BUCKETS[1:-1]:  # (lo, hi] buckets: count the edges below
            bucket += distance > edge
        codes = np.asarray(code, dtype=np.int64)
        if codes.ndim == 0 or codes.min() < 0:
            codes = np.broadcast_to(codes, distance.shape)
            codes = np.where(codes < 0, len(self.classes), codes)
        flat = codes * (len(BUCKETS) - 1) + bucket
        lo, hi, err, grow = (a.reshape(-1).take(flat) for a in self._arrays(op))
        far = (grow > 0) & (distance > grow)
        if far.any():
            f = np.minimum(distance[far] / grow[far], MAX_GROWTH)
            lo[far], hi[far], err[far] = lo[far] * f, hi[far] * f, err[far] * f
        return lo, hi, err


def class_code(source: str, method: str = "interp") -> int:
    """Interval class of an answer: its provenance, or `nearest` for method='nearest'."""
    if method == "nearest" or source == "nearest":
        return CLASSES.index("nearest")
    try:
        return CLASSES.index(source)
    except ValueError:  # a provenance this table does not know: the widest (transferred) class
        return CLASSES.index("transferred")


def interval_for(lookup: IntervalLookup, op: str, source: str, distance: float, latency_ms: float,
                 method: str = "interp") -> tuple[float, float, float]:
    """(low_ms, high_ms, expected_error_pct) of one answer."""
    return lookup.bounds(op, class_code(source, method), distance, latency_ms)


def rollup_bounds(low, high) -> tuple[float, float]:
    """Interval of a sum of layer latencies: the sum of the layers' bounds.

    Why a plain sum and not a root-sum-of-squares: the layers of one model hit the
    same grid cells, the same calibration and the same interpolation bias, so their
    errors are strongly correlated; independent combination would understate the
    model's interval by about sqrt(layers)."""
    return float(np.sum(low)), float(np.sum(high))


SOURCE_CODES = {s: class_code(s) for s in SOURCES}
