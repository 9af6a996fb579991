"""aiconfigurator-core's own DSA / MLA module estimates under perfwh's cross-validation protocol.

    python benchmarks/aiconfigurator_baseline.py [--home WAREHOUSE] [--shared ../shared/data/aiconfigurator]
        [--seeds 0] [--bootstrap [N]] [--json]

For each hold-out class (R, G, E of `estimator.accuracy.protocol.holdout_masks`) and seed:
the TRAINING points (all but the held-out mask) of the four *_module tables are
written in aiconfigurator's own table format (its `*_module_perf.parquet`
columns) into a temporary systems folder that shadows the installed one (every
other file is a symlink to the installed package), aiconfigurator loads them
through `get_database` and its op classes, and every held-out point is queried
through the op's engine query (`_engine_query`, the path its model estimates
use). perfwh's own prediction (`estimator.accuracy.protocol.predict`) on the same masks
is computed in the same run. Checked per fold: querying training points returns
their measured latency (max relative difference printed).

Query mapping: context s = isl, prefix = step (perfwh `prefix`); generation
s = isl + step = 1 + kv_len (aiconfigurator's table row step=k answers s=k+1).

--bootstrap N (default 2000 resamples when given without N): per cell, a 95%
percentile interval of the difference perfwh minus aiconfigurator in median
and in p90, by resampling the cell's held-out points with replacement (paired:
one resample serves both; aiconfigurator's figure over the resampled points it
answered). A cell where perfwh is above aiconfigurator but every such
difference's interval spans 0 is reported as a tie, not a loss: with 100-400
held-out points a cell's p90 moves by several tenths between resamples.

Exits 0 with a message when aiconfigurator_core or the shared data is absent.
No aiconfigurator or shared data file is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import shared_points  # noqa: E402  (benchmarks/shared_points.py)

# --- the only estimator imports (module paths may move; fix here after merges) ---
from estimator.accuracy.protocol import MODULE_TABLES, holdout_masks, predict  # noqa: E402
from estimator.slices import SLICE_KEYS  # noqa: E402

SYSTEM, BACKEND = "h200_sxm", "trtllm"
# op -> (aiconfigurator family folder, table file stem)
AIC_TABLE = {
    "dsa_context": ("sparse_attention", "dsa_context_module_perf.parquet"),
    "dsa_generation": ("sparse_attention", "dsa_generation_module_perf.parquet"),
    "mla_context": ("mla", "mla_context_module_perf.parquet"),
    "mla_generation": ("mla", "mla_generation_module_perf.parquet"),
}
DEVICE = {"h200_sxm": "NVIDIA H200"}


def _aic_available() -> bool:
    try:
        import aiconfigurator_core  # noqa: F401
    except ImportError:
        return False
    return True


def protocol_points(points: pl.DataFrame) -> pl.DataFrame:
    """The rows and order `estimator.accuracy.protocol.run_accuracy` draws its masks over."""
    pts = points.filter(pl.col("op").is_in(list(MODULE_TABLES))).with_columns(
        pl.when(pl.col("op").str.contains("_context")).then(pl.col("isl")).otherwise(pl.col("kv_len"))
        .alias("seq_len"),
        pl.col("prefix").fill_null(0))
    return pts.sort([*SLICE_KEYS, "batch_size", "seq_len"], nulls_last=True)


def to_aic_table(train: pl.DataFrame, op: str) -> pl.DataFrame:
    """Training rows of one op in aiconfigurator's *_module_perf table columns."""
    rows = train.filter(pl.col("op") == op)
    step = pl.col("prefix") if op.endswith("_context") else pl.col("kv_len")
    return rows.select(
        pl.col("framework").str.to_uppercase().alias("framework"), "version",
        pl.col("system").replace_strict(DEVICE, default=pl.col("system")).alias("device"),
        pl.lit(f"{op}_module").alias("op_name"), "kernel_source",
        pl.col("model") if "model" in rows.columns else pl.lit("").alias("model"),
        "architecture", pl.col("attn_dtype").alias("mla_dtype"), "kv_cache_dtype",
        pl.col("gemm_type").fill_null("bfloat16"), pl.col("num_heads").cast(pl.Int64),
        pl.col("batch_size").cast(pl.Int64), pl.col("isl").fill_null(1).cast(pl.Int64),
        pl.lit(1, pl.Int64).alias("tp_size"), step.fill_null(0).cast(pl.Int64).alias("step"),
        pl.col("latency_ms").alias("latency"))


def shadow_systems(src: Path, dst: Path, replace: dict[str, pl.DataFrame]) -> None:
    """dst mirrors src by symlinks, except the relative paths in `replace`, written as Parquet.

    Only directories on the way to a replaced file are real; a replaced file's
    siblings stay symlinks, and an original table the replacement shadows is absent."""
    on_path = {str(Path(p).parents[i]) for p in replace for i in range(len(Path(p).parents) - 1)}

    def walk(rel: Path) -> None:
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for entry in sorted((src / rel).iterdir()):
            r = rel / entry.name
            if str(r) in replace:
                continue
            if entry.is_dir() and str(r) in on_path:
                walk(r)
            else:
                os.symlink(entry, dst / r)
        for p, frame in replace.items():
            if str(Path(p).parent) == str(rel):
                frame.write_parquet(dst / p)

    walk(Path("."))


def aic_predict(systems: Path, version: str, test: pl.DataFrame) -> tuple[np.ndarray, list[str]]:
    """aiconfigurator's latency for every row of `test` (NaN where it refused, with the reason)."""
    from aiconfigurator_core.sdk import common
    from aiconfigurator_core.sdk import operations as ops
    from aiconfigurator_core.sdk.operations.base import clear_all_op_caches
    from aiconfigurator_core.sdk.perf_database import get_database

    clear_all_op_caches()
    db = get_database(SYSTEM, BACKEND, version, systems_paths=str(systems))
    if db is None:
        raise RuntimeError(f"aiconfigurator found no database for {SYSTEM}/{BACKEND}/{version} in {systems}")
    pred = np.full(test.height, np.nan)
    why: list[str] = [""] * test.height
    ops_cache: dict[tuple, object] = {}
    for i, r in enumerate(test.iter_rows(named=True)):
        key = (r["op"], r["num_heads"], r["kv_cache_dtype"], r["gemm_type"], r["attn_dtype"], r["architecture"])
        try:
            op = ops_cache.get(key)
            if op is None:
                kv = common.KVCacheQuantMode[r["kv_cache_dtype"]]
                fmha = common.FMHAQuantMode[r["attn_dtype"] or "bfloat16"]
                gemm = common.GEMMQuantMode[r["gemm_type"] or "bfloat16"]
                heads = int(r["num_heads"])
                if r["op"] == "dsa_context":
                    op = ops.ContextDSAModule("q", 1, heads, kv, fmha, gemm, architecture=r["architecture"])
                elif r["op"] == "dsa_generation":
                    op = ops.GenerationDSAModule("q", 1, heads, kv, gemm, architecture=r["architecture"])
                else:
                    op = ops.MLAModule("q", 1, r["op"] == "mla_context", heads, kv, fmha, gemm,
                                       native_num_heads=128)
                ops_cache[key] = op
            if r["op"].endswith("_context"):
                res = op._engine_query(db, batch_size=int(r["batch_size"]), s=int(r["isl"]),
                                       prefix=int(r["prefix"] or 0))
            else:
                res = op._engine_query(db, batch_size=int(r["batch_size"]), s=int(r["isl"] or 1) + int(r["kv_len"]))
            val = float(res)
            if math.isfinite(val) and val > 0:
                pred[i] = val
            else:
                why[i] = f"returned {val}"
        except Exception as exc:  # refused queries are counted, not dropped
            why[i] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    return pred, why


def _err(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    return np.abs(pred / meas - 1) * 100


def bootstrap_diff(e_ours: np.ndarray, e_aic: np.ndarray, n: int, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of (perfwh - aiconfigurator) median and p90 absolute % error.

    e_ours, e_aic: the cell's per-point errors, same points, NaN in e_aic where
    aiconfigurator refused. Paired resampling of the points, `n` times."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, e_ours.size, size=(n, e_ours.size))
    ours, aic = e_ours[idx], e_aic[idx]
    out = {}
    for name, q in (("median", 0.5), ("p90", 0.9)):
        diff = np.quantile(ours, q, axis=1) - np.nanquantile(aic, q, axis=1)
        lo, hi = np.nanquantile(diff, [0.025, 0.975])
        out[name] = (float(lo), float(hi))
    return out


def verdict(row: dict) -> str:
    """'yes' (perfwh at or below aiconfigurator in median and p90), 'tie' (above in one of them,
    but each such difference's bootstrap interval spans 0), 'no', or '' (no aiconfigurator figure)."""
    if row["aic_median_pct"] is None:
        return ""
    above = [k for k in ("median", "p90") if row[f"perfwh_{k}_pct"] > row[f"aic_{k}_pct"]]
    if not above:
        return "yes"
    ci = row.get("diff_ci")
    if ci and all(ci[k][0] <= 0.0 <= ci[k][1] for k in above):
        return "tie"
    return "no"


def run(points: pl.DataFrame, version: str, seeds: list[int], check_n: int = 200, bootstrap: int = 0) -> dict:
    import aiconfigurator_core

    installed = Path(aiconfigurator_core.__file__).parent / "systems"
    pts = protocol_points(points)
    rows, refusals, checks = [], [], []
    for seed in seeds:
        masks = holdout_masks(pts, seed=seed)
        for cls in ("R", "G", "E"):
            hold = pl.Series(masks[cls])
            train, test = pts.filter(~hold), pts.filter(hold)
            ours = predict(train, test)["pred_ms"].to_numpy()
            with tempfile.TemporaryDirectory(prefix="aicbase-") as tmp:
                systems = Path(tmp) / "systems"
                replace = {f"data/{SYSTEM}/{AIC_TABLE[op][0]}/{BACKEND}/{version}/{AIC_TABLE[op][1]}":
                           to_aic_table(train, op) for op in MODULE_TABLES}
                shadow_systems(installed, systems, replace)
                aic, why = aic_predict(systems, version, test)
                # training points must come back as measured (aiconfigurator sees exactly them)
                rng = np.random.default_rng(seed)
                sample = train[np.sort(rng.choice(train.height, size=min(check_n, train.height), replace=False))]
                back, _ = aic_predict(systems, version, sample)
            diff = np.abs(back / sample["latency_ms"].to_numpy() - 1)
            checks.append({"seed": seed, "class": cls, "n": sample.height,
                           "max_rel_diff": float(np.nanmax(diff)), "nan": int(np.isnan(back).sum())})
            meas = test["latency_ms"].to_numpy()
            for op in MODULE_TABLES:
                m = (test["op"] == op).to_numpy()
                ok = m & ~np.isnan(aic)
                e_ours, e_aic = _err(ours[m], meas[m]), _err(aic[ok], meas[ok])
                rows.append({
                    "table": op, "class": cls, "seed": seed, "n": int(m.sum()),
                    "perfwh_median_pct": float(np.median(e_ours)), "perfwh_p90_pct": float(np.quantile(e_ours, 0.9)),
                    "aic_median_pct": float(np.median(e_aic)) if e_aic.size else None,
                    "aic_p90_pct": float(np.quantile(e_aic, 0.9)) if e_aic.size else None,
                    "aic_refused": int(m.sum() - ok.sum()),
                })
                if bootstrap and e_aic.size:
                    rows[-1]["diff_ci"] = bootstrap_diff(e_ours, _err(aic[m], meas[m]), bootstrap, seed)
                for j in np.flatnonzero(m & np.isnan(aic)):
                    refusals.append({"seed": seed, "class": cls, "table": op, "reason": why[j]})
    return {"system": SYSTEM, "backend": BACKEND, "version": version, "seeds": seeds, "rows": rows,
            "refusals": refusals, "training_checks": checks}


def format_markdown(result: dict) -> str:
    lines = [f"{result['system']} / {result['backend']} {result['version']}, seeds {result['seeds']}: "
             "absolute % error of held-out points, median / p90",
             "", "| table | class | seed | n | perfwh | aiconfigurator 0.12 | difference (95% CI) | aic refused | "
             "perfwh <= aic |",
             "|---|---|---:|---:|---|---|---|---:|---|"]
    order = {"R": 0, "G": 1, "E": 2}
    for r in sorted(result["rows"], key=lambda r: (r["table"], order[r["class"]], r["seed"])):
        aic = "-" if r["aic_median_pct"] is None else f"{r['aic_median_pct']:.2f} / {r['aic_p90_pct']:.2f}"
        diff = ""
        if r.get("diff_ci"):
            diff = " / ".join(
                f"{r[f'perfwh_{k}_pct'] - r[f'aic_{k}_pct']:+.2f} ({r['diff_ci'][k][0]:+.2f}..{r['diff_ci'][k][1]:+.2f})"
                for k in ("median", "p90"))
        lines.append(f"| {r['table']} | {r['class']} | {r['seed']} | {r['n']} | "
                     f"{r['perfwh_median_pct']:.2f} / {r['perfwh_p90_pct']:.2f} | {aic} | {diff} | "
                     f"{r['aic_refused']} | {verdict(r)} |")
    verdicts = [verdict(r) for r in result["rows"] if verdict(r)]
    figures = [(r, k) for r in result["rows"] if r["aic_median_pct"] is not None for k in ("median", "p90")]
    below = sum(r[f"perfwh_{k}_pct"] <= r[f"aic_{k}_pct"] for r, k in figures)
    lines += ["", f"figures (median and p90 of each cell): {below} of {len(figures)} at or below aiconfigurator; "
              f"cells (table x class x seed): {verdicts.count('yes')} of {len(verdicts)} at or below in both, "
              f"{verdicts.count('tie')} bootstrap ties, {verdicts.count('no')} above"]
    worst = max(c["max_rel_diff"] for c in result["training_checks"])
    nan = sum(c["nan"] for c in result["training_checks"])
    lines += ["", f"training-point check: max |aic/measured - 1| = {worst:.2e} over "
              f"{sum(c['n'] for c in result['training_checks'])} sampled training points ({nan} refused)"]
    if result["refusals"]:
        reasons: dict[str, int] = {}
        for f in result["refusals"]:
            reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
        lines.append("refused / failed aiconfigurator queries: " + "; ".join(
            f"{n} x {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared_points.add_arguments(p)
    p.add_argument("--version", default="1.3.0rc20")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--bootstrap", type=int, nargs="?", const=2000, default=0,
                   help="resamples for the 95%% interval of each cell's difference (default 2000 when given)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not _aic_available():
        print("skipped: aiconfigurator_core is not installed (pip install -e '.[aic]')")
        return 0
    if shared_points.missing(args):
        print(shared_points.missing(args))
        return 0
    import logging

    logging.getLogger("aiconfigurator_core").setLevel(logging.ERROR)
    points = shared_points.slice_points(args, system=SYSTEM, framework=BACKEND, version=args.version)
    if points.height == 0:
        print(f"skipped: no {SYSTEM}/{BACKEND} {args.version} points")
        return 0
    result = run(points, args.version, args.seeds, bootstrap=args.bootstrap)
    print(json.dumps(result, indent=2) if args.json else format_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
