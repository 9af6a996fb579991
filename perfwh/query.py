"""`perfwh query`: one latency (with its provenance) or a CSV of points."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from estimator.common import FMHAQuantMode, GEMMQuantMode, KVCacheQuantMode


def register(sub) -> None:
    p = sub.add_parser(
        "query",
        help="estimate DSA/MLA attention latency for a shape (or a CSV of shapes)",
        description="Estimate one layer's attention latency. Prints latency, its 80% interval, source "
        "(measured/interpolated/extrapolated/transferred/sol/nearest), expected error, the data version "
        "and the neighbours used; limits: docs/limits.md.",
    )
    p.add_argument("op", help="dsa_context, dsa_generation, mla_context, mla_generation "
                   "(or context_dsa, ...; mla_*_kernel for the bare kernels)")
    p.add_argument("--system", default="h200_sxm", help="GPU system: a spec in estimator/physics/specs "
                   "(h200_sxm, h100_sxm, b200_sxm, ...; `perfwh coverage` lists those with data)")
    p.add_argument("--backend", default="trtllm", help="framework whose data answers: trtllm, vllm, sglang, "
                   "perfwh (the embedded data set `make demo` loads)")
    p.add_argument("--version", default=None,
                   help="backend version (default: per op, the newest version (PEP 440 order) with data for it)")
    p.add_argument("--from", dest="from_system", default=None, metavar="SYSTEM",
                   help="answer from SYSTEM's data, moved to --system through the physics (source "
                   "'transferred'); default: --system's own data, else the system with data nearest by spec")
    p.add_argument("-b", "--batch-size", type=int, help="requests per step (required without --points; no default)")
    p.add_argument("-s", "--seq", type=int, help="isl (context) or kv_len (generation) (required without "
                   "--points; no default)")
    p.add_argument("--num-heads", type=int, default=None, help="attention heads per GPU (required without "
                   "--points; no default)")
    p.add_argument("--prefix", type=int, default=None, help="cached tokens (context ops) (default: 0)")
    p.add_argument("--gemm-type", default="bfloat16", help="projection GEMM precision: " + ", ".join(GEMMQuantMode))
    p.add_argument("--kv-cache-dtype", default="bfloat16", help="KV cache precision: " + ", ".join(KVCacheQuantMode))
    p.add_argument("--attn-dtype", default="bfloat16", help="attention math precision: " + ", ".join(FMHAQuantMode))
    p.add_argument("--architecture", default=None, help="model architecture of the slice, e.g. "
                   "DeepseekV32ForCausalLM (default: the op's usual one)")
    p.add_argument("--kernel-source", default=None, help="kernel of the slice (default: any that has data)")
    p.add_argument("--index-topk", type=int, default=None, help="DSA: keys each query attends to "
                   "(default: the architecture's, 2048 for DeepSeek-V3.2)")
    p.add_argument("--index-n-heads", type=int, default=None, help="DSA: indexer heads (default: the "
                   "architecture's, 64 for DeepSeek-V3.2)")
    p.add_argument("--method", default="interp", choices=("interp", "nearest"),
                   help="interp: the estimator; nearest: the nearest measured point (a baseline)")
    p.add_argument("--points", type=Path, help="CSV of points (collector column names: batch_size, isl, step, num_heads, ...; default: "
                   "one point from -b/-s/--num-heads)")
    p.add_argument("--out", type=Path, help="with --points: output file (default: stdout)")
    p.add_argument("--json", action="store_true", help="JSON output (with --points: a list of row objects)")
    p.add_argument("--home", default=None, help="warehouse folder (default: $PERFWH_HOME)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from perfwh.cli import CliError, check_out_file
    from estimator.lookup.database import PerfDatabase
    from estimator.lookup.query import canonical_op

    op = canonical_op(args.op)
    # Bad input is refused before the database loads (which may rebuild derived tables first).
    frame = None
    if args.points is not None:
        frame = _read_points(args.points)
        if args.out is not None:  # before the database loads, which may rebuild derived tables
            check_out_file("--out", args.out, "a file path")
        _check_points_flags(op, args, frame)
    else:
        if args.out is not None:  # else the answer went to stdout and OUT was never written, silently
            raise CliError(f"--out {args.out} applies with --points only (one point prints to stdout)")
        missing = [f for f, v in (("-b/--batch-size", args.batch_size), ("-s/--seq", args.seq),
                                  ("--num-heads", args.num_heads)) if v is None]
        if missing:
            raise CliError(f"missing {', '.join(missing)} (or pass --points IN.csv)")
    db = PerfDatabase(system=args.system, backend=args.backend, version=args.version, home=args.home,
                      from_system=args.from_system)
    if frame is not None:
        return _batch(db, op, args, frame)
    est = db.estimate(op, batch_size=args.batch_size, s=args.seq, num_heads=args.num_heads,
                      prefix=args.prefix or 0, gemm_type=args.gemm_type, kv_cache_dtype=args.kv_cache_dtype,
                      attn_dtype=args.attn_dtype, architecture=args.architecture,
                      kernel_source=args.kernel_source, index_topk=args.index_topk,
                      index_n_heads=args.index_n_heads, method=args.method)
    if args.json:
        from perfwh.cli import json_text

        print(json_text(est.as_dict(), indent=2))
        return 0
    print(f"{op} on {est.system} / {est.framework} {est.version}: {format_answer(est)}")
    if est.interval_note:
        print(f"  {est.interval_note}")
    print(f"  calibrated SOL {est.sol_ms:.4f} ms, roofline {est.raw_sol_ms:.4f} ms, "
          f"measured/SOL ratio {2.0 ** est.log2_ratio:.3f}")
    if est.transferred_from:
        print(f"  transferred: {est.transferred_from}")
    if est.limit:
        print(f"  limit: {est.limit}: the calibrated SOL answers (docs/limits.md)")
    slice_ = dict(est.slice)
    print("  slice: " + ", ".join(f"{k}={slice_[k]}" for k in ("kernel_source", "architecture", "attn_dtype",
                                                              "kv_cache_dtype", "gemm_type")))
    for n in est.neighbours:
        print(f"  neighbour heads={n.num_heads} prefix={n.prefix} batch={n.batch_size} seq={n.seq_len} "
              f"weight={n.weight:.3f} ({n.source.value})")
    return 0


def format_answer(est) -> str:
    """'0.357 ms, 80% in 0.342-0.371 ms, interpolated (expected error 3.6%)'."""
    if est.low_ms != est.low_ms:  # NaN: no interval model (interval_note says why where known)
        return f"{est.latency_ms:.4g} ms, no 80% interval ({est.source.value})"
    return (f"{est.latency_ms:.4g} ms, 80% in {est.low_ms:.4g}-{est.high_ms:.4g} ms, {est.source.value} "
            f"(expected error {est.expected_error_pct:.1f}%)")


COLLECTOR_RENAMES = {"mla_dtype": "attn_dtype"}
# A collector log's own column that an answer column shares: kept under another name, so that a log
# passed as --points as it is answers (estimate_many refuses the clash) and keeps what it measured.
COLLECTOR_KEPT_AS = {"version": "collector_version"}


def _check_points_flags(op: str, args, frame) -> None:
    """Refuse flags that --points would silently ignore, and columns that say the same thing twice."""
    from perfwh.cli import CliError
    from warehouse.schema import phase_of

    given = [flag for flag, value in (("-b/--batch-size", args.batch_size), ("-s/--seq", args.seq),
                                      ("--prefix", args.prefix)) if value is not None]
    if given:
        raise CliError(f"{', '.join(given)} do(es) not apply with --points: give each point's value as a column "
                       f"of {args.points}")
    if args.method != "interp":
        raise CliError(f"--method {args.method} applies to one point only (--points always interpolates)")
    if args.num_heads is not None and "num_heads" in frame.columns:
        raise CliError(f"--num-heads fills a missing num_heads column, but {args.points} has one")
    step_as = "prefix" if phase_of(op) == "context" else "kv_len"
    if "step" in frame.columns and step_as in frame.columns:
        raise CliError(f"points file {args.points} has both step and {step_as} (the collector's step is "
                       f"{step_as} for {op}); keep one")


def _batch(db, op: str, args, frame) -> int:
    import re

    import polars as pl

    from perfwh.cli import CliError
    from warehouse.schema import phase_of

    if "latency" in frame.columns:  # a collector log (its measured time is `latency`)
        frame = frame.rename({k: v for k, v in COLLECTOR_KEPT_AS.items()
                              if k in frame.columns and v not in frame.columns})
    work = frame.rename({k: v for k, v in COLLECTOR_RENAMES.items() if k in frame.columns})
    context = phase_of(op) == "context"
    if "step" in work.columns:
        work = work.with_columns(pl.col("step").alias("prefix" if context else "kv_len"))
    defaults = {k: getattr(args, k) for k in ("gemm_type", "kv_cache_dtype", "attn_dtype", "architecture",
                                              "kernel_source", "index_topk", "index_n_heads")
                if getattr(args, k) is not None}
    if not context and "isl" in work.columns:
        work = work.drop("isl")  # one new token per request; the KV length is kv_len (step)
    if args.num_heads is not None and "num_heads" not in work.columns:
        work = work.with_columns(pl.lit(args.num_heads).alias("num_heads"))
    try:
        out = db.estimate_many(op, work, **defaults)
    except ValueError as exc:  # rows counted from the first data line: name the file's line instead
        msg = re.sub(r"^row (\d+):", lambda m: f"line {int(m.group(1)) + 2}:", str(exc))
        raise type(exc)(f"points file {args.points}: {msg}") from None
    result = frame.with_columns(out["latency_ms"], out["source"], out["sol_ms"], out["version"], out["low_ms"],
                                out["high_ms"])
    try:
        if args.json:
            text = result.write_json()
            if args.out is None:
                sys.stdout.write(text + "\n")
            else:
                args.out.write_text(text + "\n")
        elif args.out is None:
            result.write_csv(sys.stdout)
        else:
            result.write_csv(args.out)
    except OSError as exc:
        raise CliError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    if note := db.interval_note(op):  # low_ms / high_ms are empty: say why, beside the data
        print(note, file=sys.stderr)
    if args.out is not None:
        counts = result.group_by("source").len().sort("source")
        summary = ", ".join(f"{s} {n}" for s, n in counts.iter_rows())
        print(f"wrote {result.height} rows to {args.out} ({summary})")
    return 0


def _read_points(path: Path):
    """The points CSV, or one line saying why it cannot be read."""
    import polars as pl

    from perfwh.cli import CliError

    if not path.exists():
        raise FileNotFoundError(f"points file {path} does not exist")
    if path.is_dir():
        raise CliError(f"points file {path} is a folder; give a CSV file")
    try:
        frame = pl.read_csv(path, infer_schema_length=None)
    except pl.exceptions.NoDataError:
        raise CliError(f"points file {path} is empty") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(f"points file {path} is not a readable CSV: {first}") from None
    if frame.height == 0:
        raise CliError(f"points file {path} has a header but no rows")
    header = _header(path)
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:  # polars would rename the second one (isl_duplicated_0) and answer from the first
        raise CliError(f"points file {path} has column(s) {', '.join(dup)} more than once")
    return frame


def _header(path: Path) -> list[str]:
    """The CSV's column names as written (polars renames duplicates)."""
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return next(csv.reader(f), [])
