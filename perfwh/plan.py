"""`perfwh plan`: the shapes to measure next, from the estimator's own error model (issue 16 item 4).

Candidates are the off-grid shapes of each measured slice (batch and sequence values between and
1.5x past the measured ones, within the collector sweep's limits). Each gets the estimator's
expected error (the 80% interval model's `expected_error_pct` for its answer class and its
octave distance to the nearest measured point) and a cost in GPU-seconds (the collector's timing
loop at the estimated latency). Picks are greedy by expected error per GPU-second; after each pick
the candidates of the same group get their distance to the new point (their expected error falls
where the interval model says it would), and the score of the other candidates of the same slice
(op, precisions, heads, prefix) is divided by 1 + the slice's picks so far, so the budget spreads
over the slices with the widest intervals instead of piling into the cheapest corner of one. The result is a
collector sweep spec (`python -m collector run --spec plan.yaml`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from perfwh.cli import CliError, check_out_file
from warehouse.vocab import op_names

GROUP = ("op", "kernel_source", "architecture", "attn_dtype", "gemm_type", "kv_cache_dtype")
MAX_KV_TOKENS = 1 << 24  # collector sweep limits (collector/sweeps/default.yaml)
MAX_TOKENS = 32768
MAX_TOKENS_B1 = 131072
MAX_BATCH = 256
# collector timing loop (collector/timing.py): warm-up + capture + 2 replays + sizing replay, then
# clamp(12 ms / t, 5, 20) samples, each after a 256 MiB L2 flush (~0.12 ms on an H100); plus the
# shape's set-up (inputs, caches, worker round trip)
SETUP_S = 0.05
FLUSH_MS = 0.12


def shape_cost_s(latency_ms: np.ndarray) -> np.ndarray:
    """GPU-seconds the collector spends on one shape whose call takes `latency_ms`."""
    lat = np.asarray(latency_ms, dtype=np.float64)
    n = np.clip(12.0 / np.maximum(lat, 1e-3), 5, 20)
    return SETUP_S + (n + 5) * (lat + FLUSH_MS) / 1000.0


def _between(values: list[int]) -> list[int]:
    """Off-grid values: 1.5x each measured value that is not itself measured (between two
    powers of two on the default grid; past the largest once)."""
    have = set(values)
    return sorted({int(1.5 * v) for v in values} - have)


def within_limits(op: str, batch: np.ndarray, seq: np.ndarray) -> np.ndarray:
    if op.endswith("_generation") or op.endswith("generation_kernel"):
        return (batch * seq <= MAX_KV_TOKENS) & (batch <= MAX_BATCH)
    return np.where(batch == 1, seq <= MAX_TOKENS_B1, batch * seq <= MAX_TOKENS) & (batch <= MAX_BATCH)


def seq_of(points: pl.DataFrame) -> pl.Expr:
    return pl.when(pl.col("op").str.contains("context")).then(pl.col("isl")).otherwise(pl.col("kv_len"))


def candidates(points: pl.DataFrame, exclude: set[tuple] = frozenset()) -> pl.DataFrame:
    """Unmeasured off-grid shapes per slice (group + heads + prefix), within the sweep limits.
    `exclude`: (op, heads, gemm, kv_dtype, batch, isl, prefix | kv_len) keys never proposed
    (held-out validation shapes)."""
    pts = points.with_columns(seq_of(points).alias("seq"), pl.col("prefix").fill_null(0))
    rows = []
    for key, sub in pts.group_by([*GROUP, "num_heads", "prefix"], maintain_order=True):
        k = dict(zip([*GROUP, "num_heads", "prefix"], key))
        bs = sorted(set(sub["batch_size"].to_list()))
        ss = sorted(set(sub["seq"].to_list()))
        measured = set(zip(sub["batch_size"].to_list(), sub["seq"].to_list()))
        b_all = sorted(set(bs) | {b for b in _between(bs) if b < bs[-1]})
        s_all = sorted(set(ss) | set(_between(ss)))
        b, s = (a.ravel() for a in np.meshgrid(np.array(b_all), np.array(s_all), indexing="ij"))
        ok = within_limits(k["op"], b, s)
        for bb, sq in zip(b[ok].tolist(), s[ok].tolist()):
            if (bb, sq) in measured:
                continue
            rows.append({**k, "batch_size": bb, "seq": sq})
    out = pl.DataFrame(rows) if rows else pl.DataFrame()
    if out.height and exclude:
        keys = [collector_key(r) for r in out.iter_rows(named=True)]
        out = out.filter(pl.Series([kk not in exclude for kk in keys]))
    return out


def collector_key(r: dict) -> tuple:
    ctx = "context" in r["op"]
    return (r["op"], int(r["num_heads"]), r["gemm_type"] or "bfloat16", r["kv_cache_dtype"], int(r["batch_size"]),
            int(r["seq"]) if ctx else 1, int(r["prefix"]) if ctx else int(r["seq"]))


def _coords(frame: pl.DataFrame) -> np.ndarray:
    """Octave coordinates of the estimator's distance (lookup/distance.py): heads, prefix, batch, seq."""
    return np.stack([np.log2(frame["num_heads"].to_numpy().astype(float)),
                     np.log2(1.0 + frame["prefix"].to_numpy().astype(float)),
                     np.log2(frame["batch_size"].to_numpy().astype(float)),
                     np.log2(frame["seq"].to_numpy().astype(float))], axis=1)


def plan(points: pl.DataFrame, db, *, budget_s: float, exclude: set[tuple] = frozenset(),
         max_shapes: int | None = None) -> pl.DataFrame:
    """Greedy choice of candidates by expected error per GPU-second within `budget_s`.

    `db`: a PerfDatabase over `points` (its interval model gives the expected errors). Returns the
    picks in order with op, heads, gemm_type, kv_cache_dtype, batch_size, seq, prefix,
    latency_ms (estimate), expected_error_pct (before the pick), cost_s."""
    from scipy.spatial import cKDTree

    from estimator.lookup.intervals import class_code
    from estimator.slices import model_for

    cand = candidates(points, exclude)
    if cand.height == 0:
        return cand
    pts = points.with_columns(seq_of(points).alias("seq"), pl.col("prefix").fill_null(0))
    parts = []
    for key, sub in cand.group_by(list(GROUP), maintain_order=True):
        g = dict(zip(GROUP, key))
        ctx = "context" in g["op"]
        max_len = model_for(g["op"], g["architecture"]).max_position_embeddings  # the estimator refuses past it
        sub = sub.filter((pl.col("seq") + (pl.col("prefix") if ctx else 0)) <= max_len)
        if sub.height == 0:
            continue
        q = sub.rename({"seq": "isl" if ctx else "kv_len"})
        if not ctx:
            q = q.drop("prefix")
        est = db.estimate_many(g["op"], q.select("batch_size", "num_heads", "isl" if ctx else "kv_len",
                                                  *(["prefix"] if ctx else [])),
                               gemm_type=g["gemm_type"] or "bfloat16", kv_cache_dtype=g["kv_cache_dtype"],
                               kernel_source=g["kernel_source"])
        mine = pts
        for c in GROUP:
            mine = mine.filter(pl.col(c).is_null() if g[c] is None else pl.col(c) == g[c])
        dist = cKDTree(_coords(mine)).query(_coords(sub), k=1, p=np.inf)[0]
        codes = np.array([class_code(s) for s in est["source"].to_list()])
        parts.append(sub.with_columns(pl.Series("latency_ms", est["latency_ms"].to_numpy()),
                                      pl.Series("source", est["source"].to_list()),
                                      pl.Series("code", codes), pl.Series("distance", dist)))
    if not parts:
        return cand.clear()
    cand = pl.concat(parts, how="vertical_relaxed").with_row_index("_i")
    iv = db.intervals
    ops = cand["op"].to_list()
    err = np.empty(cand.height)
    for op in set(ops):
        m = cand["op"].to_numpy() == op
        err[m] = iv.quantiles_many(op, cand["code"].to_numpy()[m], cand["distance"].to_numpy()[m])[2]
    err = np.nan_to_num(err, nan=0.0)
    cost = shape_cost_s(cand["latency_ms"].to_numpy())
    xyz = _coords(cand)
    group_id = cand.select(pl.concat_str([pl.col(c).fill_null("") for c in GROUP], separator="|"))
    group_id = group_id.to_series().to_numpy()
    dist = cand["distance"].to_numpy().copy()
    code = cand["code"].to_numpy()
    slice_id = cand.select(pl.concat_str([pl.col(c).cast(pl.String).fill_null("")
                                          for c in (*GROUP, "num_heads", "prefix")], separator="|"))
    slice_id = np.unique(slice_id.to_series().to_numpy(), return_inverse=True)[1]
    n_in_slice = np.zeros(slice_id.max() + 1)
    taken = np.zeros(cand.height, dtype=bool)
    picks, picked_err, spent = [], [], 0.0
    while True:
        # 1 / (1 + picks in the slice so far): the interval model's distance buckets cannot see that a
        # second off-grid line in the same slice teaches the grid less than the first
        score = np.where(taken | (cost > budget_s - spent), -1.0, err / cost / (1.0 + n_in_slice[slice_id]))
        i = int(np.argmax(score))
        if score[i] <= 0 or (max_shapes is not None and len(picks) >= max_shapes):
            break
        taken[i] = True
        n_in_slice[slice_id[i]] += 1
        picks.append(i)
        picked_err.append(err[i])
        spent += cost[i]
        same = group_id == group_id[i]
        d_new = np.max(np.abs(xyz[same] - xyz[i]), axis=1)
        closer = d_new < dist[same]
        if closer.any():
            idx = np.flatnonzero(same)[closer]
            dist[idx] = d_new[closer]
            # a measured neighbour makes the answer an interpolation from it
            code[idx] = class_code("interpolated")
            err[idx] = np.nan_to_num(iv.quantiles_many(ops[i], code[idx], dist[idx])[2], nan=0.0)
    out = cand[picks].with_columns(pl.Series("expected_error_pct", picked_err), pl.Series("cost_s", cost[picks]))
    return out.drop("_i", "code")


def spec_yaml(picks: pl.DataFrame, header: str = "") -> str:
    """A collector sweep spec of explicit shapes, one comment per shape (expected error, cost)."""
    lines = [f"# {x}" for x in header.splitlines()]
    lines += ["timing: {target_ms: 12, min_samples: 5, max_samples: 20, warmup: 1, l2_flush: true}", "shapes:"]
    for r in picks.iter_rows(named=True):
        k = collector_key(r)
        lines.append(f"  - [{', '.join(str(v) for v in k)}]  # expected error {r['expected_error_pct']:.2f}%, "
                     f"{r['latency_ms']:.3f} ms, {r['cost_s']:.2f} GPU-s, {r['source']}")
    return "\n".join(lines) + "\n"


def spec_keys(path: str | Path) -> set[tuple]:
    """The explicit shapes of a collector spec (e.g. held-out validation shapes) as plan keys."""
    import yaml

    try:
        spec = yaml.safe_load(Path(path).read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"--exclude {path} is not a YAML collector spec: {str(exc).splitlines()[0]}") from None
    if isinstance(spec, dict) and "shapes" not in spec and spec.get("ops"):
        raise ValueError(f"--exclude {path} is a grid spec (`ops:`): only a spec's explicit `shapes:` are "
                         "excluded, so it would exclude nothing")
    # `shapes:` with no rows is what `perfwh plan` writes when nothing is worth measuring: nothing to exclude
    shapes = (spec["shapes"] or []) if isinstance(spec, dict) and "shapes" in spec else None
    try:
        return {(r[0], int(r[1]), str(r[2]), str(r[3]), int(r[4]), int(r[5]), int(r[6])) for r in shapes}
    except (TypeError, ValueError, IndexError, KeyError):
        raise ValueError(f"--exclude {path} is not a collector spec: it needs a `shapes:` list of "
                         "[op, heads, gemm_type, kv_cache_dtype, batch, seq, prefix] rows") from None


def database_from_points(points: pl.DataFrame, system: str):
    """A PerfDatabase built in memory from perf points of one (system, framework, version)."""
    from estimator.derived.partition import CALIBRATION_TABLE, GRIDS_TABLE, build_partition
    from estimator.lookup.database import PerfDatabase
    from estimator.lookup.intervals import TABLE as INTERVALS_TABLE

    t = build_partition(points)
    fw = points["framework"][0]
    return PerfDatabase(system, backend=fw, calibration=t[CALIBRATION_TABLE], grids=t[GRIDS_TABLE],
                        intervals=t[INTERVALS_TABLE])


def register(sub) -> None:
    from perfwh.warehouse import add_home

    p = sub.add_parser(
        "plan",
        help="propose the shapes to measure next (widest expected error per GPU-second) as a collector sweep",
        description="From the estimator's interval model, pick off-grid shapes of one system/backend/version "
        "with the widest expected error per GPU-second of collector time, within --budget-minutes, and write "
        "them as a collector sweep spec (python -m collector run --spec FILE).",
    )
    p.add_argument("--system", required=True, help="e.g. h100_sxm")
    p.add_argument("--backend", default="perfwh", help="backend (framework) whose data to extend")
    p.add_argument("--version", default=None, help="backend version (default: the newest)")
    p.add_argument("--op", action="append", default=None, choices=op_names(),
                   help="only these ops (repeatable; default: all)")
    p.add_argument("--budget-minutes", type=float, default=20.0, help="GPU time for the proposed shapes")
    p.add_argument("--max-shapes", type=int, default=None,
                   help="at most this many shapes (default: no limit but the budget)")
    p.add_argument("--exclude", action="append", default=[], metavar="SPEC",
                   help="collector spec whose shapes are never proposed (held-out validation shapes)")
    p.add_argument("--out", default="plan.yaml", help="sweep spec to write")
    add_home(p)
    p.set_defaults(handler=cmd_plan)


def cmd_plan(args) -> int:
    from estimator.lookup.versions import sort_versions
    from warehouse.read import home_path, read_perf_points, warehouse_exists

    if not math.isfinite(args.budget_minutes) or args.budget_minutes <= 0:
        raise CliError(f"--budget-minutes must be a number > 0, got {args.budget_minutes:g}")
    if args.max_shapes is not None and args.max_shapes < 1:
        raise CliError(f"--max-shapes must be >= 1, got {args.max_shapes}")
    check_out_file("--out", args.out, "the sweep spec file to write")
    missing = [f for f in args.exclude if not Path(f).is_file()]
    if missing:
        raise CliError(f"--exclude {missing[0]}: no such collector spec file")
    same = [f for f in args.exclude if Path(f).resolve() == Path(args.out).resolve()]
    if same:  # the held-out shapes would be overwritten by the plan that was to avoid them
        raise CliError(f"--out {args.out} is also an --exclude spec: it would be overwritten; write the plan elsewhere")
    exclude = set().union(*(spec_keys(f) for f in args.exclude)) if args.exclude else set()
    if not warehouse_exists(args.home):
        raise FileNotFoundError(f"no warehouse at {home_path(args.home)}: run `perfwh ingest PATH` first")
    from estimator.lookup.query import FRAMEWORKS

    args.backend = FRAMEWORKS.get(args.backend.lower(), args.backend)
    pts = read_perf_points(args.home, system=args.system, framework=args.backend)
    if pts.height == 0:  # a typo (H200_SXM, tensorrt) said only 'no points'; list what there is
        from warehouse.read import available_slices

        pairs = sorted({f"{s}/{f}" for s, f in available_slices(args.home).select("system", "framework").iter_rows()})
        raise ValueError(f"no {args.backend} points for {args.system} in the warehouse; system/backend with "
                         f"points: {', '.join(pairs) or 'none'}")
    have = sort_versions(pts["version"].unique().to_list())
    version = args.version or have[-1]
    if version not in have:
        raise CliError(f"no {args.backend} {version} points for {args.system}; versions: {', '.join(have)}")
    pts = pts.filter(pl.col("version") == version)
    if args.op:
        pts = pts.filter(pl.col("op").is_in(args.op))
    if pts.height == 0:
        raise CliError(f"no {args.backend} {version} points for {args.system} and op {', '.join(args.op)}")
    db = database_from_points(pts, args.system)
    picks = plan(pts, db, budget_s=args.budget_minutes * 60, exclude=exclude, max_shapes=args.max_shapes)
    header = (f"perfwh plan --system {args.system} --backend {args.backend} --version {version} "
              f"--budget-minutes {args.budget_minutes:g}: {picks.height} shapes, "
              f"{float(picks['cost_s'].sum()) if picks.height else 0.0:.1f} GPU-s (cost model), "
              f"greedy by expected error per GPU-second")
    Path(args.out).write_text(spec_yaml(picks, header))
    by_op = picks.group_by("op").agg(pl.len().alias("n"), pl.col("cost_s").sum(),
                                     pl.col("expected_error_pct").mean()).sort("op") if picks.height else picks
    for r in by_op.iter_rows(named=True):
        print(f"{r['op']}: {r['n']} shapes, {r['cost_s']:.1f} GPU-s, "
              f"mean expected error {r['expected_error_pct']:.2f}%")
    print(f"wrote {picks.height} shapes to {args.out}")
    return 0

