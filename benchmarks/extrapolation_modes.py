"""The extrapolated-hole modes of the grid build (hold, cross, additive), per op, on a warehouse.

    python benchmarks/extrapolation_modes.py --home WAREHOUSE [--system h200_sxm]
        [--slices trtllm/1.3.0rc20 vllm/0.24.0 sglang/0.5.14] [--tail 1 2 3]

Two measurements per (backend, op, kernel source), both on log2(measured / calibrated SOL)
matrices of the slices (the grid build's own input):

* choice: `rules.extrapolation_errors` (each row's last measured cell predicted from the
  slice's other cells in every mode), mean / median, and the mode `rules.choose_extrapolation`
  keeps (what `build_grids` does);
* tail check (not used by the build): the last k measured cells of every row that keeps at
  least two are removed at once and filled by `interp.extrapolate_holes` in each mode; median /
  p90 absolute % error on them. It looks farther past the row's end than the choice does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def slice_matrices(points: pl.DataFrame) -> dict:
    from estimator.grids.build import _slice_matrices, with_sol
    from estimator.physics.calibrate import calibrate, params_from_frame
    from estimator.slices import seq_values

    pts = with_sol(points, params_from_frame(calibrate(points)))
    pts = pts.with_columns(seq_values(points).alias("seq_len"), pl.col("prefix").fill_null(0))
    return _slice_matrices(pts)


def tail_errors(vals: np.ndarray, xb: np.ndarray, xs: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """log2 errors of each mode on the last k measured cells of every row with >= k + 2 cells."""
    from estimator.grids import interp

    known = ~np.isnan(vals)
    held = vals.copy()
    cells = []
    for i in range(vals.shape[0]):
        cols = np.flatnonzero(known[i])
        if cols.size >= k + 2:
            cells += [(i, j) for j in cols[-k:]]
    if not cells:
        return {}
    ri, rj = np.array(cells).T
    held[ri, rj] = np.nan
    out = {}
    for mode in interp.EXTRAPOLATION_MODES:
        filled, _ = interp.extrapolate_holes(held, np.zeros(held.shape, np.int8), xb, xs, mode=mode)
        out[mode] = np.abs(filled[ri, rj] - vals[ri, rj])
    return out


def main() -> int:
    from estimator.grids import interp
    from estimator.grids.rules import choose_extrapolation, extrapolation_errors
    from warehouse.read import read_perf_points

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--system", default="h200_sxm")
    p.add_argument("--slices", nargs="+", default=["trtllm/1.3.0rc20", "vllm/0.24.0", "sglang/0.5.14"])
    p.add_argument("--tail", type=int, nargs="+", default=[1, 2, 3])
    args = p.parse_args()
    modes = interp.EXTRAPOLATION_MODES
    print("log2 x 100 for the choice (mean / median); % for the tail check (median / p90)\n")
    print("| backend | op | kernel source | choice: " + " | ".join(modes) + " | chosen | "
          + " | ".join(f"tail k={k}: " + ", ".join(modes) for k in args.tail) + " |")
    print("|---" * (4 + len(modes) + len(args.tail)) + "|")
    for spec in args.slices:
        framework, version = spec.split("/")
        points = read_perf_points(args.home, system=args.system, framework=framework, version=version)
        if points.height == 0:
            continue
        groups: dict[tuple, list] = {}
        for key, (batch, seq, vals) in slice_matrices(points).items():
            groups.setdefault((key[3], key[4]), []).append((vals, np.log2(batch), np.log2(seq)))
        for (op, source), members in sorted(groups.items()):
            errs = [extrapolation_errors(v, xb, xs) for v, xb, xs in members]
            pooled = {m: np.concatenate([e[m] for e in errs]) for m in modes}
            if pooled["hold"].size == 0:
                continue
            choice = " | ".join(f"{np.mean(pooled[m]) * 100:.2f} / {np.median(pooled[m]) * 100:.2f}" for m in modes)
            tails = []
            for k in args.tail:
                t = [tail_errors(v, xb, xs, k) for v, xb, xs in members]
                t = [x for x in t if x]
                if not t:
                    tails.append("-")
                    continue
                pct = {m: (np.exp2(np.concatenate([x[m] for x in t])) - 1) * 100 for m in modes}
                tails.append(", ".join(f"{np.median(pct[m]):.1f} / {np.quantile(pct[m], 0.9):.1f}" for m in modes))
            print(f"| {framework} | {op} | {source} | {choice} | {choose_extrapolation(errs)} | {' | '.join(tails)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
