"""Vectorised estimation core: grid ratio x calibrated SOL, per group of points.

Pure (no I/O): the accuracy protocol and `PerfDatabase.estimate_many` both
call `estimate_group`.
"""

from __future__ import annotations

import numpy as np

from . import interp, sol
from .calibrate import CalibrationParams, calibrated_ms
from .grid import GroupGrids
from .lookup import lookup_many
from .specs import ModelSpec, SystemSpec


def sol_many(op: str, model: ModelSpec, system: SystemSpec, params: CalibrationParams, *,
             gemm_type: str, kv_cache_dtype: str, batch, isl, prefix, kv_len, num_heads,
             index_topk: int | None = None) -> np.ndarray:
    ks = sol.kernels(op, model, batch=batch, isl=isl, prefix=prefix, kv_len=kv_len, num_heads=num_heads,
                     gemm_type=gemm_type, kv_cache_dtype=kv_cache_dtype, index_topk=index_topk)
    return np.broadcast_to(calibrated_ms(ks, system, params), np.shape(batch)).astype(np.float64)


def estimate_group(grp: GroupGrids | None, op: str, model: ModelSpec, system: SystemSpec,
                   params: CalibrationParams, *, gemm_type: str, kv_cache_dtype: str,
                   batch, isl, prefix, kv_len, num_heads, index_topk: int | None = None,
                   transferred: bool = False):
    """(latency_ms, source code, sol_ms) arrays for points of one group.

    Without grids (grp None) or where no slice covers a point, the calibrated
    SOL alone answers (source `sol`).
    """
    batch = np.asarray(batch, dtype=np.float64)
    isl = np.asarray(isl, dtype=np.float64)
    prefix = np.asarray(prefix, dtype=np.float64)
    kv_len = np.asarray(kv_len, dtype=np.float64)
    num_heads = np.asarray(num_heads, dtype=np.float64)
    sol_ms = sol_many(op, model, system, params, gemm_type=gemm_type, kv_cache_dtype=kv_cache_dtype,
                      batch=batch, isl=isl, prefix=prefix, kv_len=kv_len, num_heads=num_heads,
                      index_topk=index_topk)
    if grp is None:
        return sol_ms.copy(), np.full(batch.shape, interp.SOL, dtype=np.int8), sol_ms
    seq = isl if "_context" in op else kv_len
    ratio, code = lookup_many(grp, num_heads, prefix, batch, seq)
    miss = np.isnan(ratio)
    latency = sol_ms * np.exp2(np.where(miss, 0.0, ratio))
    code = np.where(miss, interp.SOL, code)
    if transferred:
        code = np.where(miss, code, np.maximum(code, interp.TRANSFERRED))
    return latency, code.astype(np.int8), sol_ms
