"""Cross-validation protocol: how accurate is the estimator on held-out measurements?

Classes (per table = op):
  R    10% of interior points (strictly inside their slice's batch and sequence
       range), chosen at random, held out together;
  G    a whole middle grid line held out (the median sequence value of the table);
  E    the largest sequence value of the table held out (extrapolation);
  SOL  the calibrated SOL alone on the R hold-out, fitted without it.
Each fold refits the calibration and rebuilds the grids from the training
points only. `nearest` (latency of the nearest measured training point of the
same slice, in log2 space) is the baseline, reported for R, G and E.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from estimator.physics.calibrate import calibrate, params_from_frame
from estimator.lookup.engine import estimate_group
from estimator.lookup.grids import GridSet
from estimator.grids.build import build_grids
from estimator.slices import GROUP_KEYS, SLICE_KEYS, group_rows, model_for, points_shape, seq_values
from estimator.physics.specs import load_system

CLASSES = ("R", "G", "E", "SOL")
MODULE_TABLES = ("dsa_context", "dsa_generation", "mla_context", "mla_generation")


def _with_seq(points: pl.DataFrame) -> pl.DataFrame:
    return points.with_columns(seq_values(points).alias("seq_len"), pl.col("prefix").fill_null(0))


def holdout_masks(points: pl.DataFrame, seed: int = 0, fraction: float = 0.1) -> dict[str, np.ndarray]:
    """Boolean hold-out masks for classes R, G and E over `points` (with seq_len)."""
    rng = np.random.default_rng(seed)
    slice_cols = list(SLICE_KEYS)
    bounds = points.with_columns(
        ((pl.col("batch_size") > pl.col("batch_size").min().over(slice_cols))
        & (pl.col("batch_size") < pl.col("batch_size").max().over(slice_cols))
        & (pl.col("seq_len") > pl.col("seq_len").min().over(slice_cols))
        & (pl.col("seq_len") < pl.col("seq_len").max().over(slice_cols)))
        .alias("_interior")
    )
    interior = bounds["_interior"].to_numpy()
    r = np.zeros(points.height, dtype=bool)
    idx = np.flatnonzero(interior)
    r[rng.choice(idx, size=int(round(fraction * idx.size)), replace=False)] = True
    g = np.zeros(points.height, dtype=bool)
    e = np.zeros(points.height, dtype=bool)
    for op in points["op"].unique().to_list():
        m = (points["op"] == op).to_numpy()
        seqs = np.unique(points.filter(pl.col("op") == op)["seq_len"].to_numpy())
        middle = seqs[(seqs.size - 1) // 2] if seqs.size > 2 else None
        if middle is not None:
            g |= m & (points["seq_len"].to_numpy() == middle)
        e |= m & (points["seq_len"].to_numpy() == seqs[-1])
    return {"R": r, "G": g, "E": e}


def predict(train: pl.DataFrame, test: pl.DataFrame, *, calibration: pl.DataFrame | None = None,
            method: str = "interp") -> pl.DataFrame:
    """Predictions for `test` rows from `train` rows: adds pred_ms, source, sol_ms (and for
    method='nearest', the nearest training point's latency)."""
    calibration = calibrate(train) if calibration is None else calibration
    params = params_from_frame(calibration)
    test = _with_seq(test).with_row_index("_row")
    out_lat = np.empty(test.height)
    out_code = np.empty(test.height, dtype=np.int8)
    out_sol = np.empty(test.height)
    if method == "interp":
        gridset = GridSet.from_frame(build_grids(train, calibration))
    elif method == "sol":
        gridset = GridSet({})
    elif method == "nearest":
        return _nearest(_with_seq(train), test)
    else:
        raise ValueError(f"unknown method {method!r}; valid: interp, sol, nearest")
    test_shape = points_shape(test) if test.height else {}
    for key, rows in group_rows(test, GROUP_KEYS):
        k = dict(zip(GROUP_KEYS, key))
        op = k["op"]
        lat, code, sol_ms = estimate_group(
            gridset.groups.get(tuple(key)), op, model_for(op, k["architecture"]), load_system(k["system"]),
            params[(k["system"], k["framework"], k["version"], op, k["kernel_source"])],
            gemm_type=k["gemm_type"] or "bfloat16", kv_cache_dtype=k["kv_cache_dtype"],
            kernel_source=k["kernel_source"], **{c: v[rows] for c, v in test_shape.items()})
        out_lat[rows], out_code[rows], out_sol[rows] = lat, code, sol_ms
    from estimator.grids.schema import SOURCES

    return test.drop("_row").with_columns(
        pl.Series("pred_ms", out_lat), pl.Series("source", [SOURCES[c] for c in out_code]),
        pl.Series("sol_ms", out_sol))


def _nearest(train: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """Literal nearest neighbour: same slice, nearest (log2 batch, log2 seq) training point
    (the first in training order on a tie).

    All slices at once: one join of test to training rows on the slice keys, the
    squared log2 distance of every pair, and per test row the pair sorting first by
    (distance, training row); a loop over slices cost more than the distances.
    """
    keys = list(SLICE_KEYS)
    pairs = test.select("_row", *keys).join(train.select(keys).with_row_index("_t"), on=keys, how="inner",
                                            nulls_equal=True)
    q, t = pairs["_row"].to_numpy(), pairs["_t"].to_numpy()
    tb, ts = np.log2(train["batch_size"].to_numpy()), np.log2(train["seq_len"].to_numpy())
    qb, qs = np.log2(test["batch_size"].to_numpy()), np.log2(test["seq_len"].to_numpy())
    d = (tb[t] - qb[q]) ** 2 + (ts[t] - qs[q]) ** 2
    order = np.lexsort((t, d, q))
    first = order[np.r_[True, q[order][1:] != q[order][:-1]]] if order.size else order
    pred = np.full(test.height, np.nan)
    pred[q[first]] = train["latency_ms"].to_numpy()[t[first]]
    return test.drop("_row").with_columns(pl.Series("pred_ms", pred), pl.lit("nearest").alias("source"),
                                          pl.lit(None, pl.Float64).alias("sol_ms"))


def run_accuracy(points: pl.DataFrame, *, tables: tuple[str, ...] = MODULE_TABLES, seed: int = 0,
                 baseline: bool = True) -> pl.DataFrame:
    """Per held-out point: table, class, method, measured, predicted, abs % error."""
    # sorted so that the random hold-out depends only on the data, not on its row order
    pts = _with_seq(points.filter(pl.col("op").is_in(list(tables)))).sort(
        [*SLICE_KEYS, "batch_size", "seq_len"], nulls_last=True)
    if pts.height == 0:
        raise ValueError(f"no points for tables {', '.join(tables)}")
    masks = holdout_masks(pts, seed=seed)
    frames = []
    for cls in ("R", "G", "E"):
        hold = masks[cls]
        train, test = pts.filter(~pl.Series(hold)), pts.filter(pl.Series(hold))
        calibration = calibrate(train)
        methods = [("interp", cls)] + ([("sol", "SOL")] if cls == "R" else [])
        if baseline:
            methods.append(("nearest", cls))
        for method, label in methods:
            pred = predict(train, test, calibration=calibration, method=method)
            frames.append(pred.select(
                pl.col("op").alias("table"), pl.lit(label).alias("class"), pl.lit(method).alias("method"),
                *[pl.col(c) for c in SLICE_KEYS if c not in ("op",)], "batch_size", "seq_len",
                pl.col("latency_ms").alias("measured_ms"), "pred_ms", "source",
                ((pl.col("pred_ms") / pl.col("latency_ms") - 1).abs() * 100).alias("abs_err_pct")))
    return pl.concat(frames, how="vertical_relaxed")


def summarize(errors: pl.DataFrame) -> pl.DataFrame:
    """Median and p90 absolute % error per table, class and method."""
    return (errors.group_by("table", "class", "method")
            .agg(pl.len().alias("n"), pl.col("abs_err_pct").median().alias("median_pct"),
                 pl.col("abs_err_pct").quantile(0.9, "linear").alias("p90_pct"))
            .sort("table", "method", "class"))


# Issue targets, (median %, p90 %) per table and class.
TARGETS: dict[tuple[str, str], tuple[float, float]] = {
    ("dsa_context", "R"): (1.0, 6.0), ("dsa_context", "G"): (3.0, 9.0), ("dsa_context", "E"): (5.0, 15.0),
    ("dsa_generation", "R"): (0.5, 2.0), ("dsa_generation", "G"): (0.5, 2.3),
    ("dsa_generation", "E"): (2.0, 5.0),
    ("mla_context", "R"): (4.0, 13.0), ("mla_context", "G"): (6.0, 15.0), ("mla_context", "E"): (10.0, 22.0),
    ("mla_generation", "R"): (0.8, 3.0), ("mla_generation", "G"): (0.9, 3.5),
    ("mla_generation", "E"): (1.5, 5.0),
    **{(t, "SOL"): (8.0, 20.0) for t in MODULE_TABLES},
}


# The slice the protocol measures; used when the caller names none.
PROTOCOL_SLICE = ("h200_sxm", "trtllm")


def default_slice(home, system: str = "", backend: str = "", version: str = "",
                  slices: pl.DataFrame | None = None) -> tuple[str, str, str]:
    """(system, backend, version) to cross-validate; an explicit choice is never replaced.

    Without a choice: H200 / TensorRT-LLM when the warehouse has it, else the
    system/backend with the most module-table points; the latest version.
    `slices`: `available_slices(home)` when the caller has it (e.g. from the derived store).
    """
    from warehouse.read import available_slices

    slices = available_slices(home) if slices is None else slices
    if not (system and backend):
        have = slices.filter(pl.col("op").is_in(list(MODULE_TABLES)))
        if system:
            have = have.filter(pl.col("system") == system)
        if backend:
            have = have.filter(pl.col("framework") == backend)
        if have.height == 0:
            raise ValueError(f"no module-table points for system {system or 'any'} / backend {backend or 'any'}")
        pairs = have.group_by("system", "framework").agg(pl.col("points").sum()).sort(
            ["points", "system", "framework"], descending=[True, False, False]
        )
        protocol = pairs.filter((pl.col("system") == PROTOCOL_SLICE[0]) & (pl.col("framework") == PROTOCOL_SLICE[1]))
        system, backend = (protocol if protocol.height else pairs).select("system", "framework").row(0)
    return system, backend, version or latest_version(home, system, backend, slices)


def missed_targets(summary: pl.DataFrame) -> pl.DataFrame:
    """Rows of a `summarize` table (method != nearest) above TARGETS."""
    targets = pl.DataFrame(
        [(t, c, m, p) for (t, c), (m, p) in TARGETS.items()],
        schema={"table": pl.String, "class": pl.String, "target_median_pct": pl.Float64, "target_p90_pct": pl.Float64},
        orient="row",
    )
    return summary.filter(pl.col("method") != "nearest").join(targets, on=["table", "class"]).filter(
        (pl.col("median_pct") > pl.col("target_median_pct")) | (pl.col("p90_pct") > pl.col("target_p90_pct"))
    )


def latest_version(home, system: str, framework: str, slices: pl.DataFrame | None = None) -> str:
    """The newest version with data for (system, framework); ValueError lists what exists."""
    from warehouse.read import available_slices

    from estimator.lookup.query import _version_key

    have = available_slices(home) if slices is None else slices
    mine = have.filter((pl.col("system") == system) & (pl.col("framework") == framework))
    if mine.height == 0:
        pairs = sorted({f"{s}/{f}" for s, f in have.select("system", "framework").iter_rows()})
        raise ValueError(f"no data for {system}/{framework}; have: {', '.join(pairs) or 'nothing'}")
    return sorted(mine["version"].unique().to_list(), key=_version_key)[-1]


def format_table(table: pl.DataFrame) -> str:
    """Markdown: table | class | method | n | median % | p90 % | target | met."""
    lines = ["| table | class | method | n | median % | p90 % | target (median / p90) | met |",
             "|---|---|---|---:|---:|---:|---|---|"]
    order = {"R": 0, "G": 1, "E": 2, "SOL": 3}
    rows = sorted(table.iter_rows(named=True),
                  key=lambda r: (r["table"], r["method"] == "nearest", order.get(r["class"], 9)))
    for r in rows:
        target = TARGETS.get((r["table"], r["class"])) if r["method"] != "nearest" else None
        met = "" if target is None else ("yes" if r["median_pct"] <= target[0] and r["p90_pct"] <= target[1]
                                         else "no")
        tgt = "" if target is None else f"{target[0]:g} / {target[1]:g}"
        lines.append(f"| {r['table']} | {r['class']} | {r['method']} | {r['n']} | {r['median_pct']:.2f} | "
                     f"{r['p90_pct']:.2f} | {tgt} | {met} |")
    return "\n".join(lines)


def plot_errors(errors: pl.DataFrame, path, title: str | None = None) -> None:
    """Predicted vs measured (log-log), one panel per table, one colour per class; PNG at `path`.

    `title` should name the system, backend, version and dtypes the points came from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    tables = sorted(errors["table"].unique().to_list())
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 4.2), squeeze=False)
    colours = {"R": "tab:blue", "G": "tab:green", "E": "tab:red", "SOL": "tab:gray"}
    for ax, table in zip(axes[0], tables):
        sub = errors.filter((pl.col("table") == table) & (pl.col("method") != "nearest"))
        lo = float(min(sub["measured_ms"].min(), sub["pred_ms"].min()))
        hi = float(max(sub["measured_ms"].max(), sub["pred_ms"].max()))
        for cls, colour in colours.items():
            part = sub.filter(pl.col("class") == cls)
            if part.height:
                med = part["abs_err_pct"].median()
                ax.scatter(part["measured_ms"], part["pred_ms"], s=5, alpha=0.5, color=colour,
                           label=f"{cls} (median {med:.1f}%)")
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(table)
        ax.set_xlabel("measured ms")
        ax.set_ylabel("estimated ms")
        for axis in (ax.xaxis, ax.yaxis):  # 1-2-5 labels, plain numbers, no minor labels (they overlapped)
            axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=6))
            axis.set_major_formatter(ticker.FuncFormatter(lambda v, _p: f"{v:g}"))
            axis.set_minor_formatter(ticker.NullFormatter())
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
