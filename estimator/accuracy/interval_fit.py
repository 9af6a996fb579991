"""80% intervals on estimates, learned from cross-validation residuals.

Why: a latency without an error bar cannot be planned on. The error of an
answer depends on how it was obtained (its provenance), on the op, and on how
far the query sits from measured data, so the interval model is a table of
residual quantiles per (op, provenance, distance bucket):

* residuals: three hold-out folds (R random interior points; GEB a middle
  sequence line, the largest sequence line and the largest batch row held out
  together; E2 the two largest sequence lines, the largest scored, for farther
  extrapolation); each fold refits calibration and grids without its held-out
  points. Residual = log2(measured / estimated). `sol` residuals come from the
  calibrated SOL alone, `nearest` from the literal nearest measured point.
  Until intervals-3, G, E and B were folds of their own (five refits, ~3/4 of
  a partition build's CPU); held out together, each point keeps the error
  class and distance it had alone, except the few where two held-out lines
  cross (measured on the fold's own grids, so they land in a farther bucket).
  Since intervals-5 a fold's fit starts from the partition's own calibration
  (converged fits land where a fit from the defaults does: the published H200
  TensorRT-LLM interval widths are unchanged to 0.1 point), and an op of more
  than MAX_SCORED_POINTS points (the SGLang DSA context tables, 80-98k) is
  scored on every other prefix value only (`scored_mask`). Together they cut
  the whole published corpus's partition CPU by about a quarter (163 -> 124 s).
* distance: in octaves along (log2 heads, log2(1+prefix), log2 batch, log2
  seq), L-infinity: the distance from the query to its nearest grid cell plus
  that cell's precomputed distance to the nearest measured cell (0 on
  measured data, the gap to the neighbouring lines in a filled hole, the
  distance past the edge when extrapolating). Cheap: two bisects and a list
  lookup per query, the same rule for fitting and for answering.
* quantiles: split-conformal order statistics per cell (the
  floor((n+1)*0.1)-th and ceil((n+1)*0.9)-th smallest residual), so that a new
  exchangeable point lands inside with probability >= 80%; where that interval
  excludes 0 (the estimate itself: every held-out error of the cell on one
  side), from 0 to the order statistic that keeps ceil((n+1)*0.8) residuals
  inside (intervals-6). Cells with fewer
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
repeat noise). `transferred` answers (filled from sibling slices only) get a
cell of their own with MIN_CELL residuals; ops with a few (the context ops:
15-30 per seed) get the pooled over-ops quantiles of residual / extrapolated
half-width, scaled by their own (`_scaled_transferred`); ops with none borrow
`sol` (and, for distance, the widest extrapolated bucket) unless residuals
for them are supplied (`extra_residuals`); all are marked `borrowed_from`.

Pure functions of frames; persistence lives in `estimator.derived.store`.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from estimator.grids.schema import SOURCES
from estimator.lookup.intervals import BUCKETS, FOLDS, IntervalLookup, LEVEL, MIN_CELL, POOLED, SCHEMA
from estimator.lookup.distance import bucket_of, distance_many


# ---- residuals ------------------------------------------------------------------------------

MAX_SCORED_POINTS = 48_000  # per op, the rows a partition build scores (`scored_mask`): every other prefix of SGLang DSA context

def _fold_masks(pts: pl.DataFrame, folds, seed: int) -> dict[str, np.ndarray]:
    """Hold-out masks per fold (FOLDS): R random interior points; GEB the middle sequence line,
    the largest sequence line and the largest batch row together; E2 the two largest sequence
    lines. Lines held out together share one refit: a held-out point's distance to the fold's
    data (its bucket) is measured on that fold's grids, so the cell a point lands in follows
    from what was held out with it."""
    from estimator.accuracy.protocol import holdout_masks

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
    masks["GEB"] = masks["G"] | masks["E"] | b
    return {f: masks[f] for f in folds}


def scored_mask(pts: pl.DataFrame, max_points: int | None, seed: int = 0) -> np.ndarray:
    """Rows whose residuals are computed: every row of an op with at most `max_points` points;
    of a larger op with n points, every k-th of its prefix values (k = ceil(n / max_points), from
    a random offset: spread over the whole prefix range), with all their rows, so that a kept
    slice keeps every sibling (same prefix; other heads, kv dtype or gemm type:
    `estimator.grids.build._sibling_index`).

    Why: the SGLang DSA context tables hold 80-98k points over 66 prefixes; the folds' grids
    and estimates over all of them cost ~6 s of CPU per partition (a third of its build), and a
    cell's quantiles need hundreds of residuals, not tens of thousands. Whole prefixes, because
    errors cluster by prefix: on B200 and H200 SGLang, the intervals from every other prefix
    cover 80.4-83.3% of the unscored prefixes' residuals (interpolated, extrapolated, nearest,
    sol; transferred, a few hundred points, 73-77%; the unthinned model 78-81% there), while
    drawing 11-16 of 66 prefixes swung the extrapolated cell between 75% and 90%. The draw
    depends on the data and `seed` only."""
    keep = np.ones(pts.height, dtype=bool)
    if max_points is None:
        return keep
    ops, prefix = pts["op"].to_numpy(), pts["prefix"].fill_null(0).to_numpy()
    rng = np.random.default_rng([seed, 1])
    for op in np.unique(ops):
        m = ops == op
        if m.sum() <= max_points:
            continue
        values = np.unique(prefix[m])
        step = min(-(-int(m.sum()) // max_points), values.size)
        if step < 2:
            continue
        keep[m] = np.isin(prefix[m], values[int(rng.integers(step))::step])
    return keep


def cv_residuals(points: pl.DataFrame, *, tables: tuple[str, ...] | None = None, folds=FOLDS,
                 seed: int = 0, start: dict | None = None, max_scored: int | None = None) -> pl.DataFrame:
    """One row per held-out point and method: fold, op, slice keys, provenance, distance,
    measured_ms, pred_ms and resid (log2 measured / estimated).

    Each fold refits the calibration on all of its training points (from `start`, the
    calibration of all points by CAL_KEYS key, when given: `fit_op`); grids are built and
    residuals computed only for the rows `scored_mask(max_scored)` keeps, so the hold-out draws
    and the fits are those of the whole table.

    For fold E2 (two largest sequence lines held out) only the largest line is scored (the
    second largest, a one-line extrapolation from the third, errs far more than the largest
    line does from the second on published tables: it does not stand for fold E's points).
    """
    from estimator.accuracy.protocol import MODULE_TABLES, _with_seq, predict
    from estimator.physics.calibrate import calibrate, params_from_frame
    from estimator.lookup.engine import estimate_group
    from estimator.lookup.grids import GridSet
    from estimator.grids.build import build_grids
    from estimator.slices import GROUP_KEYS, SLICE_KEYS, group_rows, model_for, points_shape
    from estimator.physics.specs import load_system

    tables = tables or MODULE_TABLES
    pts = _with_seq(points.filter(pl.col("op").is_in(list(tables)))).sort(
        [*SLICE_KEYS, "batch_size", "seq_len"], nulls_last=True)
    if pts.height == 0:
        raise ValueError(f"no points for tables {', '.join(tables)}")
    frames = []
    masks = _fold_masks(pts, folds, seed)
    pts = pts.with_columns(pl.Series("_scored", scored_mask(pts, max_scored, seed)))
    for fold, hold in masks.items():
        if not hold.any() or hold.all():
            continue
        train, test = pts.filter(~pl.Series(hold)), pts.filter(pl.Series(hold))
        if fold == "E2":
            test = test.filter(pl.col("seq_len") == pl.col("seq_len").max().over("op"))
        cal = calibrate(train.drop("_scored"), start)
        train = train.filter(pl.col("_scored")).drop("_scored")
        test = test.filter(pl.col("_scored")).drop("_scored")
        params = params_from_frame(cal)
        grids = GridSet.from_frame(build_grids(train, cal))
        test = test.with_row_index("_row")
        n = test.height
        pred, sol_ms, code, dist = (np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, np.int8),
                                    np.full(n, np.inf))
        test_shape = points_shape(test)
        for key, rows in group_rows(test, GROUP_KEYS):
            k = dict(zip(GROUP_KEYS, key))
            grp = grids.groups.get(tuple(key))
            shape = {c: v[rows] for c, v in test_shape.items()}
            p = params.get((k["system"], k["framework"], k["version"], k["op"], k["kernel_source"]))
            if p is None:
                continue
            lat, cd, sol = estimate_group(grp, k["op"], model_for(k["op"], k["architecture"]),
                                          load_system(k["system"]), p, gemm_type=k["gemm_type"] or "bfloat16",
                                          kv_cache_dtype=k["kv_cache_dtype"], kernel_source=k["kernel_source"],
                                          **shape)
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


MIN_POOLED_TRANSFERRED = 20  # ratios pooled over ops for the one (lo, hi) pair of `_scaled_transferred`


# ---- fitting --------------------------------------------------------------------------------

def _conformal(r: np.ndarray, contain_zero: bool = True) -> tuple[float, float]:
    """Split-conformal (lo, hi) order statistics of residuals for a LEVEL interval: the central one,
    or, when it excludes 0 (the estimate itself) and `contain_zero`, the one from 0 to the order
    statistic that keeps LEVEL of the points inside.

    Why: where the held-out errors of a cell all lie on one side (extrapolated DSA context overshoots
    past the data; `nearest` undershoots), the central interval left out the answer it was drawn
    around, and merely widening it to 0 covered 84-88% instead of 80%."""
    r = np.sort(r)
    n = r.size
    tail = (1.0 - LEVEL) / 2.0
    k_lo = max(int(math.floor((n + 1) * tail)), 1)
    k_hi = min(int(math.ceil((n + 1) * (1.0 - tail))), n)
    lo, hi = float(r[k_lo - 1]), float(r[k_hi - 1])
    inside = int(math.ceil((n + 1) * LEVEL))  # points [lo, hi] must hold
    if contain_zero and lo > 0.0:
        below = int(np.searchsorted(r, 0.0, side="left"))  # residuals < 0: outside [0, hi]
        return 0.0, float(r[min(below + inside, n) - 1])
    if contain_zero and hi < 0.0:
        above = n - int(np.searchsorted(r, 0.0, side="right"))  # residuals > 0: outside [lo, 0]
        return float(r[max(n - above - inside + 1, 1) - 1]), 0.0
    return lo, hi


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
    if extra_classes:
        table = _scaled_transferred(r, table)
    return _borrow_classes(table) if extra_classes else table


def _scaled_transferred(r: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """Rows for `transferred` (an answer filled from sibling slices only) of the ops that have a few
    such held-out residuals but fewer than MIN_CELL, calibrated on all ops' together: each op's
    transferred residuals divided by the half-width of its own extrapolated interval (conformal,
    all distances), the conformal quantiles of the pooled ratios (at least
    MIN_POOLED_TRANSFERRED of them), scaled back per op.

    Why: one op has 10-30 transferred held-out points per seed; alone they fill no cell, and the
    fallback (the wider of `sol` and the widest extrapolation) covered 94-100% of them. The
    transferred error tracks the op's extrapolation error (published H200 tables, seed 0: the
    80th percentile of |residual| is 0.8-0.9x the extrapolated half-width for both DSA and MLA
    context, 1x and 2x the interpolated one), so the ratio pools across ops where the raw
    residuals would not."""
    have = set(table.filter(pl.col("provenance") == "transferred")["op"].to_list())
    scale, ratios, ops = {}, [], []
    for (op,), sub in r.filter((pl.col("provenance") == "transferred") & (pl.col("op") != POOLED)).group_by(
            "op", maintain_order=True):
        ext_r = r.filter((pl.col("op") == op) & (pl.col("provenance") == "extrapolated"))["resid"].to_numpy()
        if op in have or ext_r.size < MIN_CELL:
            continue
        lo, hi = _conformal(ext_r, contain_zero=False)  # a width: the central interval's
        if hi - lo <= 0:
            continue
        scale[op] = (hi - lo) / 2.0
        ratios.append(sub["resid"].to_numpy() / scale[op])
        ops.append(op)
    z = np.concatenate(ratios) if ratios else np.empty(0)
    if z.size < MIN_POOLED_TRANSFERRED:
        return table
    k_lo, k_hi = _conformal(z)
    nb = len(BUCKETS) - 1
    add = [dict(op=op, provenance="transferred", bucket=b, d_lo=BUCKETS[b], d_hi=BUCKETS[b + 1], n=int(z.size),
                q_lo=k_lo * scale[op], q_hi=k_hi * scale[op], expected_error_pct=_expected_pct(z * scale[op]),
                coverage_pct=None, n_heldout=None, borrowed_from="transferred/pooled-over-ops-by-extrapolated-width",
                grow_from=None) for op in ops for b in range(nb)]
    return pl.concat([table, pl.DataFrame(add, schema=SCHEMA)])


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
    from estimator.slices import SLICE_KEYS

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
    """`estimator.derived.store` builder: the interval table of one partition's perf points (points below
    the raw roofline left out, per op, as the grids leave them out; docs/limits.md). A partition
    without module-table points gets an empty table (its answers carry NaN bounds)."""
    from estimator.accuracy.protocol import MODULE_TABLES
    from estimator.lookup.limits import drop_impossible
    from estimator.physics.calibrate import params_from_frame
    from estimator.slices import GROUP_KEYS

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
    cal = (tables or {}).get("sol_calibration")
    start = params_from_frame(cal) if cal is not None and cal.height else None
    return build_interval_model(cv_residuals(pts, start=start, max_scored=MAX_SCORED_POINTS))


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
