"""Transfer of module latencies to a GPU without data, through the physics (prototype).

Idea (issue 11, item 4): a source measurement t_src of a shape is split, with the
source's own calibrated SOL (fitted efficiencies per kernel group, overhead,
p-norm combination; estimator/calibrate.py), into

    overhead O            launch / synchronisation, host side: does not move
                          with the GPU's peaks (kept as fitted on the source);
    compute-bound part C  kernels whose max(F/(peak*ef), B/(BW*eb)) is the FLOP
                          term: moves with the tensor peak (BF16 or FP8);
    bandwidth part B      kernels whose max is the byte term: moves with HBM BW.

The same calibrated model is then evaluated with the target's datasheet peaks
(same efficiencies, same overhead), and the source *measurement* is scaled by
the ratio  r = model(target spec) / model(source spec).  Anchoring on the
measured value keeps every kernel quirk of the shape that the smooth model
misses (they cancel in the ratio); only the part of the time that the physics
says moves is moved. For H100 <-> H200 (same tensor peaks, same SM count) a
compute- or overhead-bound shape gets r = 1 exactly (a copy).

Everything here is a pure function over polars frames / numpy arrays. The only
estimator imports (SOL kernels, calibration fit and spec types) are below.
"""

from __future__ import annotations

import numpy as np
import polars as pl

# --- the only estimator imports -------------------------------------------------
from estimator import sol
from estimator.calibrate import CalibrationParams, combine, fit_op, kernel_times
from estimator.slices import model_for, points_shape
from estimator.specs import SystemSpec, load_system, system_names

# Datasheet numbers for systems without a spec YAML yet (per GPU, dense, SI units).
# B200: NVIDIA HGX B200 datasheet (8 GPUs: 72 PFLOPS FP8 and 36 PFLOPS BF16 *with sparsity*,
#   64 TB/s HBM3e aggregate) -> per GPU dense FP8 4.5e15, BF16 2.25e15, 8 TB/s; 148 SMs.
# GB200: NVIDIA GB200 NVL72 datasheet (72 GPUs: 720 PFLOPS FP8 and 360 PFLOPS FP16/BF16
#   with sparsity, 576 TB/s HBM3e aggregate) -> per GPU dense FP8 5e15, BF16 2.5e15, 8 TB/s.
EXTRA_SPECS = {
    "b200_sxm": SystemSpec("b200_sxm", 2.25e15, 4.5e15, 8.0e12, 180e9, 148, "blackwell"),
    "gb200": SystemSpec("gb200", 2.5e15, 5.0e15, 8.0e12, 186e9, 148, "blackwell"),
}


def system_spec(name: str) -> SystemSpec:
    """The estimator's spec if it has one, else the datasheet numbers above; ValueError otherwise."""
    if name in system_names():
        return load_system(name)
    if name in EXTRA_SPECS:
        return EXTRA_SPECS[name]
    raise ValueError(f"no spec for system {name!r}; known: {', '.join(sorted(set(system_names()) | set(EXTRA_SPECS)))}")


def _parts(points: pl.DataFrame, system: SystemSpec, params: CalibrationParams, source: SystemSpec | None = None):
    """(compute ms, bandwidth ms, raw SOL ms) per row of one op's points under `params` on `system`.

    compute / bandwidth: sum over kernels of the calibrated kernel time, attributed
    to whichever of its two roofline terms is the larger.

    With `source` given (a transfer to `system`), a bandwidth-bound kernel's time
    B/(BW*eb) is split into the HBM streaming time B/BW, which moves with the
    target's bandwidth, and the rest B/BW*(1/eb - 1), the time the kernel spends
    *not* streaming at the datasheet rate (latency, dequantisation, issue), which
    moves with the chip's throughput (the BF16 tensor peak ratio: 1 between H100
    and H200). A kernel that reaches only eb = 30% of HBM bandwidth on the source
    thus moves with 30% of the bandwidth change, not all of it.
    """
    n = points.height
    op = points["op"][0]
    comp = np.zeros(n)
    band = np.zeros(n)
    raw = np.zeros(n)
    keys = ["architecture", "gemm_type", "kv_cache_dtype"]
    ref = source or system
    chip = ref.peak_bf16_flops_per_s / system.peak_bf16_flops_per_s  # time scale of non-streaming work
    for (arch, gemm, kv), sub in points.with_row_index("_row").group_by(keys, maintain_order=True):
        rows = sub["_row"].to_numpy()
        ks = sol.kernels(op, model_for(op, arch), gemm_type=gemm or "bfloat16", kv_cache_dtype=kv,
                         **points_shape(sub))
        ct, bt, groups = kernel_times(ks, system, sub.height)
        raw[rows] = np.maximum(ct, bt).sum(axis=0)
        eff = np.array([params.efficiency(g) for g in groups])  # (kernels, 2)
        if source is None:
            c = ct / eff[:, :1]
            b = bt / eff[:, 1:]
            cb = c >= b
        else:
            cs, bs, _ = kernel_times(ks, source, sub.height)
            cb = cs / eff[:, :1] >= bs / eff[:, 1:]  # which term bounds the kernel is decided on the source
            c = ct / eff[:, :1]
            eb = np.minimum(eff[:, 1:], 1.0)
            b = bt + bs * (1.0 / eb - 1.0) * chip
        comp[rows] = np.where(cb, c, 0.0).sum(axis=0)
        band[rows] = np.where(cb, 0.0, b).sum(axis=0)
    return comp, band, raw


def fit_source(points: pl.DataFrame, source: SystemSpec) -> CalibrationParams:
    """Calibrated SOL of one op on the source system (the estimator's own fit)."""
    params, _ = fit_op(points, source)
    return params


def transfer_frame(pairs: pl.DataFrame, params: CalibrationParams, source: SystemSpec, target: SystemSpec,
                   overhead_scale: float = 1.0, split_bandwidth: bool = True) -> pl.DataFrame:
    """Predict target latencies of one op from source measurements of the same shapes.

    `pairs` holds the shape columns and `latency_src` (source measured, ms). Adds
    `pred_model`, `pred_copy`, `pred_roofline` and `moved` (|log r| of the model,
    the share of the time that moved) plus the decomposition on the source
    (`frac_overhead`, `frac_compute`, `frac_bandwidth`).
    """
    cs, bs, raw_s = _parts(pairs, source, params)
    ct, bt, raw_t = _parts(pairs, target, params, source=source if split_bandwidth else None)
    o = params.overhead_ms
    model_s = combine(o, cs + bs, params.combine_p)
    model_t = combine(o * overhead_scale, ct + bt, params.combine_p)
    r = model_t / model_s
    src = pairs["latency_src"].to_numpy()
    total = o + cs + bs
    return pairs.with_columns(
        pl.Series("pred_model", src * r),
        pl.Series("pred_copy", src),
        pl.Series("pred_roofline", src * raw_t / raw_s),
        pl.Series("ratio_model", r),
        pl.Series("moved", np.abs(np.log(r))),
        pl.Series("frac_overhead", o / total),
        pl.Series("frac_compute", cs / total),
        pl.Series("frac_bandwidth", bs / total),
    )


# --- calibrated interval -------------------------------------------------------------
def fit_interval(moved: np.ndarray, abs_log_err: np.ndarray, q: float = 0.8, bins: int = 8) -> tuple[float, float]:
    """Half-width of a q interval in log space, w(m) = a + b*m, m = |log r| (how much moved).

    Fitted as the q-quantile of |log(pred/measured)| in equal-count bins of m, then a
    least-squares line through the bin quantiles (b clipped at >= 0).
    """
    order = np.argsort(moved)
    chunks = [c for c in np.array_split(order, min(bins, max(1, moved.size // 20))) if c.size]
    xm = np.array([np.median(moved[c]) for c in chunks])
    yq = np.array([np.quantile(abs_log_err[c], q) for c in chunks])
    if xm.size < 2 or np.ptp(xm) == 0:
        return float(np.quantile(abs_log_err, q)), 0.0
    b, a = np.polyfit(xm, yq, 1)
    if b < 0:
        return float(np.quantile(abs_log_err, q)), 0.0
    return float(a), float(b)


def interval(pred: np.ndarray, moved: np.ndarray, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    w = np.maximum(a + b * moved, 0.0)
    return pred * np.exp(-w), pred * np.exp(w)
