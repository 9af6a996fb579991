"""`perfwh accuracy`: the cross-validation table (median / p90 absolute % error)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "accuracy",
        help="cross-validate the estimator on held-out measurements",
        description="Hold out points (R: 10% random interior, G: a middle sequence line, "
        "E: the largest sequence, SOL: calibrated SOL alone), rebuild calibration and grids "
        "without them, and report median / p90 absolute % error per table and class, "
        "with literal nearest neighbour as the baseline.",
    )
    p.add_argument("--system", default="h200_sxm", help="GPU system with data (`perfwh coverage` lists them)")
    p.add_argument("--backend", default="trtllm", help="framework with data: trtllm, vllm, sglang, perfwh")
    p.add_argument("--version", default=None, help="default: the latest with data")
    p.add_argument("--tables", nargs="+", default=None, help="default: the four *_module tables")
    p.add_argument("--seed", type=int, default=0, help="seed of the random held-out points")
    p.add_argument("--no-baseline", action="store_true", help="skip the nearest-neighbour baseline")
    p.add_argument("--errors-out", type=Path, help="write per-point errors (Parquet) (default: not written)")
    p.add_argument("--plot", type=Path, help="write a predicted-vs-measured figure (PNG) (default: no figure)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--home", default=None, help="warehouse folder (default: $PERFWH_HOME)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from warehouse.read import read_perf_points

    from estimator.accuracy import MODULE_TABLES, format_table, latest_version, run_accuracy, summarize

    backend = args.backend.lower()
    version = args.version or latest_version(args.home, args.system, backend)
    points = read_perf_points(args.home, system=args.system, framework=backend, version=version)
    errors = run_accuracy(points, tables=tuple(args.tables or MODULE_TABLES), seed=args.seed,
                          baseline=not args.no_baseline)
    table = summarize(errors)
    if args.errors_out:
        errors.write_parquet(args.errors_out)
    if args.plot:
        from estimator.accuracy import plot_errors

        dtypes = ", ".join(f"{c} {'/'.join(sorted(str(v) for v in points[c].unique().drop_nulls()))}"
                           for c in ("gemm_type", "kv_cache_dtype", "attn_dtype"))
        plot_errors(errors, args.plot, title=f"Estimator accuracy on held-out points: {args.system} / {backend} "
                    f"{version}, seed {args.seed} ({dtypes})")
    if args.json:
        print(json.dumps(table.to_dicts(), indent=2))
    else:
        print(f"accuracy on {args.system} / {backend} {version} (seed {args.seed}): "
              "absolute % error of held-out points")
        print(format_table(table))
    return 0
