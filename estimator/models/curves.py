"""Attention curves over sequence length, model comparisons and crossovers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from estimator.models.model import Model, _estimate_rows
from estimator.lookup.limits import MAX_INT
from estimator.models.config import SOURCE_ORDER, _positive_int


# ---- curves and comparisons ---------------------------------------------------------------

PHASES = ("context", "generation")
COMPARE_ISLS = tuple(1024 * 2**k for k in range(8))  # 1k .. 128k


def attention_curve(model: Model, phase: str, seq, batch_size: int, db=None, *, with_bounds: bool = False):
    """Attention time summed over layers at many sequence lengths, and the worst source per point
    (with_bounds: also the 80% interval's low and high sums, see `rollup_bounds`).

    context: one prefill pass of batch_size requests of `seq` new tokens;
    generation: one decode step at KV length `seq`.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")
    seq = _lengths(seq)
    batch_size = _positive_int("batch_size", batch_size)
    db = model.database() if db is None else model._check_database(db)
    ops = model.context_ops if phase == "context" else model.generation_ops
    total = np.zeros(seq.size)
    low, high = np.zeros(seq.size), np.zeros(seq.size)
    worst = np.zeros(seq.size, dtype=np.int64)
    rank = {s: i for i, s in enumerate(SOURCE_ORDER)}
    for kind in sorted({layer.attention for layer in model.layers}):
        scale = sum(ops[layer.index].scale_factor for layer in model.layers if layer.attention == kind)
        lat, src, lo, hi = _estimate_rows(db, f"{kind}_{phase}", model.op_settings[kind],
                                          batch=np.full(seq.size, batch_size), seq=seq,
                                          prefix=np.zeros(seq.size, dtype=np.int64))
        total += lat * scale
        low += lo * scale
        high += hi * scale
        worst = np.maximum(worst, np.array([rank[s] for s in src]))
    src = np.array(SOURCE_ORDER, dtype=object)[worst]
    return (total, src, low, high) if with_bounds else (total, src)


def _lengths(seq) -> np.ndarray:
    """Sequence lengths as int64, refusing what a cast would change: 1.5 became 1, nan a numpy error."""
    try:
        raw = np.asarray(seq, dtype=np.float64)
    except (TypeError, ValueError):
        raw = None
    if raw is None or raw.ndim != 1 or raw.size == 0 or not np.all(np.isfinite(raw)) or np.any(raw < 1) \
            or np.any(raw != np.floor(raw)) or np.any(raw > MAX_INT):
        raise ValueError(f"sequence lengths must be a non-empty list of integers 1..{MAX_INT}, got {seq!r}")
    return raw.astype(np.int64)


def compare_models(models: list[Model], seq=COMPARE_ISLS, batch_size: int = 1, db=None) -> pl.DataFrame:
    """Long frame: model, attention, layers, phase, seq, model_ms, layer_ms (mean per layer), source,
    low_ms and high_ms (the model total's 80% interval)."""
    if not models:
        raise ValueError("compare needs at least one model")
    frames = []
    for m in models:
        for phase in PHASES:
            total, src, low, high = attention_curve(m, phase, seq, batch_size, db=db, with_bounds=True)
            frames.append(pl.DataFrame({
                "model": m.model_path, "attention": m.hf.attention, "layers": m.num_layers,
                "phase": phase, "seq": np.asarray(seq, dtype=np.int64), "model_ms": total,
                "layer_ms": total / m.num_layers, "source": src.tolist(), "low_ms": low, "high_ms": high,
            }, schema_overrides={"source": pl.String}))
    return pl.concat(frames)


@dataclass(frozen=True)
class Crossover:
    """Where model `cheaper` becomes cheaper than `baseline` in one phase.

    seq: interpolated crossover length (None when the order does not change
    in the range); status: 'crosses', 'always cheaper', 'never cheaper'.
    """

    baseline: str
    other: str
    phase: str
    status: str
    seq: float | None
    lo: int
    hi: int


def find_crossover(seq, baseline_ms, other_ms, *, baseline: str = "", other: str = "",
                   phase: str = "") -> Crossover:
    """The first length where `other` drops below `baseline`, interpolated in log-log space.
    `seq` must increase; the two curves are positive latencies, one per length."""
    seq = _lengths(seq).astype(np.float64)
    if np.any(np.diff(seq) <= 0):  # the search walks the array in order: unsorted gave a wrong answer
        raise ValueError(f"sequence lengths must increase, got {seq.astype(np.int64).tolist()}")
    base, oth = (np.asarray(x, dtype=np.float64) for x in (baseline_ms, other_ms))
    for name, ms in (("baseline_ms", base), ("other_ms", oth)):
        if ms.shape != seq.shape or not np.all(np.isfinite(ms)) or np.any(ms <= 0):
            raise ValueError(f"{name} must hold {seq.size} finite latencies > 0 (one per length), got {ms.tolist()}")
    d = np.log(oth) - np.log(base)
    lo, hi = int(seq[0]), int(seq[-1])
    cheaper = d < 0
    if cheaper.all():
        return Crossover(baseline, other, phase, "always cheaper", None, lo, hi)
    after = np.flatnonzero(~cheaper[:-1] & cheaper[1:])
    if after.size == 0:
        return Crossover(baseline, other, phase, "never cheaper", None, lo, hi)
    i = int(after[0])
    x0, x1 = np.log(seq[i]), np.log(seq[i + 1])
    t = d[i] / (d[i] - d[i + 1])
    return Crossover(baseline, other, phase, "crosses", float(np.exp(x0 + t * (x1 - x0))), lo, hi)


def fine_grid(lo: int = 1024, hi: int = 131072, per_octave: int = 8) -> np.ndarray:
    """Log2-spaced integer lengths from lo to hi (inclusive), per_octave points per doubling."""
    k = np.arange(0, per_octave * np.log2(hi / lo) + 1) / per_octave
    return np.unique(np.round(lo * np.exp2(k)).astype(np.int64))
