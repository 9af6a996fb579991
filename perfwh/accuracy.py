"""`perfwh accuracy`: the cross-validation table (median / p90 absolute % error)."""

from __future__ import annotations

import argparse
from pathlib import Path

from perfwh.cli import json_text


def register(sub) -> None:
    p = sub.add_parser(
        "accuracy",
        help="cross-validate the estimator on held-out measurements",
        description="Hold out points (R: 10% random interior, G: a middle sequence line, "
        "E: the largest sequence, SOL: calibrated SOL alone), rebuild calibration and grids "
        "without them, and report median / p90 absolute % error per table and class, "
        "with literal nearest neighbour as the baseline; then the held-out coverage of the "
        "80% intervals per op and provenance.",
    )
    p.add_argument("--system", default="h200_sxm", help="GPU system with data (`perfwh coverage` lists them)")
    p.add_argument("--backend", default=None, help="framework with data: trtllm, vllm, sglang, perfwh "
                   "(default: trtllm; with --transfer: every backend both systems hold)")
    p.add_argument("--version", default=None, help="default: the latest with data")
    p.add_argument("--tables", nargs="+", default=None, metavar="OP",
                   help="ops to hold points out of: dsa_context, dsa_generation, mla_context, mla_generation, "
                   "mla_context_kernel, mla_generation_kernel (default: the four module ops)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the random held-out points (an integer >= 0)")
    p.add_argument("--no-baseline", action="store_true", help="skip the nearest-neighbour baseline")
    p.add_argument("--no-coverage", action="store_true",
                   help="skip the 80%%-interval coverage check (its extra hold-out folds)")
    p.add_argument("--errors-out", type=Path, help="write per-point errors (Parquet) (default: not written)")
    p.add_argument("--plot", type=Path, help="write a predicted-vs-measured figure (PNG) (default: no figure)")
    p.add_argument("--json", action="store_true", help="print JSON: the error table and the interval coverage")
    p.add_argument("--home", default=None, help="warehouse folder (default: $PERFWH_HOME)")
    p.add_argument("--transfer", metavar="TARGET", default=None,
                   help="leave-one-system-out: remove every TARGET row, predict TARGET's measured module "
                   "points from --from SOURCE's data, beside copying SOURCE's latency and scaling it by "
                   "the raw roofline ratio (--backend/--version narrow it; default: all both hold)")
    p.add_argument("--from", dest="from_system", metavar="SOURCE", default=None,
                   help="with --transfer: the system whose data answers (default: nearest by spec)")
    p.add_argument("--fit-transfer-intervals", action="store_true",
                   help="run the leave-one-system-out protocol on every ordered pair of systems that share a "
                   "backend and version (--transfer / --from narrow the pairs) and write the "
                   "transfer_intervals, transfer_overheads and transfer_terms tables, which give transferred "
                   "answers their 80%% interval and move them across GPU generations (minutes: about 3 for the "
                   "30 pairs of six published systems)")
    p.set_defaults(handler=run)


def _seed(text: str) -> int:
    """argparse type: numpy refused a negative seed with 'expected non-negative integer', naming nothing."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _check_warehouse(home) -> None:
    """A missing home said 'no data for h200_sxm/trtllm; have: nothing'; name the folder instead."""
    from warehouse.read import home_path, warehouse_exists

    if not warehouse_exists(home):
        raise FileNotFoundError(f"no warehouse at {home_path(home)}: run `perfwh ingest PATH` first "
                                "(or pass --home / set PERFWH_HOME)")


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse --errors-out/--plot paths that cannot be written before minutes of cross-validation
    (matplotlib saved `--plot /tmp` as /tmp.png)."""
    from .cli import check_out_file

    for flag, path in (("--errors-out", args.errors_out), ("--plot", args.plot)):
        if path is not None:
            check_out_file(flag, path)


def unmodelled_left_out(points):
    """The points the SOL model can price; the others (nvfp4 GEMMs: no FP4 byte width or peak) are
    left out, with a line on stderr, instead of failing the whole run on their first slice (every
    B200 TensorRT-LLM and vLLM run did: `perfwh accuracy: error: nvfp4`)."""
    import sys

    from estimator.accuracy.transfer import priced

    left = points.filter(~priced())
    if left.height:
        kinds = ", ".join(sorted({f"{g}/{k}" for g, k in left.select("gemm_type", "kv_cache_dtype").iter_rows()}))
        print(f"perfwh accuracy: {left.height} points of slices the estimator does not model left out "
              f"(gemm_type/kv_cache_dtype {kinds})", file=sys.stderr)
    return points.filter(priced())


def run(args: argparse.Namespace) -> int:
    _check_outputs(args)
    _check_warehouse(args.home)
    if args.fit_transfer_intervals:
        given = [f for f, on in (("--json", args.json), ("--errors-out", args.errors_out), ("--plot", args.plot),
                                 ("--backend", args.backend), ("--version", args.version),
                                 ("--tables", args.tables)) if on]
        if given:
            raise ValueError(f"{', '.join(given)} do not apply with --fit-transfer-intervals")
        from perfwh.transfer_fit import run_fit

        return run_fit(args)
    if args.transfer or args.from_system:
        return run_transfer(args)
    import polars as pl

    from warehouse.read import available_slices, read_perf_points

    from estimator.accuracy.protocol import MODULE_TABLES, format_table, latest_version, run_accuracy, summarize
    from estimator.lookup.query import FRAMEWORKS, canonical_op
    from estimator.lookup.versions import VersionError, sort_versions

    tables = tuple(dict.fromkeys(canonical_op(t) for t in args.tables)) if args.tables else MODULE_TABLES
    backend = FRAMEWORKS.get((args.backend or "trtllm").lower(), (args.backend or "trtllm").lower())
    slices = available_slices(args.home)
    version = args.version or latest_version(args.home, args.system, backend, slices)
    mine = slices.filter((pl.col("system") == args.system) & (pl.col("framework") == backend))
    if version not in mine["version"].to_list():
        raise VersionError(f"unknown version {version!r} for {args.system}/{backend}; valid: "
                           f"{', '.join(sort_versions(mine['version'].unique().to_list()))}")
    ops = set(mine.filter(pl.col("version") == version)["op"].to_list())
    if not ops & set(tables):
        raise ValueError(f"no points for {', '.join(tables)} in {args.system}/{backend} {version}; "
                         f"ops with points: {', '.join(sorted(ops))}")
    points = unmodelled_left_out(read_perf_points(args.home, system=args.system, framework=backend, version=version))
    errors = run_accuracy(points, tables=tables, seed=args.seed, baseline=not args.no_baseline)
    table = summarize(errors)
    if args.errors_out:
        errors.write_parquet(args.errors_out)
    if args.plot:
        from estimator.accuracy.protocol import plot_errors

        dtypes = ", ".join(f"{c} {'/'.join(sorted(str(v) for v in points[c].unique().drop_nulls()))}"
                           for c in ("gemm_type", "kv_cache_dtype", "attn_dtype"))
        plot_errors(errors, args.plot, title=f"Estimator accuracy on held-out points: {args.system} / {backend} "
                    f"{version}, seed {args.seed} ({dtypes})")
    coverage = None
    if not args.no_coverage:
        from estimator.accuracy.interval_fit import coverage_table, cv_residuals

        coverage = coverage_table(cv_residuals(points, tables=tables, seed=args.seed))
    if args.json:
        print(json_text({"errors": table.to_dicts(),
                          "coverage": None if coverage is None else coverage.to_dicts()}, indent=2))
    else:
        print(f"accuracy on {args.system} / {backend} {version} (seed {args.seed}): "
              "absolute % error of held-out points")
        print(format_table(table))
        if coverage is not None:
            from estimator.accuracy.interval_fit import format_coverage

            inside = int(coverage["within_75_85"].sum())
            print(f"\n80% interval coverage on held-out points (cross-fitted: each point's interval "
                  f"comes from a model fitted without it), {inside}/{coverage.height} within 75-85%:")
            print(format_coverage(coverage))
            print("measured answers cannot be held out: they borrow the op's closest interpolated interval; "
                  "answers filled from sibling slices (transferred) with few held-out points take the op's "
                  "extrapolated width scaled by a ratio pooled over ops.")
    return 0


def run_transfer(args: argparse.Namespace) -> int:
    """`perfwh accuracy --transfer TARGET --from SOURCE`: the leave-one-system-out table."""
    import polars as pl

    from warehouse.read import available_slices, perf_points_from, scan_measurements

    from estimator.lookup.query import FRAMEWORKS
    from estimator.accuracy.transfer import MODULE_OPS, format_transfer_table, priced, summarize_transfer, transfer_protocol
    from estimator.physics.transfer import nearest_source, proxy_pairs

    if not args.transfer:
        raise ValueError("--from applies with --transfer TARGET only")
    backend = FRAMEWORKS.get(args.backend.lower(), args.backend.lower()) if args.backend else None
    have = available_slices(args.home).filter(pl.col("op").is_in(list(MODULE_OPS)))
    if backend:
        have = have.filter(pl.col("framework") == backend)
    if args.version:
        have = have.filter(pl.col("version") == args.version)
    systems = set(have["system"].to_list())
    if args.transfer not in systems:
        raise ValueError(f"no module points for {args.transfer}"
                       f"{' / ' + backend if backend else ''}{' ' + args.version if args.version else ''} to "
                       f"score a transfer on; systems with data: {', '.join(sorted(systems)) or 'none'}")
    source = args.from_system or nearest_source(args.transfer, systems - {args.transfer})
    # other systems of the target's and source's launch classes measure how the overhead moves
    proxies = {x for pair in proxy_pairs(args.transfer, source, systems) for x in pair}
    lf = scan_measurements(args.home).filter(pl.col("system").is_in([args.transfer, source, *proxies])
                                             & pl.col("op").is_in(list(MODULE_OPS)))
    if backend:
        lf = lf.filter(pl.col("framework") == backend)
    if args.version:
        lf = lf.filter(pl.col("version") == args.version)
    points = perf_points_from(lf)
    errors = transfer_protocol(points, args.transfer, source)
    table = summarize_transfer(errors)
    if args.errors_out:
        errors.write_parquet(args.errors_out)
    if args.json:
        print(json_text(table.to_dicts(), indent=2))
    else:
        print(f"transfer to {args.transfer} from {source} (every {args.transfer} row removed before calibration "
              "and grids): absolute % error of its measured module points, on the shapes both measured")
        print(format_transfer_table(table))
        cols = ["system", "gemm_type", "kv_cache_dtype"]
        left = points.filter(~priced()).group_by(cols).len().sort(cols)
        if left.height:
            print("left out (no SOL byte width for the precision): " + ", ".join(
                f"{n} {sys} {gemm}/{kv} points" for sys, gemm, kv, n in left.iter_rows()))
    return 0
