"""Cross-class multipliers of the calibrated SOL's terms, measured on proxy pairs (issue 11).

Across launch classes (`transfer.launch_class`: Hopper -> Blackwell, x86 -> Grace) the datasheet ratios
that the rule moves the compute and bandwidth terms by are wrong in ways the published tables show:
GB200 runs TensorRT-LLM at ~0.96x B200 at every size (peaks: 0.90x for compute-bound shapes); Blackwell
runs SGLang DSA generation at 0.88-0.94x H200 but TensorRT-LLM at 0.30-0.39x (peaks: 0.44-0.60x). Two
*other* systems of the same two classes (and memory kinds: `sibling_class`) measure how the software
moves. Per source fit (system, framework, version, op, kernel_source) three multipliers of its terms
on the target's spec -- compute time mc, bandwidth time mb (streaming and not), overhead mo -- are
fitted by least squares on log2 residuals so that SOL_target(m) / SOL_source over the proxies' matched
shapes reproduces their measured latency ratios, each shape-size bin weighing alike (so the many small
shapes do not set the fit alone) and a weak pull towards m = 1 (the datasheet rule) where a term is
not seen. The terms stay the SOL's: only their cross-class multipliers are measured. With fewer than
TERM_MIN_SHAPES matched shapes, or where the gate below finds the datasheet rule close enough on the
proxies or the fit no better, the datasheet rule (with `transfer.overhead_multipliers`) stays.

The protocol (`estimator.accuracy.transfer`) fits on `term_shapes` (never the target's or the source's
rows); `PerfDatabase` on the warehouse's `transfer_terms` table (`class_term_shapes`: every pair of
systems of two launch classes, one per row; `class_shapes` leaves out those holding the target or the
source and merges the rest), where the fitted overhead multiplier replaces `transfer_overheads`' ratio.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from estimator.physics.calibrate import CalibrationParams, design_times, combine
from estimator.physics.specs import SystemSpec, load_system, system_names
from estimator.physics.transfer import MATCH_KEYS, TransferRule, launch_class

TERM_TABLE = "transfer_terms"
TERM_MIN_SHAPES = 30  # matched proxy shapes a fit needs (fewer: the datasheet rule)
TERM_BINS = 8  # shape-size bins (log geometric-mean latency), each weighing alike
TERM_PER_BIN = 24  # shapes kept per (framework, version, op, kernel_source, bin): bounds the table and the fit
TERM_BOUND_LOG2 = 4.0  # |log2 m| <= 4
TERM_PULL = 0.05  # weight of log2 m (towards the datasheet rule) beside the unit total weight of the shapes
# The multipliers replace the datasheet rule only where the proxies show the rule wrong and the fit right:
# the rule's median |log2| error on the proxy shapes at least TERM_GATE_LOG2 (0.32: 25%), the fit's at most
# TERM_MIN_GAIN of it. Ungated (every fit kept), B200 from H200 and GB200 from B200 gained no "beats both"
# cell and some moved the wrong way (GB200 from B200 SGLang DSA generation p90 8.2% -> 30.7%, B200 from
# H200 vLLM MLA context median 26.5% -> 44.8%): ~200 proxy shapes also move slices whose datasheet
# ratio was already right.
TERM_GATE_LOG2 = 0.32
TERM_MIN_GAIN = 0.5
TERM_SCHEMA = {"target_class": pl.String, "source_class": pl.String, "framework": pl.String,
               "version": pl.String, "op": pl.String, "kernel_source": pl.String, "architecture": pl.String,
               "attn_dtype": pl.String, "kv_cache_dtype": pl.String, "gemm_type": pl.String,
               "num_heads": pl.Int32, "batch_size": pl.Int32, "isl": pl.Int32, "prefix": pl.Int32,
               "kv_len": pl.Int32, "log2_ratio": pl.Float64, "log2_size": pl.Float64, "pairs": pl.String,
               "size_bin": pl.Int64}
_CLASSES = ("target_class", "source_class")


def sibling_class(spec: SystemSpec) -> str:
    """Launch class and memory kind (the spec's `memory`: hbm or gddr), e.g. `blackwell/x86/hbm`: systems
    of one sibling class run the same kernels the same way (RTX PRO 6000 Server is `blackwell/x86` but
    GDDR7 and sm_120: no B200 sibling)."""
    return f"{launch_class(spec)}/{spec.memory}"


def term_proxy_pairs(target: str, source: str, systems) -> list[tuple[str, str]]:
    """(target', source') pairs of other systems with the target's and the source's sibling classes
    (neither is `target` or `source`); empty within one launch class (the rule is then untouched)."""
    ts, ss = load_system(target), load_system(source)
    if launch_class(ts) == launch_class(ss):
        return []
    tc, sc = sibling_class(ts), sibling_class(ss)
    known = sorted(s for s in set(systems) if s not in (target, source) and s in system_names())
    cls = {s: sibling_class(load_system(s)) for s in known}
    return [(t, s) for t in known for s in known if t != s and cls[t] == tc and cls[s] == sc]


def _pair_shapes(points: pl.DataFrame, t: str, s: str) -> pl.DataFrame:
    """Matched shapes of systems t and s: MATCH_KEYS keys, `_l2` = log2 t / s, `_g` = log2 of the geometric
    mean latency; by kernel_source, then by shape alone (kernel_source null, each system's median over
    its kernel sources) for (framework, version, op) whose kernels have other names on the two."""
    a, b = points.filter(pl.col("system") == t), points.filter(pl.col("system") == s)

    def join(x, y, keys):
        return x.select(*keys, pl.col("latency_ms").alias("_t")).join(
            y.select(*keys, pl.col("latency_ms").alias("_s")), on=keys, nulls_equal=True).select(
            *keys, (pl.col("_t") / pl.col("_s")).log(2).alias("_l2"),
            ((pl.col("_t") * pl.col("_s")).log(2) / 2).alias("_g"))

    keys = list(MATCH_KEYS)
    by_ks = join(a, b, keys)
    shape = [c for c in keys if c != "kernel_source"]
    rest = a.join(by_ks.select("framework", "version", "op").unique(), on=["framework", "version", "op"],
                  how="anti")
    by_shape = join(rest.group_by(shape).agg(pl.col("latency_ms").median()),
                    b.group_by(shape).agg(pl.col("latency_ms").median()), shape).with_columns(
        pl.lit(None, pl.String).alias("kernel_source")).select(by_ks.columns)
    return pl.concat([by_ks, by_shape]).with_columns(pl.lit(f"{t}<-{s}").alias("pairs"))


def _binned(shapes: pl.DataFrame, group: list[str], keep_size: bool = False) -> pl.DataFrame:
    """Per `group` and (framework, version, op, kernel_source): the mean over proxy pairs per shape,
    TERM_BINS equal-width bins of `_g` per (framework, version, op), at most TERM_PER_BIN shapes per bin
    (evenly spaced in size order: deterministic). `keep_size` keeps `_g` as `log2_size` (to bin again)."""
    if shapes.height == 0:
        return shapes
    key = [*group, *MATCH_KEYS]
    fvo = [*group, "framework", "version", "op"]
    aggs = [pl.col("_l2").mean().alias("log2_ratio"), pl.col("_g").mean()]
    if "pairs" not in group:
        aggs.append(pl.col("pairs").str.split(", ").explode().unique().sort().str.join(", "))
    merged = shapes.group_by(key).agg(aggs)
    lo, hi = pl.col("_g").min().over(fvo), pl.col("_g").max().over(fvo)
    merged = merged.with_columns(((pl.col("_g") - lo) / (hi - lo + 1e-9) * TERM_BINS).floor().cast(pl.Int64)
                                 .clip(0, TERM_BINS - 1).alias("size_bin")).sort([*key])
    cell = [*fvo, "kernel_source", "size_bin"]
    merged = merged.with_columns(pl.int_range(pl.len()).over(cell).alias("_i"), pl.len().over(cell).alias("_n"))
    stratum = (pl.col("_i") * TERM_PER_BIN / pl.col("_n")).floor()  # keep the first shape of each of K strata
    keep = (stratum > ((pl.col("_i") - 1) * TERM_PER_BIN / pl.col("_n")).floor()) | (pl.col("_n") <= TERM_PER_BIN)
    out = merged.filter(keep).drop("_i", "_n")
    return out.rename({"_g": "log2_size"}) if keep_size else out.drop("_g")


def term_shapes(points: pl.DataFrame, target: str, source: str) -> pl.DataFrame:
    """The proxies' matched shapes for a transfer source -> target (`term_proxy_pairs`: never `target`'s
    or `source`'s rows): MATCH_KEYS keys, log2_ratio (mean over proxy pairs), pairs, size_bin."""
    parts = [_pair_shapes(points, t, s) for t, s in term_proxy_pairs(
        target, source, points["system"].unique().to_list())]
    parts = [p for p in parts if p.height]
    return _binned(pl.concat(parts), []) if parts else pl.DataFrame()


def class_term_shapes(points: pl.DataFrame) -> pl.DataFrame:
    """The `transfer_terms` table: for every ordered pair of systems of two launch classes with a spec in
    `points`, their binned matched shapes, one proxy pair per row (`class_shapes` leaves out the pairs that
    hold the target or the source of a transfer, as the protocol does, and merges the rest)."""
    known = sorted(s for s in points["system"].unique().to_list() if s in system_names())
    spec = {s: load_system(s) for s in known}
    parts = [p.with_columns(pl.lit(sibling_class(spec[t])).alias("target_class"),
                            pl.lit(sibling_class(spec[s])).alias("source_class"))
             for t in known for s in known
             if launch_class(spec[t]) != launch_class(spec[s]) for p in [_pair_shapes(points, t, s)] if p.height]
    if not parts:
        return pl.DataFrame(schema=TERM_SCHEMA)
    return (_binned(pl.concat(parts), [*_CLASSES, "pairs"], keep_size=True)
            .select(list(TERM_SCHEMA)).cast(TERM_SCHEMA))


def class_shapes(table: pl.DataFrame | None, target: SystemSpec, source: SystemSpec) -> pl.DataFrame:
    """The proxy shapes of a `transfer_terms` table for this pair's sibling classes, from proxy pairs that
    hold neither the target nor the source, merged over those pairs; empty within a launch class."""
    if table is None or table.height == 0 or launch_class(target) == launch_class(source):
        return pl.DataFrame()
    systems = pl.col("pairs").str.split("<-")
    rows = table.filter((pl.col("target_class") == sibling_class(target))
                        & (pl.col("source_class") == sibling_class(source))
                        & ~systems.list.contains(target.name) & ~systems.list.contains(source.name))
    if rows.height == 0:
        return pl.DataFrame()
    return _binned(rows.drop(_CLASSES, "size_bin").rename({"log2_ratio": "_l2", "log2_size": "_g"}), [])


def _moved(params: CalibrationParams, rule: TransferRule, m) -> CalibrationParams:
    """The rule's params for the target with term multipliers m = (compute, bandwidth, overhead)."""
    base = rule.params(params)
    mc, mb, mo = m
    return CalibrationParams({g: (ef / mc, eb / mb) for g, (ef, eb) in base.eff.items()},
                             base.overhead_ms * mo, base.combine_p, base.launch)


def _fit_one(shapes: pl.DataFrame, params: CalibrationParams, rule: TransferRule, kernel_source: str):
    """(mc, mb, mo) for one source fit on its matched proxy shapes, or None: too few shapes, or the gate
    (TERM_GATE_LOG2, TERM_MIN_GAIN) keeps the datasheet rule."""
    from scipy.optimize import least_squares

    rows = shapes.filter(pl.col("kernel_source") == kernel_source)
    if rows.height < TERM_MIN_SHAPES:
        rows = shapes
    if rows.height < TERM_MIN_SHAPES:
        return None
    rows = rows.with_columns(pl.lit(kernel_source).alias("kernel_source"))

    def terms(spec: SystemSpec, p: CalibrationParams):
        ct, bt, gidx, groups = design_times(rows, spec)
        ef = np.array([p.efficiency(g)[0] for g in groups])
        eb = np.array([p.efficiency(g)[1] for g in groups])
        return ct / ef[gidx], bt / eb[gidx]

    a_s, b_s = terms(rule.source, params)
    sol_s = combine(params.overhead_ms, np.maximum(a_s, b_s).sum(axis=0), params.combine_p)
    moved = rule.params(params)
    a_t, b_t = terms(rule.target, moved)
    want = rows["log2_ratio"].to_numpy()
    per_bin = rows.group_by("size_bin").len()
    w = rows.join(per_bin, on="size_bin", how="left")["len"].to_numpy().astype(float)
    w = np.sqrt(1.0 / (w * per_bin.height))  # each bin's squared weights sum to 1 / bins
    if not (np.all(np.isfinite(sol_s)) and np.all(sol_s > 0)):
        return None
    n = want.size

    def resid(x):
        mc, mb, mo = np.exp2(x)
        sol_t = combine(moved.overhead_ms * mo, np.maximum(a_t * mc, b_t * mb).sum(axis=0), moved.combine_p)
        return np.concatenate([w * (np.log2(sol_t / sol_s) - want), math.sqrt(TERM_PULL) * x])

    fit = least_squares(resid, np.zeros(3), bounds=(-TERM_BOUND_LOG2, TERM_BOUND_LOG2), x_scale=1.0,
                        diff_step=1e-4)
    rule_err = float(np.median(np.abs(resid(np.zeros(3))[:n] / w)))  # the datasheet rule on the proxies
    fit_err = float(np.median(np.abs(resid(fit.x)[:n] / w)))
    if rule_err < TERM_GATE_LOG2 or fit_err > rule_err * TERM_MIN_GAIN:
        return None
    return tuple(float(v) for v in np.exp2(fit.x))


def term_multipliers(shapes: pl.DataFrame, params: dict, rule: TransferRule) -> dict[tuple, tuple]:
    """Source calibration key (system, framework, version, op, kernel_source) -> (mc, mb, mo), the
    multipliers of its compute, bandwidth and overhead terms on the target's spec fitted on `shapes`
    (`term_shapes` / `class_shapes`); keys whose fit `_fit_one` declines are left out (datasheet rule)."""
    out = {}
    if shapes.height == 0:
        return out
    by_op = {k: g for k, g in shapes.group_by("framework", "version", "op")}
    for key, p in params.items():
        sub = by_op.get(tuple(key[1:4]))
        if sub is None:
            continue
        m = _fit_one(sub, p, rule, key[4])
        if m is not None:
            out[key] = m
    return out


def moved_params(rule: TransferRule, params: CalibrationParams, overhead_multiplier: float | None,
                 terms: tuple | None) -> CalibrationParams:
    """The source's params on the target: with fitted term multipliers where there are some, else the
    datasheet rule with the launch-overhead multiplier (`transfer.overhead_multipliers`)."""
    return rule.params(params, overhead_multiplier) if terms is None else _moved(params, rule, terms)
