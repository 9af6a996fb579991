"""Typing, validation and canonicalisation of raw rows (all formats alike).

Every rule is a vectorised polars expression that yields a reason string or
null; a row's reasons are joined, so a quarantined row lists every problem at
once. Rows with no reason become canonical measurements.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from .schema import (
    FRAMEWORK_ALIASES,
    GEMM_TYPES,
    KV_CACHE_DTYPES,
    DTYPES,
    MEASUREMENT_SCHEMA,
    COLLECTOR_OP_NAMES,
    OPS,
    TABLE_STEMS,
)

SYSTEM_NAMES = (
    "h200_sxm", "h100_sxm", "h100_pcie", "h20", "a100_sxm", "a100_pcie", "a30",
    "b200_sxm", "b300_sxm", "gb200", "gb300", "gh200", "l4", "l40s", "b60",
    "rtx_pro_6000_server",
)  # fmt: skip
# Device-name patterns -> system, checked in order; the folder is the fallback.
DEVICE_SYSTEMS: tuple[tuple[str, str], ...] = (
    (r"(?i)gh200", "gh200"),
    (r"(?i)gb300", "gb300"),
    (r"(?i)gb200", "gb200"),
    (r"(?i)b300", "b300_sxm"),
    (r"(?i)b200", "b200_sxm"),
    (r"(?i)h200", "h200_sxm"),
    (r"(?i)h100.*pcie", "h100_pcie"),
    (r"(?i)h100", "h100_sxm"),
    (r"(?i)\bh20\b", "h20"),
    (r"(?i)a100.*pcie", "a100_pcie"),
    (r"(?i)a100", "a100_sxm"),
    (r"(?i)l40s", "l40s"),
    (r"(?i)rtx pro 6000", "rtx_pro_6000_server"),
)
FRAMEWORK_RE = r"^[a-z0-9][a-z0-9_.+-]*$"

INT_LIMITS: dict[str, tuple[int, int]] = {
    "num_heads": (1, 4096),
    "batch_size": (1, 1 << 20),
    "isl": (1, 1 << 24),
    "tp_size": (1, 1024),
    "step": (0, 1 << 24),
}

MODULE_REQUIRED = ("gemm_type", "model", "architecture")
ALWAYS_REQUIRED = (
    "framework", "version", "kernel_source", "mla_dtype", "kv_cache_dtype",
    "num_heads", "batch_size", "isl", "tp_size", "step", "latency",
)  # fmt: skip


@dataclass(frozen=True)
class SourceContext:
    """What the file's location says, used where a row does not say it."""

    path: Path
    table_op: str | None  # op named by the file stem
    folder_system: str | None


def context_for(path: Path) -> SourceContext:
    stem = path.stem.lower()
    table_op = TABLE_STEMS.get(stem) or (stem if stem in OPS else None)
    folder_system = next((p for p in reversed(path.parts) if p in SYSTEM_NAMES), None)
    return SourceContext(path=path, table_op=table_op, folder_system=folder_system)


def _lit_null() -> pl.Expr:
    return pl.lit(None, dtype=pl.String)


def _msg(cond: pl.Expr, text: pl.Expr | str) -> pl.Expr:
    value = pl.lit(text) if isinstance(text, str) else text
    return pl.when(cond).then(value).otherwise(_lit_null())


def _system_expr() -> pl.Expr:
    expr = _lit_null()
    for pattern, system in reversed(DEVICE_SYSTEMS):
        expr = pl.when(pl.col("device").str.contains(pattern)).then(pl.lit(system)).otherwise(expr)
    return expr


def validate(frame: pl.DataFrame, ctx: SourceContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split raw text rows into (measurements, quarantine) frames.

    measurements: MEASUREMENT_SCHEMA columns without the lineage columns other
    than source_line. quarantine: source_line, raw, reason.
    """
    cols = set(frame.columns)
    # Normalise alternative spellings first (JSONL / newer collectors).
    if "latency" not in cols and "latency_ms" in cols:
        frame = frame.rename({"latency_ms": "latency"})
    if "mla_dtype" not in cols and "attn_dtype" in cols:
        frame = frame.rename({"attn_dtype": "mla_dtype"})
    if "step" not in frame.columns and ("prefix" in cols or "kv_len" in cols):
        parts = [pl.col(c) for c in ("prefix", "kv_len") if c in cols]
        frame = frame.with_columns(pl.coalesce(parts).alias("step"))
    cols = set(frame.columns)

    for name in (*ALWAYS_REQUIRED, *MODULE_REQUIRED, "device", "system", "op_name", "op",
                 "run_id", "gpu_clock_mhz"):  # fmt: skip
        if name not in cols:
            frame = frame.with_columns(_lit_null().alias(name))
    missing_cols = [c for c in ALWAYS_REQUIRED if c not in cols]

    # Canonical op: the row's `op` (JSONL, canonical names), else its collector
    # op_name, else the table named by the file stem.
    names = pl.DataFrame(
        {
            "__op_name": list(COLLECTOR_OP_NAMES),
            "__op_from_name": [v[0] for v in COLLECTOR_OP_NAMES.values()],
            "__variant": [v[1] for v in COLLECTOR_OP_NAMES.values()],
        },
        schema={"__op_name": pl.String, "__op_from_name": pl.String, "__variant": pl.String},
    )
    given_op = pl.col("op").str.strip_chars().str.to_lowercase() if "op" in cols else _lit_null()
    frame = frame.with_columns(
        pl.col("op_name").str.to_lowercase().str.strip_chars().alias("__op_name"),
        given_op.alias("__given_op"),
    ).join(names, on="__op_name", how="left", maintain_order="left")
    stem_op = pl.lit(ctx.table_op, dtype=pl.String)
    frame = frame.with_columns(
        pl.when(pl.col("__given_op").is_not_null())
        .then(pl.when(pl.col("__given_op").is_in(list(OPS))).then(pl.col("__given_op")))
        .when(pl.col("op_name").is_not_null())
        .then(pl.col("__op_from_name"))
        .otherwise(stem_op)
        .alias("op"),
        pl.when(
            pl.col("__variant").is_not_null()
            & ~pl.col("kernel_source").str.contains(pl.col("__variant"), literal=True)
        )
        .then(pl.format("{}+{}", pl.col("kernel_source").str.strip_chars(), pl.col("__variant")))
        .otherwise(pl.col("kernel_source"))
        .alias("kernel_source"),
    )
    phase = pl.col("op").replace_strict(OPS, default=None, return_dtype=pl.String)

    typed = {
        name: pl.col(name).str.strip_chars().cast(pl.Int64, strict=False).alias(f"__{name}")
        for name in INT_LIMITS
    }
    latency = pl.col("latency").str.strip_chars().str.to_lowercase()
    typed["latency"] = latency.cast(pl.Float64, strict=False).alias("__latency")
    frame = frame.with_columns(
        *typed.values(),
        phase.alias("__phase"),
        pl.coalesce(
            pl.col("system").str.to_lowercase(), _system_expr(), pl.lit(ctx.folder_system)
        ).alias("__system"),
        pl.col("framework")
        .str.strip_chars()
        .str.to_lowercase()
        .replace(FRAMEWORK_ALIASES)
        .alias("__framework"),
    )

    reasons: list[pl.Expr] = []
    if missing_cols:
        reasons.append(pl.lit(f"missing column(s): {', '.join(missing_cols)}"))
    for name in ALWAYS_REQUIRED:
        if name in cols:
            reasons.append(
                _msg(pl.col(name).is_null() | (pl.col(name).str.strip_chars() == ""), f"{name}: empty")
            )
    module = pl.col("op").is_in(["dsa_context", "dsa_generation", "mla_context", "mla_generation"])
    for name in MODULE_REQUIRED:
        reasons.append(
            _msg(module & (pl.col(name).is_null() | (pl.col(name) == "")), f"{name}: empty (required for module ops)")
        )
    for name, (lo, hi) in INT_LIMITS.items():
        v = pl.col(f"__{name}")
        raw_v = pl.col(name)
        reasons.append(
            _msg(
                raw_v.is_not_null() & (raw_v.str.strip_chars() != "") & v.is_null(),
                pl.format("{}: not an integer ({})", pl.lit(name), raw_v),
            )
        )
        reasons.append(
            _msg(
                v.is_not_null() & ((v < lo) | (v > hi)),
                pl.format("{}: {} outside [{}, {}]", pl.lit(name), v.cast(pl.String), pl.lit(str(lo)), pl.lit(str(hi))),
            )
        )
    lat = pl.col("__latency")
    reasons += [
        _msg(
            pl.col("latency").is_not_null() & (pl.col("latency") != "") & lat.is_null(),
            pl.format("latency: not a number ({})", pl.col("latency")),
        ),
        _msg(lat.is_nan(), "latency: NaN"),
        _msg(lat.is_infinite(), "latency: infinite"),
        _msg(lat.is_finite() & (lat <= 0), pl.format("latency: non-positive ({})", lat.cast(pl.String))),
        _msg(
            pl.col("op").is_null(),
            pl.format(
                "unknown op {} (valid op_name: {}; valid op: {})",
                pl.coalesce("__given_op", "op_name", pl.lit(ctx.path.stem)),
                pl.lit(", ".join(sorted(COLLECTOR_OP_NAMES))),
                pl.lit(", ".join(OPS)),
            ),
        ),
        _msg(
            (pl.col("__phase") == "generation") & pl.col("__isl").is_not_null() & (pl.col("__isl") != 1),
            pl.format("generation row with isl={} (must be 1)", pl.col("__isl").cast(pl.String)),
        ),
        _msg(
            pl.col("__system").is_null(),
            pl.format("unknown system for device {}", pl.col("device").fill_null("<none>")),
        ),
        _msg(
            pl.col("__framework").is_not_null() & ~pl.col("__framework").str.contains(FRAMEWORK_RE),
            pl.format("framework: invalid name {}", pl.col("framework")),
        ),
    ]
    for name, valid in (("mla_dtype", DTYPES), ("kv_cache_dtype", KV_CACHE_DTYPES), ("gemm_type", GEMM_TYPES)):
        v = pl.col(name).str.to_lowercase()
        reasons.append(
            _msg(
                v.is_not_null() & (v != "") & ~v.is_in(list(valid)),
                pl.format("{}: unknown dtype {} (valid: {})", pl.lit(name), pl.col(name), pl.lit(", ".join(valid))),
            )
        )

    # A line that could not be split has only its parse error to report.
    joined = pl.concat_str(reasons, separator="; ", ignore_nulls=True)
    frame = frame.with_columns(
        pl.coalesce(
            pl.col("parse_error"), pl.when(joined == "").then(None).otherwise(joined)
        ).alias("__reason")
    )

    bad = frame.filter(pl.col("__reason").is_not_null()).select(
        "source_line", "raw", pl.col("__reason").alias("reason")
    )
    good = frame.filter(pl.col("__reason").is_null())
    is_ctx = pl.col("__phase") == "context"

    def clean(name: str) -> pl.Expr:
        c = pl.col(name).str.strip_chars()
        return pl.when(c == "").then(None).otherwise(c)

    measurements = good.select(
        pl.col("__system").alias("system"),
        clean("device").alias("device"),
        pl.col("__framework").alias("framework"),
        clean("version").alias("version"),
        pl.col("op"),
        clean("kernel_source").alias("kernel_source"),
        clean("model").alias("model"),
        clean("architecture").alias("architecture"),
        pl.col("mla_dtype").str.to_lowercase().alias("attn_dtype"),
        pl.col("kv_cache_dtype").str.to_lowercase().alias("kv_cache_dtype"),
        clean("gemm_type").str.to_lowercase().alias("gemm_type"),
        pl.col("__num_heads").cast(pl.Int32).alias("num_heads"),
        pl.col("__batch_size").cast(pl.Int32).alias("batch_size"),
        pl.col("__isl").cast(pl.Int32).alias("isl"),
        pl.when(is_ctx).then(pl.col("__step")).cast(pl.Int32).alias("prefix"),
        pl.when(~is_ctx).then(pl.col("__step")).cast(pl.Int32).alias("kv_len"),
        pl.col("__tp_size").cast(pl.Int32).alias("tp_size"),
        pl.col("__latency").alias("latency_ms"),
        clean("run_id").alias("run_id"),
        pl.col("gpu_clock_mhz").cast(pl.Float64, strict=False).alias("gpu_clock_mhz"),
        pl.col("source_line").cast(pl.Int64),
    )
    return measurements, bad


MEASUREMENT_BODY = {k: v for k, v in MEASUREMENT_SCHEMA.items() if k not in ("source_file", "source_sha256", "ingested_at")}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)
