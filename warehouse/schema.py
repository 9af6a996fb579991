"""Canonical table specs: the one place that says what a measurement row is.

Every reader produces a frame with exactly MEASUREMENT_SCHEMA columns (minus
lineage, which the ingest step adds); everything downstream (perf points,
grids, the estimator) relies on these names and types.
"""

from __future__ import annotations

import polars as pl

SCHEMA_VERSION = 1

# Ops the warehouse accepts, keyed by canonical name -> phase.
OPS: dict[str, str] = {
    "dsa_context": "context",
    "dsa_generation": "generation",
    "mla_context": "context",
    "mla_generation": "generation",
    "mla_context_kernel": "context",
    "mla_generation_kernel": "generation",
}

# Collector table stems (file names / op_name values) -> canonical op.
TABLE_STEMS: dict[str, str] = {
    "dsa_context_module_perf": "dsa_context",
    "dsa_generation_module_perf": "dsa_generation",
    "mla_context_module_perf": "mla_context",
    "mla_generation_module_perf": "mla_generation",
    "context_mla_perf": "mla_context_kernel",
    "generation_mla_perf": "mla_generation_kernel",
}
# Collector `op_name` values -> (canonical op, kernel variant). A variant is
# appended to kernel_source ("<source>+<variant>") so that rows of the same
# kernel with and without e.g. the indexer stay distinct shapes.
COLLECTOR_OP_NAMES: dict[str, tuple[str, str | None]] = {
    "dsa_context_module": ("dsa_context", None),
    "dsa_context_module_skip_indexer": ("dsa_context", "skip_indexer"),
    "dsa_generation_module": ("dsa_generation", None),
    "dsa_generation_module_skip_indexer": ("dsa_generation", "skip_indexer"),
    "mla_context_module": ("mla_context", None),
    "mla_generation_module": ("mla_generation", None),
    "mla_context": ("mla_context_kernel", None),
    "mla_generation": ("mla_generation_kernel", None),
}

DTYPES = ("bfloat16", "float16", "fp8", "fp8_block", "fp8_tensor", "float32")
GEMM_TYPES = ("bfloat16", "float16", "fp8_block", "fp8_tensor", "fp8", "nvfp4")
KV_CACHE_DTYPES = ("bfloat16", "float16", "fp8")

FRAMEWORK_ALIASES: dict[str, str] = {
    "trtllm": "trtllm",
    "tensorrt-llm": "trtllm",
    "tensorrt_llm": "trtllm",
    "vllm": "vllm",
    "sglang": "sglang",
}

# Columns that identify one measured shape (a perf point).
KEY_COLUMNS: tuple[str, ...] = (
    "system",
    "framework",
    "version",
    "op",
    "kernel_source",
    "model",
    "architecture",
    "attn_dtype",
    "kv_cache_dtype",
    "gemm_type",
    "num_heads",
    "batch_size",
    "isl",
    "prefix",
    "kv_len",
    "tp_size",
)

# context rows: isl = new tokens per request, prefix = cached tokens, kv_len null.
# generation rows: isl = 1, kv_len = KV length attended to, prefix null.
MEASUREMENT_SCHEMA: dict[str, pl.DataType] = {
    "system": pl.String(),
    "device": pl.String(),
    "framework": pl.String(),
    "version": pl.String(),
    "op": pl.String(),
    "kernel_source": pl.String(),
    "model": pl.String(),
    "architecture": pl.String(),
    "attn_dtype": pl.String(),
    "kv_cache_dtype": pl.String(),
    "gemm_type": pl.String(),
    "num_heads": pl.Int32(),
    "batch_size": pl.Int32(),
    "isl": pl.Int32(),
    "prefix": pl.Int32(),
    "kv_len": pl.Int32(),
    "tp_size": pl.Int32(),
    "latency_ms": pl.Float64(),
    "run_id": pl.String(),
    "gpu_clock_mhz": pl.Float64(),
    # lineage
    "source_file": pl.String(),
    "source_sha256": pl.String(),
    "source_line": pl.Int64(),
    "ingested_at": pl.Datetime("us", "UTC"),
}

# On disk the text columns are dictionary-encoded (polars Categorical): a log
# of millions of rows has a few distinct values per column, and writing
# categories costs a fraction of hashing every string. Readers get String
# back (warehouse.read casts to MEASUREMENT_SCHEMA; DuckDB reads VARCHAR).
STORAGE_SCHEMA: dict[str, pl.DataType] = {
    c: pl.Categorical() if t == pl.String else t for c, t in MEASUREMENT_SCHEMA.items()
}

PERF_POINT_SCHEMA: dict[str, pl.DataType] = {
    **{c: MEASUREMENT_SCHEMA[c] for c in KEY_COLUMNS},
    "latency_ms": pl.Float64(),  # median of repeats
    "n": pl.UInt32(),
    "latency_min_ms": pl.Float64(),
    "latency_max_ms": pl.Float64(),
    "spread_rel": pl.Float64(),  # (max - min) / median; null for a single sample
}

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "source_sha256": pl.String(),
    "source_line": pl.Int64(),
    "raw": pl.String(),
    "reason": pl.String(),
    "ingested_at": pl.Datetime("us", "UTC"),
}

LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "path": pl.String(),
    "sha256": pl.String(),
    "format": pl.String(),
    "rows_read": pl.Int64(),
    "rows_accepted": pl.Int64(),
    "rows_quarantined": pl.Int64(),
    "status": pl.String(),  # ingested | replaced | failed
    "first_ingested_at": pl.Datetime("us", "UTC"),
    "ingested_at": pl.Datetime("us", "UTC"),
    "message": pl.String(),
}

# Hive partition columns of the measurements store, in path order.
PARTITION_COLUMNS = ("system", "framework", "version", "op")


def phase_of(op: str) -> str:
    """'context' or 'generation' for a canonical op name."""
    try:
        return OPS[op]
    except KeyError:
        raise ValueError(f"unknown op {op!r}; valid: {', '.join(OPS)}") from None


def seq_column(op: str) -> str:
    """The sequence axis of an op: isl for context, kv_len for generation."""
    return "isl" if phase_of(op) == "context" else "kv_len"
