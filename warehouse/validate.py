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

# Bounds a latency per call must lie in, checkable without any model of the
# kernel: below 1 us is under a kernel launch, above 1 hour no benchmark
# repeats a call. Outside them a row is a unit slip or a broken timer.
LATENCY_MIN_MS = 1e-3
LATENCY_MAX_MS = 3.6e6

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


def system_of_device(device: str | None) -> str | None:
    if device is None:
        return None
    return next((system for pattern, system in DEVICE_SYSTEMS if re.search(pattern, device)), None)


def _map_uniques(frame: pl.DataFrame, col: str, fn) -> pl.Expr:
    """Apply a Python function to each distinct value, then map the column.

    Raw logs hold a handful of distinct devices, dtypes and op names across
    millions of rows; mapping the uniques keeps regexes and case folding out
    of the per-row path.
    """
    uniques = frame.get_column(col).unique().to_list()
    mapping = {u: fn(u) for u in uniques if u is not None}
    return pl.col(col).replace_strict(mapping, default=None, return_dtype=pl.String)


def norm_in(value: str, valid) -> str | None:
    """The value trimmed and lower-cased if that is one of `valid`, else None."""
    v = value.strip().lower()
    return v if v in valid else None


def framework_name(value: str) -> str | None:
    v = value.strip().lower()
    v = FRAMEWORK_ALIASES.get(v, v)
    return v if re.match(FRAMEWORK_RE, v) else None


def op_tables() -> tuple[dict, dict]:
    to_op = {name: op for name, (op, _) in COLLECTOR_OP_NAMES.items()}
    to_variant = {name: v for name, (_, v) in COLLECTOR_OP_NAMES.items() if v}
    return to_op, to_variant


def validate(frame: pl.DataFrame, ctx: SourceContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split raw text rows into (measurements, quarantine) frames.

    Cheap boolean rules run on every row; reason strings are only built for
    the rows that fail, so a clean file costs a few casts and comparisons.
    measurements: MEASUREMENT_SCHEMA columns minus source_file, source_sha256
    and ingested_at. quarantine: source_line, raw, reason.
    """
    cols = set(frame.columns)
    renames = {}
    if "latency" not in cols and "latency_ms" in cols:
        renames["latency_ms"] = "latency"
    if "mla_dtype" not in cols and "attn_dtype" in cols:
        renames["attn_dtype"] = "mla_dtype"
    frame = frame.rename(renames)
    cols = set(frame.columns)
    if "step" not in cols and ("prefix" in cols or "kv_len" in cols):
        frame = frame.with_columns(pl.coalesce([pl.col(c) for c in ("prefix", "kv_len") if c in cols]).alias("step"))
        cols.add("step")
    missing_cols = [c for c in ALWAYS_REQUIRED if c not in cols]
    fill = [c for c in (*ALWAYS_REQUIRED, *MODULE_REQUIRED, "device", "system", "op_name", "op",
                        "run_id", "gpu_clock_mhz") if c not in cols]  # fmt: skip
    frame = frame.with_columns([_lit_null().alias(c) for c in fill])

    to_op, to_variant = op_tables()

    def norm(v: str) -> str:
        return v.strip().lower()

    given_op = _map_uniques(frame, "op", lambda v: norm_in(v, OPS))
    from_name = _map_uniques(frame, "op_name", lambda v: to_op.get(norm(v)))
    variant = _map_uniques(frame, "op_name", lambda v: to_variant.get(norm(v)))
    op = (
        pl.when(pl.col("op").is_not_null())
        .then(given_op)
        .when(pl.col("op_name").is_not_null())
        .then(from_name)
        .otherwise(pl.lit(ctx.table_op, dtype=pl.String))
    )
    # Readers hand over trimmed fields, so numbers cast directly.
    typed = [pl.col(name).cast(pl.Int64, strict=False).alias(f"__{name}") for name in INT_LIMITS]
    frame = frame.with_columns(
        *typed,
        pl.col("latency").cast(pl.Float64, strict=False).alias("__latency"),
        op.alias("__op"),
        variant.alias("__variant"),
        pl.coalesce(
            _map_uniques(frame, "system", lambda v: norm(v) or None),  # blank: as if absent
            _map_uniques(frame, "device", system_of_device),
            pl.lit(ctx.folder_system, dtype=pl.String),
        ).alias("__system"),
        _map_uniques(frame, "framework", framework_name).alias("__framework"),
        *[
            _map_uniques(frame, name, lambda v, ok=valid: norm_in(v, ok)).alias(f"__{name}")
            for name, valid in (("mla_dtype", DTYPES), ("kv_cache_dtype", KV_CACHE_DTYPES), ("gemm_type", GEMM_TYPES))
        ],
    ).with_columns(
        pl.col("__op").replace_strict(OPS, default=None, return_dtype=pl.String).alias("__phase"),
    )

    def blank(name: str) -> pl.Expr:
        if frame.schema[name] != pl.String:
            return pl.col(name).is_null()
        return pl.col(name).is_null() | (pl.col(name) == "")

    module = pl.col("__op").is_in(["dsa_context", "dsa_generation", "mla_context", "mla_generation"])
    lat = pl.col("__latency")
    raw_lat = pl.col("latency")
    # (failing condition, reason) pairs; reasons are only evaluated on failing rows.
    rules: list[tuple[pl.Expr, pl.Expr]] = []
    if missing_cols:
        rules.append((pl.lit(True), pl.lit(f"missing column(s): {', '.join(missing_cols)}")))
    rules += [(blank(n), pl.lit(f"{n}: empty")) for n in ALWAYS_REQUIRED if n in cols]
    rules += [(module & blank(n), pl.lit(f"{n}: empty (required for module ops)")) for n in MODULE_REQUIRED]
    for name, (lo, hi) in INT_LIMITS.items():
        v, raw_v = pl.col(f"__{name}"), pl.col(name)
        rules.append((v.is_null() & ~blank(name), pl.format("{}: not an integer ({})", pl.lit(name), raw_v)))
        rules.append(
            ((v < lo) | (v > hi), pl.format("{}: {} outside [{}, {}]", pl.lit(name), v, pl.lit(lo), pl.lit(hi)))
        )
    rules += [
        (lat.is_null() & ~blank("latency"), pl.format("latency: not a number ({})", raw_lat)),
        (lat.is_nan(), pl.lit("latency: NaN")),
        (lat.is_infinite(), pl.lit("latency: infinite")),
        (lat.is_finite() & (lat <= 0), pl.format("latency: non-positive ({})", lat)),
        (
            lat.is_finite() & (lat > 0) & ((lat < LATENCY_MIN_MS) | (lat > LATENCY_MAX_MS)),
            pl.format(
                "latency: {} ms outside [{}, {}] ms (1 us to 1 hour per call)",
                lat, pl.lit(LATENCY_MIN_MS), pl.lit(LATENCY_MAX_MS),
            ),
        ),
        (
            pl.col("__op").is_null(),
            pl.format(
                "unknown op {} (valid op_name: {}; valid op: {})",
                pl.coalesce("op", "op_name", pl.lit(ctx.path.stem)),
                pl.lit(", ".join(sorted(COLLECTOR_OP_NAMES))),
                pl.lit(", ".join(OPS)),
            ),
        ),
        (
            (pl.col("__phase") == "generation") & (pl.col("__isl") != 1),
            pl.format("generation row with isl={} (must be 1)", pl.col("__isl")),
        ),
        (
            pl.col("__system").is_null(),
            pl.format("unknown system for device {}", pl.col("device").fill_null("<none>")),
        ),
        (
            ~pl.col("__system").str.contains(FRAMEWORK_RE).fill_null(True),
            pl.format("system: invalid name {}", pl.col("system")),
        ),
        (
            ~blank("framework") & pl.col("__framework").is_null(),
            pl.format("framework: invalid name {}", pl.col("framework")),
        ),
    ]
    for name, valid in (("mla_dtype", DTYPES), ("kv_cache_dtype", KV_CACHE_DTYPES), ("gemm_type", GEMM_TYPES)):
        rules.append(
            (
                ~blank(name) & pl.col(f"__{name}").is_null(),
                pl.format("{}: unknown dtype {} (valid: {})", pl.lit(name), pl.col(name), pl.lit(", ".join(valid))),
            )
        )
    failing = pl.any_horizontal([c.fill_null(False) for c, _ in rules]) | pl.col("parse_error").is_not_null()
    frame = frame.with_columns(failing.alias("__bad"))

    bad_rows = frame.filter(pl.col("__bad"))
    joined = pl.concat_str(
        [pl.when(c.fill_null(False)).then(m.cast(pl.String)) for c, m in rules], separator="; ", ignore_nulls=True
    )
    raw = pl.col("raw") if "raw" in bad_rows.columns else _lit_null()
    bad = bad_rows.select(
        "source_line",
        raw.alias("raw"),
        # A line that could not be split has only its parse error to report.
        pl.coalesce(pl.col("parse_error"), joined).alias("reason"),
    )

    good = frame.filter(~pl.col("__bad"))
    is_ctx = pl.col("__phase") == "context"

    def clean(name: str) -> pl.Expr:
        return pl.when(pl.col(name) == "").then(None).otherwise(pl.col(name))

    kernel_source = clean("kernel_source")
    measurements = good.select(
        pl.col("__system").alias("system"),
        clean("device").alias("device"),
        pl.col("__framework").alias("framework"),
        clean("version").alias("version"),
        pl.col("__op").alias("op"),
        pl.when(pl.col("__variant").is_not_null() & ~kernel_source.str.contains(pl.col("__variant"), literal=True))
        .then(pl.format("{}+{}", kernel_source, pl.col("__variant")))
        .otherwise(kernel_source)
        .alias("kernel_source"),
        clean("model").alias("model"),
        clean("architecture").alias("architecture"),
        pl.col("__mla_dtype").alias("attn_dtype"),
        pl.col("__kv_cache_dtype").alias("kv_cache_dtype"),
        pl.col("__gemm_type").alias("gemm_type"),
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




def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)
