"""Transfer a source system's answers to a target system without data, through the physics.

A source answer (measured, or read off its grid) is scaled by the ratio of two
calibrated SOLs of the same shape: the source's fit evaluated on the target's
datasheet over the same fit on the source's. Anchoring on the source answer
keeps every quirk of the shape that the smooth model misses (they cancel in
the ratio); only what the physics says moves is moved. Per kernel term:

  compute   F/(P*ef): moves with the tensor peak P (BF16 or FP8);
  bandwidth B/(BW*eb) = B/BW (HBM streaming: moves with the bandwidth) +
            B/BW*(1/eb - 1) (the time the kernel does not stream: issue,
            latency, dequantisation; moves with the chip's BF16 peak);
  overhead  launch and synchronisation: kept from the source fit between systems of one launch
            class (GPU generation / host CPU, `launch_class`); across classes moved by the
            launch-bound latency ratio measured on other systems of the same two classes
            (`overhead_ratios`, `overhead_multipliers`), where that ratio shows another launch path.

A kernel that reaches only 30% of HBM bandwidth on the source thus moves with
30% of the bandwidth change, not all of it; a fitted efficiency >= 1 means the
model over-counts the work, and the whole term moves with the peak. The result
is folded back into per-group efficiencies (`transfer_params`), so a transferred
answer is the same grid lookup x calibrated SOL as a native one, evaluated with
the target's spec: no extra cost per estimate.

For H100 <-> H200 SXM (same tensor peaks) compute-bound and overhead-bound
shapes are copied; only the streaming part of bandwidth-bound kernels moves.
(Moving the non-peak time with SM count x clock instead of the tensor peak was
tried: B200 from H200 TensorRT-LLM MLA context went from 10% to 51% median
error. Blackwell's kernels keep about the same fraction of a peak twice as high.)

The leave-one-system-out check of this rule is `estimator.accuracy.transfer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl


from estimator.physics.calibrate import CalibrationParams
from estimator.physics.specs import SystemSpec, load_system, system_names


# Precisions whose slices are never transferred, with the reason (PerfDatabase drops them from a
# source's grids; the protocol leaves their rows out).
NOT_TRANSFERRED = {
    "nvfp4": "the SOL model has no byte width or FP4 peak to move an nvfp4 time with, and Hopper has no "
             "FP4 tensor cores: an nvfp4 answer on another system would be a copy, not a transfer",
}


def transferable() -> pl.Expr:
    """Filter expression: rows of precisions that may be transferred (none in NOT_TRANSFERRED)."""
    bad = list(NOT_TRANSFERRED)
    return ~pl.col("gemm_type").fill_null("").is_in(bad) & ~pl.col("kv_cache_dtype").fill_null("").is_in(bad)


def _split_efficiency(eff: float, peak_ratio: float, rate_ratio: float) -> float:
    """Target efficiency of one term: 1/e_t = 1 + (1/e - 1) * rate_ratio * peak_ratio.

    peak_ratio = target / source peak of the term (bandwidth); rate_ratio = source /
    target rate of the work not done at that peak (the BF16 peak). e >= 1 (the model
    over-counts the work) keeps e: the whole term moves with the peak.
    """
    if eff >= 1.0:
        return eff
    return 1.0 / (1.0 + (1.0 / eff - 1.0) * rate_ratio * peak_ratio)


@dataclass(frozen=True)
class TransferRule:
    """How one source system's calibrated SOL maps to a target's: the ratios that move each term."""

    source: SystemSpec
    target: SystemSpec

    @property
    def bandwidth_ratio(self) -> float:
        return self.target.hbm_bytes_per_s / self.source.hbm_bytes_per_s

    @property
    def rate_ratio(self) -> float:  # source / target BF16 peak: time scale of the work not at a peak
        return self.source.peak_bf16_flops_per_s / self.target.peak_bf16_flops_per_s

    @property
    def overhead_ratio(self) -> float:
        """Launch / synchronisation overhead, target / source, from the datasheet alone: 1.0.

        No spec figure says how it moves. Between systems of one class (GPU
        generation and host CPU kind, `launch_class`) the overhead-bound shapes of
        the published tables match (H100 / H200; B200 / B300 within 5%), so it is
        kept. Across classes it is not: TensorRT-LLM's DSA modules have a floor of
        0.22 ms on Hopper and 0.06 ms on every Blackwell; vLLM and SGLang DSA
        context take 1.7-2.2x as long at small shapes on GB200 / GB300 (Grace host)
        as on B200 / B300. That ratio is measured on other systems of the same two
        classes (`overhead_ratios`) and passed to `params`.
        """
        return 1.0

    def params(self, params: CalibrationParams, overhead_ratio: float | None = None) -> CalibrationParams:
        """`params` (fitted on the source) folded into efficiencies for the target's spec; the fitted
        overhead x `overhead_ratio` (measured on other systems of the two launch classes,
        `overhead_ratios`), else x `self.overhead_ratio` (kept)."""
        eff = {g: (ef, _split_efficiency(eb, self.bandwidth_ratio, self.rate_ratio))
               for g, (ef, eb) in params.eff.items()}
        ratio = self.overhead_ratio if overhead_ratio is None or not math.isfinite(overhead_ratio) else overhead_ratio
        return CalibrationParams(eff, params.overhead_ms * ratio, params.combine_p, params.launch)


def transfer_params(params: CalibrationParams, source: SystemSpec, target: SystemSpec,
                    overhead_ratio: float | None = None) -> CalibrationParams:
    """The source's fitted parameters, moved to the target (see the module docstring). Compute
    efficiencies are kept: evaluated with the target's tensor peaks, the term moves with them."""
    return TransferRule(source, target).params(params, overhead_ratio)


def spec_distance(a: SystemSpec, b: SystemSpec) -> float:
    """How unlike two GPUs are: summed |log ratio| of BF16 peak, FP8 peak, HBM bandwidth and SM
    count, plus 1 across generations (kernels differ more between generations than their peaks)."""
    d = sum(abs(math.log(x / y)) for x, y in ((a.peak_bf16_flops_per_s, b.peak_bf16_flops_per_s),
                                            (a.peak_fp8_flops_per_s, b.peak_fp8_flops_per_s),
                                            (a.hbm_bytes_per_s, b.hbm_bytes_per_s), (a.sm_count, b.sm_count)))
    return d + (0.0 if a.family == b.family else 1.0)


def nearest_source(target: str, candidates) -> str:
    """The candidate system whose spec is nearest the target's; ValueError if none has a spec."""
    tspec = load_system(target)
    known = sorted(c for c in set(candidates) if c != target and c in system_names())
    if not known:
        raise ValueError(f"no data for system {target!r} and no system with data and a spec to transfer it from; "
                         f"have: {', '.join(sorted(set(candidates))) or 'none'}")
    return min(known, key=lambda c: (spec_distance(tspec, load_system(c)), c))


def source_system(target: str, with_data, from_system: str | None = None, framework: str = "") -> str:
    """Which system's data answers queries for `target`: `from_system` when given, else `target`
    itself when it has data, else the system with data whose spec is nearest."""
    with_data = sorted(set(with_data))
    if from_system is not None:
        load_system(from_system)  # an unknown name fails here, listing the known ones
        if from_system not in with_data:
            raise ValueError(f"no {framework} data for system {from_system!r} to transfer from; "
                             f"systems with data: {', '.join(with_data)}")
        return from_system
    if target in with_data:
        return target
    return nearest_source(target, with_data)


def provenance(target: str, source: str, framework: str, version: str) -> str:
    """The `transferred_from` note of a transferred answer: which system and version it came from."""
    return f"system={target}<-{source} ({framework} {version})"


# ---- launch overhead across launch classes ------------------------------------------------------------
OVERHEAD_TABLE = "transfer_overheads"
OVERHEAD_SCHEMA = {"framework": pl.String, "version": pl.String, "op": pl.String, "target_class": pl.String,
                   "source_class": pl.String, "overhead_ratio": pl.Float64, "n_shapes": pl.Int64,
                   "pairs": pl.String}
FLOOR_QUANTILE = 0.10  # the launch-bound shapes: the fastest 10% of a proxy pair's matched shapes
# Only a launch path that differs moves the overhead. The class ratios measured on the published tables
# fall in two groups: within 1.52x (kernels that differ between generations at shapes the peaks already
# move, e.g. TensorRT-LLM MLA generation Hopper -> Blackwell 0.66-0.68; systems of one class differ by
# 0.93-1.05) and beyond 1.9x (TensorRT-LLM DSA Hopper <-> Blackwell 2.9-3.7x, vLLM / SGLang DSA context
# x86 <-> Grace 1.9-2.0x). Moving the first group made B200 from H200 TensorRT-LLM MLA generation worse
# (11.8% -> 16.3% median); the threshold sits between the groups.
OVERHEAD_MIN_RATIO = 1.7
# the columns that make two systems' rows the same shape (same slice, same point)
MATCH_KEYS = ("framework", "version", "op", "kernel_source", "architecture", "attn_dtype", "kv_cache_dtype",
              "gemm_type", "num_heads", "batch_size", "isl", "prefix", "kv_len")


def launch_class(spec: SystemSpec) -> str:
    """What sets a module's fixed launch / synchronisation cost: the GPU generation (its kernels)
    and the CPU that launches them, e.g. `hopper/x86`, `blackwell/grace`."""
    return f"{spec.family}/{spec.host}"


def proxy_pairs(target: str, source: str, systems) -> list[tuple[str, str]]:
    """(target', source') pairs of other systems with the target's and the source's launch classes:
    neither is `target` or `source`, so what they measure says nothing of the target's own rows.
    Empty when target and source share a class (the overhead is then kept)."""
    tc, sc = launch_class(load_system(target)), launch_class(load_system(source))
    if tc == sc:
        return []
    known = sorted(s for s in set(systems) if s not in (target, source) and s in system_names())
    return [(t, s) for t in known for s in known
            if t != s and launch_class(load_system(t)) == tc and launch_class(load_system(s)) == sc]


def _pair_floor(points: pl.DataFrame, t: str, s: str) -> list[pl.DataFrame]:
    """Launch-bound log2 ratio t / s per (framework, version, op) (`_floor_ratio`), by kernel_source,
    then by shape alone for ops whose kernels have other names on the two systems (vLLM FLASHMLA /
    FLASHINFER_MLA; each shape's median over its kernel sources)."""
    a, b = points.filter(pl.col("system") == t), points.filter(pl.col("system") == s)
    by_ks = _floor_ratio(a, b, list(MATCH_KEYS))
    shape = [c for c in MATCH_KEYS if c != "kernel_source"]
    rest = a.join(by_ks.select("framework", "version", "op"), on=["framework", "version", "op"], how="anti")
    by_shape = _floor_ratio(rest.group_by(shape).agg(pl.col("latency_ms").median()),
                            b.group_by(shape).agg(pl.col("latency_ms").median()), shape)
    return [p.with_columns(pl.lit(f"{t}<-{s}").alias("pairs")) for p in (by_ks, by_shape) if p.height]


def _mean_ratio(parts: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
    return pl.concat(parts).group_by(keys).agg(
        (2.0 ** pl.col("_l2").mean()).alias("overhead_ratio"), pl.col("n_shapes").sum(),
        pl.col("pairs").sort().str.join(", "))


def overhead_ratios(points: pl.DataFrame, target: str, source: str) -> pl.DataFrame:
    """Launch overhead target / source per (framework, version, op), measured on `proxy_pairs`:
    on the shapes both systems of a proxy pair measured, the median latency ratio over the fastest
    `FLOOR_QUANTILE` of them (launch-bound; `_floor_ratio`), geometric mean over proxy pairs.
    Never reads `target`'s or `source`'s rows. OVERHEAD_SCHEMA with the two classes."""
    tc, sc = launch_class(load_system(target)), launch_class(load_system(source))
    parts = [p for t, s in proxy_pairs(target, source, points["system"].unique().to_list())
             for p in _pair_floor(points, t, s)]
    if not parts:
        return pl.DataFrame(schema=OVERHEAD_SCHEMA)
    return _mean_ratio(parts, ["framework", "version", "op"]).select(
        "framework", "version", "op", pl.lit(tc).alias("target_class"), pl.lit(sc).alias("source_class"),
        "overhead_ratio", "n_shapes", "pairs").sort("framework", "version", "op")


def class_overhead_ratios(points: pl.DataFrame) -> pl.DataFrame:
    """The `transfer_overheads` table (OVERHEAD_SCHEMA): `overhead_ratios` for every ordered pair of
    launch classes, from every pair of systems with a spec in `points` (for the run-time transfer,
    whose target has no data; the protocol measures each pair on the other systems only)."""
    known = sorted(s for s in points["system"].unique().to_list() if s in system_names())
    cls = {s: launch_class(load_system(s)) for s in known}
    parts = [p.with_columns(pl.lit(cls[t]).alias("target_class"), pl.lit(cls[s]).alias("source_class"))
             for t in known for s in known if cls[t] != cls[s] for p in _pair_floor(points, t, s)]
    if not parts:
        return pl.DataFrame(schema=OVERHEAD_SCHEMA)
    return _mean_ratio(parts, ["framework", "version", "op", "target_class", "source_class"]).select(
        list(OVERHEAD_SCHEMA)).cast(OVERHEAD_SCHEMA).sort("framework", "version", "op", "target_class",
                                                         "source_class")


def _floor_ratio(a: pl.DataFrame, b: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """framework, version, op, `_l2` (median log2 a/b over the fastest FLOOR_QUANTILE of the shapes
    both hold, fastest by the geometric mean of the two latencies: the same shapes either way round,
    so the ratio of b / a is the inverse of a / b), n_shapes."""
    j = a.select(*keys, pl.col("latency_ms").alias("_t")).join(
        b.select(*keys, pl.col("latency_ms").alias("_s")), on=keys, nulls_equal=True).with_columns(
        (pl.col("_t") * pl.col("_s")).alias("_g"))
    fast = pl.col("_g") <= pl.col("_g").quantile(FLOOR_QUANTILE, "lower").over("framework", "version", "op")
    return j.filter(fast).group_by("framework", "version", "op").agg(
        (pl.col("_t") / pl.col("_s")).log(2).median().alias("_l2"), pl.len().cast(pl.Int64).alias("n_shapes"))


def overhead_lookup(table: pl.DataFrame | None, target: SystemSpec, source: SystemSpec) -> dict[tuple, float]:
    """(framework, version, op) -> overhead ratio of `table` (OVERHEAD_SCHEMA) for this pair's launch
    classes, where it is at least OVERHEAD_MIN_RATIO (or at most its inverse); empty (kept overheads)
    for one class or no table."""
    tc, sc = launch_class(target), launch_class(source)
    if table is None or table.height == 0 or tc == sc:
        return {}
    rows = table.filter((pl.col("target_class") == tc) & (pl.col("source_class") == sc)
                        & (pl.col("overhead_ratio").log(2).abs() >= math.log2(OVERHEAD_MIN_RATIO)))
    return {(r["framework"], r["version"], r["op"]): r["overhead_ratio"] for r in rows.iter_rows(named=True)}


def overhead_multipliers(grids: pl.DataFrame, params: dict, rule: TransferRule,
                         ratios: dict[tuple, float]) -> dict[tuple, float]:
    """Source calibration key (system, framework, version, op, kernel_source) -> multiplier of its
    fitted overhead such that its launch-bound shapes move by the measured class ratio.

    `ratios` ((framework, version, op) -> target/source latency of launch-bound shapes, from
    `overhead_ratios` on other systems) says how far the fastest shapes move; the rest of the rule
    (efficiencies with the target's peaks) already moves part of that time, since the fit splits a
    small shape's time between overhead and slow kernels. So the overhead is not multiplied by the
    ratio itself: on the source's fastest FLOOR_QUANTILE of measured grid cells (`grids`, GRID_SCHEMA,
    the source's own), m solves median log2(SOL_target(m) / SOL_source) = log2(ratio) (m in
    [1/64, 64]). Keys without a ratio are left out (multiplier 1)."""
    import numpy as np
    from scipy.optimize import brentq

    from estimator.lookup.engine import estimate_group
    from estimator.slices import GROUP_KEYS, model_for

    out = {}
    if not ratios:
        return out
    cells = grids.filter(pl.col("measured_log2_ratio").is_not_null())
    pk = ["system", "framework", "version", "op", "kernel_source"]
    for key, sub in cells.group_by(pk, maintain_order=True):
        want = ratios.get(tuple(key[1:4]))
        if want is None or key not in params or not math.isfinite(want):
            continue
        fast = sub.filter(pl.col("latency_ms") <= pl.col("latency_ms").quantile(FLOOR_QUANTILE, "lower"))
        groups = list(fast.group_by(list(GROUP_KEYS), maintain_order=True))

        def sols(spec, p):
            res = []
            for gk, g in groups:
                k = dict(zip(GROUP_KEYS, gk))
                seq = g["seq_len"].to_numpy().astype(float)
                res.append(estimate_group(
                    None, k["op"], model_for(k["op"], k["architecture"]), spec, p,
                    gemm_type=k["gemm_type"] or "bfloat16", kv_cache_dtype=k["kv_cache_dtype"],
                    kernel_source=k["kernel_source"], batch=g["batch_size"].to_numpy().astype(float), isl=seq,
                    kv_len=seq, prefix=g["prefix"].fill_null(0).to_numpy().astype(float),
                    num_heads=g["num_heads"].to_numpy().astype(float))[0])
            return np.concatenate(res)

        base = sols(rule.source, params[key])

        def gap(log_m):
            return float(np.median(np.log2(sols(rule.target, rule.params(params[key], 2.0**log_m)) / base))
                         - math.log2(want))

        lo, hi = gap(-6.0), gap(6.0)
        m = -6.0 if lo >= 0 else 6.0 if hi <= 0 else brentq(gap, -6.0, 6.0, xtol=1e-3)
        out[key] = 2.0**m
    return out
