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
  overhead  launch and synchronisation, kept from the source fit.

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
        """Launch / synchronisation overhead, target / source: kept (1.0).

        No spec figure says how it moves. In the published tables, overhead-bound
        shapes match between H100 and H200; on GB200 they run 4% faster than on
        B200 with TensorRT-LLM (as every other shape does: less than the 11% its
        datasheet peaks promise) but up to 2x slower with vLLM and SGLang
        (launches from the Grace host); B200 vs H200 differs by backend. Scaling
        by the peak ratio would be wrong for all of them, so it is kept; the
        README says where transfer is not to be trusted.
        """
        return 1.0

    def params(self, params: CalibrationParams) -> CalibrationParams:
        """`params` (fitted on the source) folded into efficiencies for the target's spec."""
        eff = {g: (ef, _split_efficiency(eb, self.bandwidth_ratio, self.rate_ratio))
               for g, (ef, eb) in params.eff.items()}
        return CalibrationParams(eff, params.overhead_ms * self.overhead_ratio, params.combine_p)


def transfer_params(params: CalibrationParams, source: SystemSpec, target: SystemSpec) -> CalibrationParams:
    """The source's fitted parameters, moved to the target (see the module docstring). Compute
    efficiencies are kept: evaluated with the target's tensor peaks, the term moves with them."""
    return TransferRule(source, target).params(params)


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
