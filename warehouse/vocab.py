"""The project's vocabulary: one name per concept, and ops parsed once.

An op name (`dsa_context`, `mla_generation_kernel`, ...) is parsed into an `Op`
value here and nowhere else; code asks `op.family`, `op.phase`,
`op.kernel_only` or `op.seq_column` instead of looking inside the string.
Other spellings of an op (`context_dsa`, the aiconfigurator order) are
accepted by `Op.parse`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, NamedTuple

FAMILIES = ("dsa", "mla")
PHASES = ("context", "generation")

# One name per concept, as table columns, Python keywords and CLI flags (--batch-size, ...).
BATCH = "batch_size"
KV_CACHE_DTYPE = "kv_cache_dtype"  # the KV (latent) cache precision
ATTN_DTYPE = "attn_dtype"  # the attention math precision
GEMM_TYPE = "gemm_type"  # the projection GEMM precision
FRAMEWORK = "framework"  # trtllm, vllm, sglang, perfwh ("backend" is its alias in the API)


class Op(NamedTuple):
    """One canonical op: family (dsa / mla), phase (context / generation), and whether it is
    the whole attention module of a layer or the attention kernel alone."""

    family: Literal["dsa", "mla"]
    phase: Literal["context", "generation"]
    kernel_only: bool = False

    @property
    def name(self) -> str:
        return f"{self.family}_{self.phase}" + ("_kernel" if self.kernel_only else "")

    @property
    def context(self) -> bool:
        return self.phase == "context"

    @property
    def seq_column(self) -> str:
        """The column that holds the sequence axis: isl (context) or kv_len (generation)."""
        return "isl" if self.context else "kv_len"

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def parse(op: "str | Op") -> "Op":
        """An Op from its canonical name or an alias; ValueError names the valid ones."""
        if isinstance(op, Op):
            return op
        return _parse(op)


OPS: tuple[Op, ...] = (Op("dsa", "context"), Op("dsa", "generation"), Op("mla", "context"),
                       Op("mla", "generation"), Op("mla", "context", True), Op("mla", "generation", True))
MODULE_OPS: tuple[Op, ...] = tuple(o for o in OPS if not o.kernel_only)
_BY_NAME = {o.name: o for o in OPS}
_ALIASES = {**{f"{o.phase}_{o.family}": o for o in MODULE_OPS}, **_BY_NAME}  # aiconfigurator order first


@lru_cache(maxsize=64)
def _parse(op: str) -> Op:
    try:
        return _ALIASES[op]
    except (KeyError, TypeError):
        raise ValueError(f"unknown op {op!r}; valid: {', '.join(_ALIASES)}") from None


def op_names() -> tuple[str, ...]:
    return tuple(o.name for o in OPS)


def aliases() -> tuple[str, ...]:
    """Every accepted spelling of an op."""
    return tuple(_ALIASES)
