"""Off-grid validation (issue 12 item 5): the estimator's error on measured shapes it never saw.

    python benchmarks/offgrid_validation.py [--raw data/raw] [--measured benchmarks/offgrid]
        [--system h200_sxm] [--version 0.1] [--json] [--errors-out errors.parquet]
    python benchmarks/offgrid_validation.py --write-spec spec.yaml [--raw data/raw] [--seed 0]

The fit uses the project's own raw logs (`--raw`, default data/raw) only; the
validation measurements (`--measured`, default benchmarks/offgrid: collector
`perfwh.run/1` JSONL of the same system, taken at off-grid shapes) are held
out from every fit. Each validation shape is classed against the measured
axes of its own slice (op, heads, gemm, KV dtype, prefix) in the fit data:

  interior  inside the slice's batch and sequence range, off at least one grid value
  past      sequence beyond the slice's largest measured value (batch inside)
  on-grid   both values measured (reported, not a target)
  outside   anything else (batch beyond the range), reported only

`--write-spec` writes a collector spec (`python -m collector run --spec ...`)
of shapes defined from the fit data's axes: batch 3, 6, 12, 24, 48, 96 (the
geometric middles x1.5 of the power-of-two grid), sequence values 1.5x the
measured ones (between two grid values), and past the largest (1.5x, 3x);
the collector's sweep limits (b * kv_len <= 2^24, b * isl <= 32,768) apply.

Targets (issue 12): interior <= 1.5% median / 5% p90 per op; past <= 5% / 12%.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from estimator.accuracy.protocol import predict  # noqa: E402
from estimator.slices import CONTEXT_OPS, SLICE_KEYS, seq_values  # noqa: E402

OPS = ("dsa_context", "dsa_generation", "mla_context", "mla_generation")
OFF_BATCH = (3, 6, 12, 24, 48, 96)
MAX_KV_TOKENS = 1 << 24  # generation: batch * kv_len (the default sweep's limit)
MAX_TOKENS = 32768  # context: batch * isl at batch > 1
TARGETS = {"interior": (1.5, 5.0), "past": (5.0, 12.0)}
VARIANT = ("num_heads", "gemm_type", "kv_cache_dtype", "prefix")


def _points(paths: list[Path], home: Path) -> pl.DataFrame:
    """Perf points (median per shape) of raw logs, through a throw-away warehouse."""
    from warehouse.ingest import ingest_paths
    from warehouse.read import read_perf_points

    ingest_paths(paths, home)
    pts = read_perf_points(home)
    return pts.filter(pl.col("op").is_in(list(OPS))).with_columns(
        seq_values(pts).alias("seq_len"), pl.col("prefix").fill_null(0))


def slice_axes(points: pl.DataFrame) -> pl.DataFrame:
    """Per slice: sorted measured batch and sequence values (lists)."""
    return points.group_by(list(SLICE_KEYS)).agg(
        pl.col("batch_size").unique().sort().alias("batches"), pl.col("seq_len").unique().sort().alias("seqs"))


def classify(fit: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """`test` (with seq_len) plus `class` (interior / past / on-grid / outside / no-slice), against
    the measured axes of the same slice in `fit`."""
    axes = slice_axes(fit)
    t = test.join(axes, on=list(SLICE_KEYS), how="left", nulls_equal=True)
    b, s = pl.col("batch_size"), pl.col("seq_len")
    b_in = (b >= pl.col("batches").list.min()) & (b <= pl.col("batches").list.max())
    s_in = (s >= pl.col("seqs").list.min()) & (s <= pl.col("seqs").list.max())
    on = pl.col("batches").list.contains(b) & pl.col("seqs").list.contains(s)
    cls = (pl.when(pl.col("batches").is_null()).then(pl.lit("no-slice"))
           .when(b_in & s_in & on).then(pl.lit("on-grid"))
           .when(b_in & s_in).then(pl.lit("interior"))
           .when(b_in & (s > pl.col("seqs").list.max())).then(pl.lit("past"))
           .otherwise(pl.lit("outside")))
    return t.with_columns(cls.alias("class")).drop("batches", "seqs")


def offgrid_shapes(fit: pl.DataFrame, *, seed: int = 0, per_op: int = 40) -> pl.DataFrame:
    """Validation shapes from the fit data's axes (see the module docstring), `per_op` per op:
    3/4 interior (off-grid batch and/or sequence), 1/4 past the largest sequence."""
    rng = random.Random(seed)
    rows = []
    axes = slice_axes(fit).filter(pl.col("prefix") == 0).sort(list(SLICE_KEYS))
    for op in OPS:
        mine = axes.filter(pl.col("op") == op)
        if mine.height == 0:
            continue
        gen = op not in CONTEXT_OPS
        limit = (lambda b, s: b * s <= MAX_KV_TOKENS) if gen else (lambda b, s: b == 1 or b * s <= MAX_TOKENS)
        interior, past = [], []
        for r in mine.iter_rows(named=True):
            bs, ss = r["batches"], r["seqs"]
            off_b = [b for b in OFF_BATCH if bs[0] < b < bs[-1] and b not in bs]
            off_s = [int(1.5 * s) for s in ss[:-1] if int(1.5 * s) not in ss]
            cands = [(b, s) for b in off_b for s in ss + off_s] + [(b, s) for b in bs for s in off_s]
            interior += [(r, b, s) for b, s in cands if limit(b, s)]
            past_b = [1] + off_b[:4] if gen else [1]
            past += [(r, b, f * ss[-1]) for b in past_b for f in (1.5, 3) if limit(b, f * ss[-1])]
        n_past = min(len(past), per_op // 4)
        picks = rng.sample(interior, min(len(interior), per_op - n_past)) + rng.sample(past, n_past)
        for r, b, s in picks:
            rows.append({"op": op, "num_heads": r["num_heads"], "gemm_type": r["gemm_type"],
                         "kv_cache_dtype": r["kv_cache_dtype"], "batch_size": int(b),
                         "isl": int(s) if not gen else 1, "seq": 0 if not gen else int(s)})
    return pl.DataFrame(rows).unique(maintain_order=True)


def spec_yaml(shapes: pl.DataFrame, seed: int) -> str:
    """A collector sweep spec (explicit shapes) for `python -m collector run --spec`."""
    lines = ["# Off-grid validation shapes (benchmarks/offgrid_validation.py --write-spec, seed %d)." % seed,
             "# HELD OUT: measure into benchmarks/offgrid/, never into data/raw, never fit on them.",
             "timing: {target_ms: 12, min_samples: 5, max_samples: 20, warmup: 1, l2_flush: true}", "shapes:"]
    for r in shapes.iter_rows(named=True):
        lines.append(f"  - [{r['op']}, {r['num_heads']}, {r['gemm_type']}, {r['kv_cache_dtype']}, "
                     f"{r['batch_size']}, {r['isl']}, {r['seq']}]")
    return "\n".join(lines) + "\n"


def score(fit: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """Per validation point: class, measured, estimate (calibration and grids fitted on `fit`
    only), signed and absolute % error."""
    test = classify(fit, test).filter(pl.col("class") != "no-slice")
    if test.height == 0:
        raise ValueError("no validation point shares a slice with the fit data (other system or version?)")
    pred = predict(fit.drop("seq_len"), test.drop("seq_len", "class"))
    return pred.with_columns(test["class"], ((pl.col("pred_ms") / pl.col("latency_ms") - 1) * 100).alias("err_pct"),
                             ).with_columns(pl.col("err_pct").abs().alias("abs_err_pct"))


def summarize(errors: pl.DataFrame, by: tuple[str, ...] = ("op", "class")) -> pl.DataFrame:
    """n, median / p90 absolute % error and median signed % error (the bias) per group."""
    return (errors.group_by(list(by)).agg(
        pl.len().alias("n"), pl.col("abs_err_pct").median().alias("median_pct"),
        pl.col("abs_err_pct").quantile(0.9, "linear").alias("p90_pct"),
        pl.col("err_pct").median().alias("bias_pct")).sort(list(by)))


def batch_bias(errors: pl.DataFrame) -> pl.DataFrame:
    """Median signed error of generation interior points per op and batch (the batch-direction bias)."""
    gen = errors.filter(pl.col("op").str.ends_with("_generation") & (pl.col("class") == "interior"))
    return summarize(gen, ("op", "batch_size"))


def format_markdown(summary: pl.DataFrame) -> str:
    lines = ["| op | class | n | median % | p90 % | bias (median signed) % | target | met |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in summary.iter_rows(named=True):
        t = TARGETS.get(r["class"])
        met = "" if t is None else ("yes" if r["median_pct"] <= t[0] and r["p90_pct"] <= t[1] else "no")
        lines.append(f"| {r['op']} | {r['class']} | {r['n']} | {r['median_pct']:.2f} | {r['p90_pct']:.2f} | "
                     f"{r['bias_pct']:+.2f} | {'' if t is None else f'{t[0]:g} / {t[1]:g}'} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--raw", type=Path, default=REPO / "data" / "raw", help="fit data (raw logs)")
    p.add_argument("--measured", type=Path, default=REPO / "benchmarks" / "offgrid",
                   help="validation measurements (collector logs), held out")
    p.add_argument("--system", default="h200_sxm")
    p.add_argument("--version", default="0.1",
                   help="collector version of the fit (default 0.1: benchmarks/offgrid was measured with it; "
                        "data/raw also holds later H200 generation tables, 0.4 and 0.5)")
    p.add_argument("--write-spec", type=Path, help="write the collector spec of off-grid shapes and stop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--errors-out", type=Path, help="per-point errors (Parquet)")
    a = p.parse_args(argv)
    for path in (a.raw,) if a.write_spec else (a.raw, a.measured):
        if not path.exists():
            print(f"offgrid_validation: {path} does not exist", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        fit = _points([a.raw], Path(tmp) / "fit").filter((pl.col("system") == a.system)
                                                          & (pl.col("version") == a.version))
        if fit.height == 0:
            print(f"offgrid_validation: no {a.system} {a.version} points under {a.raw}", file=sys.stderr)
            return 2
        if a.write_spec:
            shapes = offgrid_shapes(fit, seed=a.seed)
            a.write_spec.write_text(spec_yaml(shapes, a.seed))
            print(f"{shapes.height} shapes -> {a.write_spec}")
            return 0
        test = _points([a.measured], Path(tmp) / "val").filter(pl.col("system") == a.system)
    if test.height == 0:
        print(f"offgrid_validation: no {a.system} validation points under {a.measured}", file=sys.stderr)
        return 2
    try:
        errors = score(fit, test)
    except ValueError as e:
        print(f"offgrid_validation: {e}", file=sys.stderr)
        return 2
    summary = summarize(errors)
    if a.errors_out:
        errors.write_parquet(a.errors_out)
    if a.json:
        print(json.dumps({"summary": summary.to_dicts(), "batch_bias": batch_bias(errors).to_dicts()}, indent=1))
        return 0
    print(f"off-grid validation, {a.system}: fit {a.raw} ({fit.height} points), "
          f"held-out {a.measured} ({test.height} points)")
    print(format_markdown(summary))
    print("\ngeneration interior points, median signed error by batch (batch-direction bias):")
    bb = batch_bias(errors)
    print(" ".join(f"{r['op'].split('_')[0]} b={r['batch_size']}: {r['bias_pct']:+.2f}% (n={r['n']})"
                   for r in bb.iter_rows(named=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
