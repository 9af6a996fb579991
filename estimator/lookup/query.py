"""What a query may name and how it is checked: valid ops and backends, integer arguments,
and the record of a query's key resolved to the data that answers it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from warehouse.vocab import Op, op_names

from estimator.physics.calibrate import CalibrationParams
from estimator.common import Source
from estimator.grids.schema import SOURCES
from estimator.lookup.grids import GroupGrids
from estimator.lookup.intervals import class_code
from estimator.lookup.limits import MAX_INT, Bounds, check_int_max
from estimator.physics.specs import ModelSpec
from estimator.lookup.versions import version_key


OPS = op_names()
FRAMEWORKS = {"trtllm": "trtllm", "tensorrt-llm": "trtllm", "tensorrt_llm": "trtllm",
              "vllm": "vllm", "sglang": "sglang", "perfwh": "perfwh"}
METHODS = ("interp", "nearest")
_SOURCE_ENUM = tuple(Source(s) for s in SOURCES)
_CAT_COLUMNS = ("gemm_type", "kv_cache_dtype", "attn_dtype", "architecture", "kernel_source")
_INT_OPTIONS = ("index_topk", "index_n_heads")
SOURCE_DTYPE = pl.Enum(list(SOURCES))  # estimate_many's `source` column
_SOURCE_NAMES = pl.Series("source", list(SOURCES), dtype=SOURCE_DTYPE)
_IV_CLASS = tuple(class_code(s) for s in SOURCES)  # grid provenance code -> interval class
_IV_CLASS_ARR = np.asarray(_IV_CLASS, dtype=np.int8)


def canonical_op(op: str) -> str:
    """The canonical name of an op or alias (`Op.parse`); ValueError names the valid ones."""
    return Op.parse(op).name


_version_key = version_key  # PEP 440 order (estimator.lookup.versions); old name kept for importers


def _positive_int(name: str, value) -> int:
    if type(value) is int and 0 < value <= MAX_INT:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return check_int_max(name, int(value))


def _non_negative_int(name: str, value) -> int:
    if type(value) is int and value == 0:  # the common default; False and 0.0 take the checks below
        return 0
    if not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating)) and value == 0:
        return 0
    try:
        return _positive_int(name, value)
    except ValueError as exc:
        if type(exc) is not ValueError:  # OutOfRangeError: above 2^31-1
            raise
        raise ValueError(str(exc).replace("a positive integer", "an integer >= 0")) from None


@dataclasses.dataclass(frozen=True)
class _Resolved:
    """A query's categorical key resolved to the data that answers it."""

    group: GroupGrids | None
    key: tuple  # GROUP_KEYS values of the answering data (or of the query when none)
    transferred_from: str | None
    model: ModelSpec
    params: CalibrationParams
    gemm_type: str  # the query's own precisions: the SOL is always evaluated for the query
    kv_cache_dtype: str
    scalar_sol: object  # fastsol.compile_scalar(...) for this query: (b, seq, prefix, heads) -> (cal, raw)
    array_sol: object  # fastsol.compile_array(..., float32) for estimate_many
    slice_items: tuple  # ((key, value), ...) of the answering data, for Estimate.slice
    max_heads: int = 0  # limits (estimator.lookup.limits): refuse above these
    max_seq: int = 0
    bounds: Bounds | None = None  # past these, the calibrated SOL answers
