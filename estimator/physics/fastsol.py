"""The calibrated SOL folded for speed: `sol.kernel_specs` (the one written model) with the
system's peaks and the fitted efficiencies folded into one coefficient per term.

`compile_scalar` gives a small pure-Python evaluator for one shape (a few
microseconds per estimate); `compile_array` a numpy one over arrays of shapes.
Both read the same kernel data; no source is generated. The attention kernel
of a known launch (`params.launch`) is scaled as `sol.kernels` scales it
(`sol.launch_scale`).
"""

from __future__ import annotations

import numpy as np

from warehouse.vocab import Op

from estimator.physics.calibrate import CalibrationParams, combine
from estimator.physics.sol import (SPARSE_HEAD_TILE, VARIABLES, kernel_specs, launch_scale, linear_form,
                                   shape_variables)
from estimator.physics.specs import ModelSpec, SystemSpec

_INDEX = {v: i for i, v in enumerate(VARIABLES)}


def _is_context(op: str) -> bool:
    return Op.parse(op).context


def _scalar_variables(context: bool, topk: float):
    """(batch, seq, prefix, heads) -> the VARIABLES of one shape, as a list in that order."""
    tile = SPARSE_HEAD_TILE

    if context:
        def variables(batch, seq, prefix, h):
            b = float(batch)
            isl = float(seq)
            t = b * isl
            length = prefix + isl
            sk = b * (isl * prefix + isl * (isl + 1.0) * 0.5)
            bl = b * length
            on = length > topk
            return [1.0, t, h, t * h, bl, bl * h, h * sk, t * (tile * -(-h // tile)), bl,
                    sk if on else 0.0, t if on else 0.0, bl if on else 0.0]
    else:
        def variables(batch, seq, prefix, h):
            b = float(batch)
            length = seq + 1.0
            sk = b * length
            on = length > topk
            return [1.0, b, h, b * h, sk, sk * h, h * sk, b * (tile * -(-h // tile)),
                    b * (length if length < topk else topk), sk if on else 0.0, b if on else 0.0,
                    sk if on else 0.0]
    return variables


def _scalar_form(terms: tuple[tuple[int, float], ...]):
    """v -> sum of c * v[i] over (i, c) in `terms`, as one small closure (no loop per call)."""
    if not terms:
        return lambda v: 0.0
    if len(terms) == 1:
        ((i0, c0),) = terms
        return lambda v: c0 * v[i0]
    if len(terms) == 2:
        (i0, c0), (i1, c1) = terms
        return lambda v: c0 * v[i0] + c1 * v[i1]
    if len(terms) == 3:
        (i0, c0), (i1, c1), (i2, c2) = terms
        return lambda v: c0 * v[i0] + c1 * v[i1] + c2 * v[i2]
    head, (i_last, c_last) = _scalar_form(terms[:-1]), terms[-1]
    return lambda v: head(v) + c_last * v[i_last]


def compile_scalar(op: str, model: ModelSpec, system: SystemSpec, params: CalibrationParams, *,
                   gemm_type: str, kv_cache_dtype: str, kernel_source: str | None = None):
    """A function (batch, seq, prefix, num_heads) -> (calibrated ms, roofline ms) for one op.

    seq is isl for context ops and kv_len for generation ops. Kernels with only
    FLOPs or only bytes add a linear form each, so they are summed into one
    form up front; the others keep their max(FLOP time, byte time).
    """
    bf16, fp8, bw = system.peak_bf16_flops_per_s, system.peak_fp8_flops_per_s, system.hbm_bytes_per_s
    launch = params.launch_on(system)
    folded = []  # (flops form, bytes form, four scales, waves: the launch rule, or None: unscaled)
    linear_cal = [0.0] * len(VARIABLES)
    linear_raw = [0.0] * len(VARIABLES)
    for k in kernel_specs(op, model, gemm_type, kv_cache_dtype, kernel_source=kernel_source):
        ef, eb = params.efficiency(k.group)
        peak = fp8 if k.fp8 else bf16
        waves = k.waves if launch is not None and k.waves == launch.rule else None
        if (k.flops and k.bytes) or waves:
            folded.append((_scalar_form(tuple((_INDEX[v], c) for v, c in k.flops)),
                           _scalar_form(tuple((_INDEX[v], c) for v, c in k.bytes)),
                           1e3 / (peak * ef), 1e3 / (bw * eb), 1e3 / peak, 1e3 / bw, waves))
            continue
        for v, c in k.flops:
            linear_cal[_INDEX[v]] += c * (1e3 / (peak * ef))
            linear_raw[_INDEX[v]] += c * (1e3 / peak)
        for v, c in k.bytes:
            linear_cal[_INDEX[v]] += c * (1e3 / (bw * eb))
            linear_raw[_INDEX[v]] += c * (1e3 / bw)
    folded = tuple(folded)
    cal_form = _scalar_form(tuple((i, c) for i, c in enumerate(linear_cal) if c))
    raw_form = _scalar_form(tuple((i, c) for i, c in enumerate(linear_raw) if c))
    topk = float(model.index_topk)
    variables = _scalar_variables(_is_context(op), topk)
    overhead, p = params.overhead_ms, params.combine_p
    inv_p = 1.0 / p
    i_thp, i_hsk = _INDEX["thp"], _INDEX["hsk"]

    def evaluate(batch, seq, prefix, h):
        v = variables(batch, seq, prefix, h)
        cal = cal_form(v)
        raw = raw_form(v)
        for flops, nbytes, cf, cb, rf, rb, waves in folded:
            f = flops(v)
            y = nbytes(v)
            if waves:  # the launch's waves scale the kernel's work (physics/launch.py)
                s = launch_scale(launch, waves, topk, batch=batch, kv_len=seq, num_heads=h, thp=v[i_thp],
                                 hsk=v[i_hsk])
                f *= s
                y *= s
            x = f * cf
            z = y * cb
            cal += x if x > z else z
            x = f * rf
            z = y * rb
            raw += x if x > z else z
        if p == 1.0:
            return overhead + cal, raw
        m = overhead if overhead > cal else cal  # calibrate.combine, inlined for the scalar path
        return m * ((overhead / m) ** p + (cal / m) ** p) ** inv_p, raw

    return evaluate


def compile_array(op: str, model: ModelSpec, system: SystemSpec, params: CalibrationParams, *,
                  gemm_type: str, kv_cache_dtype: str, kernel_source: str | None = None, dtype=None):
    """Vector twin of `compile_scalar`: f(batch, seq, prefix, heads) arrays -> calibrated ms array.

    Each kernel costs a handful of array passes (constants folded into one
    coefficient per term). dtype float32 (estimate_many's default) halves the
    memory traffic at a relative rounding of ~1e-6, far below the estimator's error.
    """
    dtype = np.float64 if dtype is None else dtype
    context = _is_context(op)
    topk = float(model.index_topk)
    bf16, fp8, bw = system.peak_bf16_flops_per_s, system.peak_fp8_flops_per_s, system.hbm_bytes_per_s
    launch = params.launch_on(system)
    folded = []
    for k in kernel_specs(op, model, gemm_type, kv_cache_dtype, kernel_source=kernel_source):
        ef, eb = params.efficiency(k.group)
        folded.append((k.flops, 1e3 / ((fp8 if k.fp8 else bf16) * ef), k.bytes, 1e3 / (bw * eb), k.waves))
    overhead, p = params.overhead_ms, params.combine_p

    def evaluate(batch, seq, prefix, heads):
        b = np.asarray(batch, dtype=dtype)
        s = np.asarray(seq, dtype=dtype)
        h = np.asarray(heads, dtype=dtype)
        var = shape_variables(context, topk, batch=b, isl=s, prefix=np.asarray(prefix, dtype=dtype),
                              kv_len=s, num_heads=h)
        cal = np.zeros(np.shape(var["t"]), dtype=dtype)
        for flops, sf, nbytes, sb, waves in folded:
            if launch is not None and waves == launch.rule:
                f = np.asarray(launch_scale(launch, waves, topk, batch=b, kv_len=s, num_heads=h, thp=var["thp"],
                                            hsk=var["hsk"]), dtype=dtype)
                sf, sb = sf * f, sb * f
            by = linear_form(nbytes, var, sb)
            cal += np.maximum(linear_form(flops, var, sf), by) if flops else by
        return combine(overhead, cal, p)

    return evaluate
