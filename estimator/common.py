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
            why = UNMODELLED.get(str(value))
            why = f" ({value} is not modelled: {why})" if why else ""
            raise ValueError(f"unknown {cls.__name__} {value!r}; valid: {valid}{why}") from None


# Precisions the warehouse stores (warehouse.schema) that no query can name, and why: their slices are
# listed by `perfwh coverage` but the estimator cannot answer them.
UNMODELLED: dict[str, str] = {
    "nvfp4": "the SOL model has no FP4 byte width or tensor peak, so an nvfp4 time cannot be calibrated "
             "or moved",
}


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


def not_queryable(slice_keys: dict) -> str | None:
    """Why a warehouse slice (its gemm_type / kv_cache_dtype / attn_dtype) cannot be queried, or None.

    A null precision (kernel tables carry no gemm_type) is queryable."""
    for column, enum in (("gemm_type", GEMMQuantMode), ("kv_cache_dtype", KVCacheQuantMode),
                         ("attn_dtype", FMHAQuantMode)):
        value = slice_keys.get(column)
        if value is not None and str(value) not in {m.value for m in enum}:
            why = UNMODELLED.get(str(value), f"{enum.__name__} has no {value!r}")
            return f"{column} {value} is not modelled ({why})"
    return None


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
