"""Certify a clean fast-path block and canonicalise it without row-wise text work.

Collector logs hold millions of rows but a handful of distinct devices, dtypes
and op names. The fast-path reader hands over text columns as Categorical, so
every text rule of `warehouse.validate` can be decided once per distinct value
and every numeric rule with one vectorised pass. The rows that pass come out
canonical from a few category maps and casts; the rows that break a rule (and
whole blocks of a shape this module does not cover) go to the exact
validator, which names every reason.

Both paths must give identical measurements; tests/warehouse checks that.
"""

from __future__ import annotations

import polars as pl

from .schema import DTYPES, GEMM_TYPES, KV_CACHE_DTYPES, OPS
from .validate import (
    ALWAYS_REQUIRED,
    INT_LIMITS,
    LATENCY_MAX_MS,
    LATENCY_MIN_MS,
    MODULE_REQUIRED,
    SourceContext,
    framework_name,
    norm_in,
    op_tables,
    system_of_device,
)

# Known columns this path does not canonicalise: their presence sends the
# block to the exact path.
_OTHER_KNOWN = {"system", "op", "attn_dtype", "prefix", "kv_len", "latency_ms", "run_id", "gpu_clock_mhz"}


def _distinct(frame: pl.DataFrame, col: str, known: dict[str, list[str]] | None = None) -> list[str]:
    if known is not None and col in known:
        return known[col]
    return frame.get_column(col).unique().cast(pl.String).to_list()


def _mapped(col: str, mapping: dict[str, str]) -> pl.Expr:
    """The column with each distinct value replaced, staying Categorical."""
    if len(mapping) == 1:
        (value,) = mapping.values()
        return pl.lit(value, dtype=pl.String).cast(pl.Categorical)
    if all(k == v for k, v in mapping.items()):
        return pl.col(col)
    return pl.col(col).cast(pl.String).replace_strict(mapping, return_dtype=pl.String).cast(pl.Categorical)


def certify(
    frame: pl.DataFrame, ctx: SourceContext, distinct: dict[str, list[str]] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """(canonical measurements of the rows that pass every rule, the other rows
    as they came), or None where the block's shape is not one this path covers.

    `frame` is a fast-path chunk: numeric columns parsed, text columns
    Categorical with no null, empty or padded value (the reader checked).
    The rows handed back go to the exact validator, which names their faults;
    a NaN latency sprinkled through a log costs those rows, not the block.
    `distinct`: each text column's distinct values, where the reader has them.
    """
    cols = set(frame.columns)
    if cols & _OTHER_KNOWN or not set(ALWAYS_REQUIRED) <= cols:
        return None
    if frame.schema.get("latency") != pl.Float64:
        return None
    to_op, to_variant = op_tables()
    if "op_name" in cols:
        names = _distinct(frame, "op_name", distinct)
        ops = {n: to_op.get(n.strip().lower()) for n in names}
        variants = {to_variant.get(n.strip().lower()) for n in names if ops[n]}
    elif ctx.table_op is None:
        return None  # no op anywhere: the exact path reports it
    else:
        ops, variants = {"": ctx.table_op}, {None}
    phases = {OPS[o] for o in ops.values() if o}
    if len(variants) > 1 or len(phases) > 1:
        return None  # op names mixing kernel variants or phases: the exact path sorts them out
    phase = next(iter(phases), "context")
    variant = next(iter(variants), None)
    module = any(o in ("dsa_context", "dsa_generation", "mla_context", "mla_generation") for o in ops.values())
    if module and not set(MODULE_REQUIRED) <= cols:
        return None

    # Per distinct value: its canonical form, or None where a rule rejects it.
    text: dict[str, dict[str, str | None]] = {
        "framework": {v: framework_name(v) for v in _distinct(frame, "framework", distinct)},
        "mla_dtype": {v: norm_in(v, DTYPES) for v in _distinct(frame, "mla_dtype", distinct)},
        "kv_cache_dtype": {v: norm_in(v, KV_CACHE_DTYPES) for v in _distinct(frame, "kv_cache_dtype", distinct)},
    }
    if "gemm_type" in cols:
        text["gemm_type"] = {v: norm_in(v, GEMM_TYPES) for v in _distinct(frame, "gemm_type", distinct)}
    if "op_name" in cols:
        text["op_name"] = ops
    if "device" in cols:
        text["device"] = {v: system_of_device(v) or ctx.folder_system for v in _distinct(frame, "device", distinct)}
    elif ctx.folder_system is None:
        return None

    lat = pl.col("latency")
    broken = [(pl.col(n) < lo) | (pl.col(n) > hi) for n, (lo, hi) in INT_LIMITS.items()]
    broken.append(~lat.is_finite() | (lat < LATENCY_MIN_MS) | (lat > LATENCY_MAX_MS))
    if phase == "generation":
        broken.append(pl.col("isl") != 1)
    for name, mapping in text.items():
        rejected = [v for v, canon in mapping.items() if canon is None]
        if rejected:
            broken.append(pl.col(name).cast(pl.String).is_in(rejected))
    bad = frame.select(pl.any_horizontal(broken).alias("bad")).to_series()
    rest = frame.filter(bad) if bad.any() else frame.clear()
    if rest.height:
        frame = frame.filter(~bad)
    valid = {name: {v: c for v, c in mapping.items() if c is not None} for name, mapping in text.items()}

    def text_col(name: str) -> pl.Expr:
        if name in cols:
            return pl.col(name)
        return pl.lit(None, dtype=pl.Categorical)

    kernel_source = pl.col("kernel_source")
    if variant is not None:
        suffixed = {k: k if variant in k else f"{k}+{variant}" for k in _distinct(frame, "kernel_source")}
        kernel_source = _mapped("kernel_source", suffixed)
    step = pl.col("step").cast(pl.Int32)
    none_i32 = pl.lit(None, dtype=pl.Int32)
    good = frame.select(
        (_mapped("device", valid["device"]) if "device" in cols else pl.lit(ctx.folder_system).cast(pl.Categorical)).alias("system"),
        text_col("device").alias("device"),
        _mapped("framework", valid["framework"]).alias("framework"),
        pl.col("version"),
        (_mapped("op_name", valid["op_name"]) if "op_name" in cols else pl.lit(ctx.table_op).cast(pl.Categorical)).alias("op"),
        kernel_source.alias("kernel_source"),
        text_col("model").alias("model"),
        text_col("architecture").alias("architecture"),
        _mapped("mla_dtype", valid["mla_dtype"]).alias("attn_dtype"),
        _mapped("kv_cache_dtype", valid["kv_cache_dtype"]).alias("kv_cache_dtype"),
        (_mapped("gemm_type", valid["gemm_type"]) if "gemm_type" in cols else text_col("gemm_type")).alias("gemm_type"),
        pl.col("num_heads").cast(pl.Int32),
        pl.col("batch_size").cast(pl.Int32),
        pl.col("isl").cast(pl.Int32),
        (step if phase == "context" else none_i32).alias("prefix"),
        (step if phase == "generation" else none_i32).alias("kv_len"),
        pl.col("tp_size").cast(pl.Int32),
        lat.alias("latency_ms"),
        pl.lit(None, dtype=pl.Categorical).alias("run_id"),
        pl.lit(None, dtype=pl.Float64).alias("gpu_clock_mhz"),
        pl.col("source_line").cast(pl.Int64),
    )  # fmt: skip
    return good, rest
