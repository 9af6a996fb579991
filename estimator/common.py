"""Quant-mode and provenance enums shared by the estimator's public API.

The enum values are the strings the warehouse stores (`kv_cache_dtype`,
`attn_dtype`, `gemm_type`), so a mode converts to a slice key with `.value`.
"""

from __future__ import annotations

from enum import StrEnum


class _StrEnum(StrEnum):
    @classmethod
    def parse(cls, value: "str | _StrEnum") -> "_StrEnum":
        """Accept an enum member or its string value; name the valid values otherwise."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value))
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown {cls.__name__} {value!r}; valid: {valid}") from None


class KVCacheQuantMode(_StrEnum):
    """Precision of the KV (latent) cache."""

    bfloat16 = "bfloat16"
    float16 = "float16"
    fp8 = "fp8"


class FMHAQuantMode(_StrEnum):
    """Precision of the attention math (`attn_dtype` in the warehouse)."""

    bfloat16 = "bfloat16"
    float16 = "float16"
    fp8 = "fp8"


class GEMMQuantMode(_StrEnum):
    """Precision of the projection GEMMs (`gemm_type` in the warehouse)."""

    bfloat16 = "bfloat16"
    float16 = "float16"
    fp8_block = "fp8_block"
    fp8 = "fp8"


class Source(_StrEnum):
    """How an estimate was obtained, best first (the fallback chain's labels)."""

    measured = "measured"
    interpolated = "interpolated"
    extrapolated = "extrapolated"
    transferred = "transferred"
    sol = "sol"
    nearest = "nearest"  # method="nearest" off a measured cell: the nearest measurement, not interpolated


# Bytes per element of each stored precision.
DTYPE_BYTES: dict[str, float] = {
    "bfloat16": 2.0,
    "float16": 2.0,
    "float32": 4.0,
    "fp8": 1.0,
    "fp8_block": 1.0,
    "fp8_tensor": 1.0,
}
