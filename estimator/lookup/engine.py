"""Vectorised estimation core: grid ratio x calibrated SOL, per group of points.

Pure (no I/O): the accuracy protocol and `PerfDatabase.estimate_many` both
call `estimate_group`.
"""

from __future__ import annotations

import numpy as np

from warehouse.vocab import Op

from estimator.grids import interp
from estimator.physics.calibrate import CalibrationParams
from estimator.physics.fastsol import compile_array
from estimator.lookup.grids import GroupGrids
from estimator.lookup.interpolate import lookup_many
from estimator.physics.specs import ModelSpec, SystemSpec


def estimate_group(grp: GroupGrids | None, op: str, model: ModelSpec, system: SystemSpec,
                   params: CalibrationParams, *, gemm_type: str, kv_cache_dtype: str,
                   batch, isl, prefix, kv_len, num_heads, kernel_source: str | None = None,
                   transferred: bool = False, sol_fn=None, dtype=np.float64):
    """(latency_ms, source code, sol_ms) arrays for points of one group.

    Without grids (grp None) or where no slice covers a point, the calibrated
    SOL alone answers (source `sol`). sol_fn: a `fastsol.compile_array` result
    to reuse; kernel_source: the slice whose SOL variant applies (`physics.variants`);
    dtype: working precision (float32 in `estimate_many`).
    """
    batch = np.asarray(batch, dtype=dtype)
    seq = np.asarray(isl if Op.parse(op).context else kv_len, dtype=dtype)
    prefix = np.broadcast_to(np.asarray(prefix, dtype=dtype), batch.shape)
    num_heads = np.asarray(num_heads, dtype=dtype)
    if sol_fn is None:
        sol_fn = compile_array(op, model, system, params, gemm_type=gemm_type, kv_cache_dtype=kv_cache_dtype,
                               kernel_source=kernel_source, dtype=dtype)
    sol_ms = np.asarray(sol_fn(batch, seq, prefix, num_heads), dtype=np.float64)
    if grp is None:
        return sol_ms.copy(), np.full(batch.shape, interp.SOL, dtype=np.int8), sol_ms
    ratio, code = lookup_many(grp, num_heads, prefix, batch, seq)
    miss = np.isnan(ratio)
    latency = sol_ms * np.exp2(np.where(miss, 0.0, ratio))
    code = np.where(miss, interp.SOL, code)
    if transferred:
        code = np.where(miss, code, np.maximum(code, interp.TRANSFERRED))
    return latency, code.astype(np.int8), sol_ms
