"""The accuracy protocol over several hold-out seeds, this checkout against a git ref.

    python benchmarks/accuracy_seeds.py [--home WAREHOUSE] [--shared ../shared/data/aiconfigurator]
        [--version 1.3.0rc20] [--seeds 0 1 ... 9] [--against main] [--json]

`estimator.accuracy.protocol.run_accuracy` on the H200 TensorRT-LLM tables, once
per seed (the seed draws the R hold-out; G and E do not depend on it), for this
checkout's estimator and for `--against`'s (its `estimator/` exported by
`git archive` into a temporary folder; each side runs in its own process).
Prints per op and class the median / p90 absolute % error: seed 0, the mean
over the seeds, and the range, both sides side by side.

Why: one R fold is 200-400 points, and its p90 moves by a point or more from
seed to seed (MLA context); a change is judged on the mean over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import shared_points  # noqa: E402  (benchmarks/shared_points.py)

CHILD = """
import json, sys
import polars as pl
from estimator.accuracy.protocol import run_accuracy, summarize
pts = pl.read_parquet(sys.argv[1])
rows = []
for seed in json.loads(sys.argv[2]):
    s = summarize(run_accuracy(pts, seed=seed, baseline=False)).filter(pl.col("method") != "nearest")
    rows += [dict(r, seed=seed) for r in s.select("table", "class", "n", "median_pct", "p90_pct").iter_rows(named=True)]
print(json.dumps(rows))
"""


def run_side(code_root: Path, points: Path, seeds: list[int]) -> list[dict]:
    """Protocol rows (table, class, seed, n, median_pct, p90_pct) with `code_root`'s estimator."""
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(points), json.dumps(seeds)], env=env, cwd=code_root,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def export_ref(ref: str, dst: Path) -> Path:
    """`ref`'s estimator/ (and what it imports from the repository root) under dst."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "estimator", "warehouse"], check=True,
                             capture_output=True).stdout
    dst.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "x", "-C", str(dst)], input=archive, check=True)
    return dst


def summarize_seeds(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """Per (table, class): seed-0 figures, mean and range of median / p90 over the seeds."""
    import numpy as np

    out: dict[tuple[str, str], dict] = {}
    for key in sorted({(r["table"], r["class"]) for r in rows}):
        sub = [r for r in rows if (r["table"], r["class"]) == key]
        med = np.array([r["median_pct"] for r in sub])
        p90 = np.array([r["p90_pct"] for r in sub])
        first = min(sub, key=lambda r: r["seed"])
        out[key] = {"seed0": (first["median_pct"], first["p90_pct"]), "mean": (float(med.mean()), float(p90.mean())),
                    "min": (float(med.min()), float(p90.min())), "max": (float(med.max()), float(p90.max())),
                    "seeds": len(sub)}
    return out


def format_markdown(ours: dict, theirs: dict, ref: str, seeds: list[int]) -> str:
    from estimator.accuracy.protocol import TARGETS

    lines = [f"median / p90 absolute % error, seeds {seeds[0]}-{seeds[-1]} ({len(seeds)}); "
             f"{ref} vs this checkout", "",
             f"| table | class | {ref} seed {seeds[0]} | this seed {seeds[0]} | {ref} mean | this mean | "
             "this range (median; p90) | target |", "|---|---|---|---|---|---|---|---|"]
    order = {"R": 0, "G": 1, "E": 2, "SOL": 3}
    for key in sorted(ours, key=lambda k: (k[0], order.get(k[1], 9))):
        a, b = theirs.get(key), ours[key]
        tgt = TARGETS.get(key)

        def f(pair):
            return f"{pair[0]:.2f} / {pair[1]:.2f}"

        lines.append(f"| {key[0]} | {key[1]} | {f(a['seed0']) if a else '-'} | {f(b['seed0'])} | "
                     f"{f(a['mean']) if a else '-'} | {f(b['mean'])} | {b['min'][0]:.2f}-{b['max'][0]:.2f}; "
                     f"{b['min'][1]:.2f}-{b['max'][1]:.2f} | {f'{tgt[0]:g} / {tgt[1]:g}' if tgt else ''} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared_points.add_arguments(p)
    p.add_argument("--system", default="h200_sxm")
    p.add_argument("--backend", default="trtllm")
    p.add_argument("--version", default="1.3.0rc20")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--against", default="main", help="git ref to compare with ('' for none)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if shared_points.missing(args):
        print(shared_points.missing(args))
        return 0
    points = shared_points.slice_points(args, system=args.system, framework=args.backend, version=args.version)
    if points.height == 0:
        print(f"skipped: no {args.system}/{args.backend} {args.version} points")
        return 0
    with tempfile.TemporaryDirectory(prefix="accseeds-") as tmp:
        path = Path(tmp) / "points.parquet"
        points.write_parquet(path)
        ours = summarize_seeds(run_side(REPO, path, args.seeds))
        theirs = {}
        if args.against:
            ref_root = export_ref(args.against, Path(tmp) / "ref")
            theirs = summarize_seeds(run_side(ref_root, path, args.seeds))
    if args.json:
        print(json.dumps({"seeds": args.seeds, "against": args.against,
                          "this": {f"{t}/{c}": v for (t, c), v in ours.items()},
                          "ref": {f"{t}/{c}": v for (t, c), v in theirs.items()}}, indent=2))
    else:
        print(format_markdown(ours, theirs, args.against or "-", args.seeds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
