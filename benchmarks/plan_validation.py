"""`perfwh plan` validation (issue 16 item 4): the estimator's error on held-out off-grid points
before and after adding the planned shapes, against adding as many randomly chosen candidates.

    python benchmarks/plan_validation.py --write-random rand.yaml --plan plan.yaml --fit RAW [--seed 0]
    python benchmarks/plan_validation.py --fit RAW --validation VAL --planned PLANNED --random RANDOM \
        [--system h100_sxm] [--version 0.2]

RAW, VAL, PLANNED and RANDOM are collector raw-log folders. The fit uses RAW (plus PLANNED, or
plus RANDOM); VAL (the measured `data/validation/sweep.yaml` shapes) never enters a fit, and the
planner excludes those shapes. The random control draws, from the planner's own candidate pool
(seed 0), as many shapes per op as the plan has. Scores: mean and median absolute % error per op
(`benchmarks/offgrid_validation.py`'s scoring: calibration and grids fitted on the fit data only).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from offgrid_validation import score  # noqa: E402

from perfwh.plan import candidates, collector_key, spec_keys  # noqa: E402
from estimator.slices import seq_values  # noqa: E402


def points(paths: list[Path], home: Path, system: str, version: str) -> pl.DataFrame:
    from warehouse.ingest import ingest_paths
    from warehouse.read import read_perf_points

    ingest_paths(paths, home)
    pts = read_perf_points(home, system=system, version=version)
    return pts.with_columns(seq_values(pts).alias("seq_len"), pl.col("prefix").fill_null(0))


def random_spec(fit: pl.DataFrame, plan_path: Path, exclude: set[tuple], seed: int) -> str:
    """As many candidates per op as the plan holds, drawn uniformly from the planner's pool."""
    planned = spec_keys(plan_path)
    pool = candidates(fit.drop("seq_len"), exclude | planned)
    rng = random.Random(seed)
    lines = [f"# Random control for {plan_path.name} (benchmarks/plan_validation.py, seed {seed}): same pool,",
             "# same count per op. Not for data/raw.",
             "timing: {target_ms: 12, min_samples: 5, max_samples: 20, warmup: 1, l2_flush: true}", "shapes:"]
    for op in sorted({k[0] for k in planned}):
        keys = [collector_key(r) for r in pool.filter(pl.col("op") == op).iter_rows(named=True)]
        keys = [k for k in keys if k[6 if not op.endswith("context") else 5] <= 163840]
        for k in rng.sample(keys, min(len(keys), sum(1 for p in planned if p[0] == op))):
            lines.append(f"  - [{', '.join(str(v) for v in k)}]")
    return "\n".join(lines) + "\n"


def errors(fit: pl.DataFrame, val: pl.DataFrame) -> pl.DataFrame:
    """Every validation point of a measured slice (the same points for every fit: the class labels
    move when added data lands on a validation point's batch or sequence line)."""
    return score(fit, val)


def summary(e: pl.DataFrame) -> pl.DataFrame:
    return e.group_by("op").agg(pl.len().alias("n"), pl.col("abs_err_pct").mean().alias("mean"),
                                pl.col("abs_err_pct").median().alias("median"),
                                pl.col("abs_err_pct").quantile(0.9, "linear").alias("p90")).sort("op")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", type=Path, required=True)
    ap.add_argument("--validation", type=Path)
    ap.add_argument("--planned", type=Path)
    ap.add_argument("--random", type=Path)
    ap.add_argument("--system", default="h100_sxm")
    ap.add_argument("--version", default="0.2")
    ap.add_argument("--write-random", type=Path)
    ap.add_argument("--plan", type=Path, help="with --write-random: the plan spec to match")
    ap.add_argument("--exclude", type=Path, default=REPO / "data" / "validation" / "sweep.yaml")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        fit = points([a.fit], t / "fit", a.system, a.version)
        if a.write_random:
            a.write_random.write_text(random_spec(fit, a.plan, spec_keys(a.exclude), a.seed))
            print(f"wrote {a.write_random}")
            return 0
        val = points([a.validation], t / "val", a.system, a.version)
        runs = {"before (fit only)": fit,
                "after (+ planned)": points([a.fit, a.planned], t / "plan", a.system, a.version),
                "control (+ random)": points([a.fit, a.random], t / "rand", a.system, a.version)}
    rows = []
    for name, f in runs.items():
        s = summary(errors(f, val)).with_columns(pl.lit(name).alias("fit"), pl.lit(f.height).alias("fit_points"))
        rows.append(s)
    out = pl.concat(rows)
    print("| fit | points | op | n | mean abs % | median abs % | p90 abs % |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in out.iter_rows(named=True):
        print(f"| {r['fit']} | {r['fit_points']} | {r['op']} | {r['n']} | {r['mean']:.2f} | {r['median']:.2f} | "
              f"{r['p90']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
