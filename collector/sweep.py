"""Sweep spec (YAML) -> ordered list of shapes."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from .config import DIMS, GEMM_TYPES, KV_DTYPES, OPS

DEFAULT_SPEC = Path(__file__).parent / "sweeps" / "default.yaml"


@dataclass(frozen=True)
class Shape:
    op: str
    num_heads: int
    gemm_type: str
    kv_cache_dtype: str
    batch_size: int
    isl: int          # new tokens per request (1 for generation)
    prefix: int       # context: cached tokens; generation: kv_len

    @property
    def family(self) -> str:
        return OPS[self.op][2]

    @property
    def phase(self) -> str:
        return OPS[self.op][3]

    def key(self) -> tuple:
        return (self.op, self.num_heads, self.gemm_type, self.kv_cache_dtype, self.batch_size, self.isl,
                self.prefix)

    def label(self) -> str:
        seq = f"isl={self.isl} prefix={self.prefix}" if self.phase == "context" else f"kv_len={self.prefix}"
        return f"{self.op} H={self.num_heads} {self.gemm_type}/{self.kv_cache_dtype} b={self.batch_size} {seq}"

    def asdict(self) -> dict:
        return asdict(self)


class SpecError(ValueError):
    """A sweep spec that cannot be read or names a value the collector cannot measure."""


# per phase: the list keys an op entry needs, and the optional ones (lists, then scalar limits)
_REQUIRED = {"context": ("num_heads", "variants", "batch_size", "isl", "max_tokens"),
             "generation": ("num_heads", "variants", "batch_size", "kv_len", "max_kv_tokens")}
_OPTIONAL = {"context": ("prefix", "prefix_b1", "max_tokens_b1", "max_prefix_tokens"), "generation": ()}
_LIMITS = ("max_tokens", "max_kv_tokens", "max_tokens_b1", "max_prefix_tokens")


def load_spec(path: str | Path | None = None) -> dict:
    """The sweep spec at `path`, every entry checked (SpecError names the file, op and key): a bad
    value is found before a GPU worker starts, not as a traceback or a silently skipped shape."""
    where = f"sweep spec {path or DEFAULT_SPEC}"
    try:
        with open(path or DEFAULT_SPEC, encoding="utf-8") as f:
            spec = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{where}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{where}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(spec, dict) or not (spec.get("ops") or spec.get("shapes")):
        raise SpecError(f"{where}: expected a mapping with 'ops' and/or 'shapes'")
    ops = spec.get("ops") or {}
    if not isinstance(ops, dict):
        raise SpecError(f"{where}: 'ops' must map op names to their lists, got {type(ops).__name__}")
    for op, entry in ops.items():
        if op not in OPS:
            raise SpecError(f"unknown op {op!r} in {where}: expected one of {sorted(OPS)}")
        _check_op(f"{where}, op {op}", OPS[op][3], entry)
    shapes = spec.get("shapes") or []
    if not isinstance(shapes, list):
        raise SpecError(f"{where}: 'shapes' must be a list of [op, heads, gemm, kv_dtype, batch, isl, seq]")
    for row in shapes:
        _shape_row(row, where)
    return spec


def _count(where: str, key: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < low:
        raise SpecError(f"{where}: {key} must hold integers >= {low}, got {value!r}")
    return int(value)


def _check_op(where: str, phase: str, entry) -> None:
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: expected a mapping of {', '.join(_REQUIRED[phase])}, got {entry!r}")
    missing = [k for k in _REQUIRED[phase] if k not in entry]
    unknown = sorted(set(entry) - set(_REQUIRED[phase]) - set(_OPTIONAL[phase]))
    if missing or unknown:
        raise SpecError(f"{where}: " + "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else [])
            + ([f"unknown key(s) {', '.join(map(str, unknown))} (valid: "
                f"{', '.join(_REQUIRED[phase] + _OPTIONAL[phase])})"] if unknown else [])))
    for key, value in entry.items():
        if key in _LIMITS:
            _count(where, key, value)
        elif key == "variants":
            if not isinstance(value, list) or not value:
                raise SpecError(f"{where}: variants must be a non-empty list of [gemm_type, kv_cache_dtype]")
            for pair in value:
                _variant(where, pair)
        else:
            if not isinstance(value, list) or not value:
                raise SpecError(f"{where}: {key} must be a non-empty list, got {value!r}")
            for v in value:
                _count(where, key, v, 0 if key in ("prefix", "prefix_b1") else 1)


def _variant(where: str, pair) -> tuple[str, str]:
    if not isinstance(pair, list) or len(pair) != 2:
        raise SpecError(f"{where}: a variant is [gemm_type, kv_cache_dtype], got {pair!r}")
    gemm, kvd = pair
    if gemm not in GEMM_TYPES or kvd not in KV_DTYPES:
        raise SpecError(f"{where}: variant {pair!r}: gemm_type one of {', '.join(GEMM_TYPES)}, "
                        f"kv_cache_dtype one of {', '.join(KV_DTYPES)}")
    return gemm, kvd


def _shape_row(row, where: str) -> Shape:
    if not isinstance(row, (list, tuple)) or len(row) != 7:
        raise SpecError(f"{where}: shape {row!r}: expected [op, heads, gemm, kv_dtype, batch, isl, seq]")
    op = row[0]
    if op not in OPS:
        raise SpecError(f"unknown op {op!r} in {where} shapes: expected one of {sorted(OPS)}")
    at = f"{where}: shape {row!r}"
    gemm, kvd = _variant(at, [row[2], row[3]])
    generation = OPS[op][3] == "generation"
    s = Shape(op, _count(at, "num_heads", row[1]), gemm, kvd, _count(at, "batch", row[4]),
              _count(at, "isl", row[5]), _count(at, "kv_len" if generation else "prefix", row[6],
                                                1 if generation else 0))
    if generation and s.isl != 1:
        raise SpecError(f"{at}: generation shapes have isl 1")
    return s


def expand(spec: dict, ops: list[str] | None = None) -> list[Shape]:
    """The spec's shapes, cheapest first.

    Per op a cartesian product filtered by limits: context ``b * isl <=
    max_tokens`` (``max_tokens_b1`` at batch 1); ``prefix`` values > 0 only
    where ``b * isl <= max_prefix_tokens``; ``prefix_b1`` values at batch 1
    only, where ``isl <= max_prefix_tokens``; generation ``b * kv_len <=
    max_kv_tokens``. A top-level ``shapes:`` list adds explicit shapes
    ``[op, num_heads, gemm_type, kv_cache_dtype, batch, isl, prefix_or_kv_len]``.
    """
    out: list[Shape] = []
    for row in spec.get("shapes", []) or []:
        s = _shape_row(row, "sweep spec")
        if ops and s.op not in ops:
            continue
        out.append(s)
    for op, o in (spec.get("ops") or {}).items():
        if ops and op not in ops:
            continue
        phase = OPS[op][3]
        for H in o["num_heads"]:
            for gemm, kvd in o["variants"]:
                for b in o["batch_size"]:
                    if phase == "context":
                        for isl in o["isl"]:
                            T = b * isl
                            lim = o.get("max_tokens_b1", o["max_tokens"]) if b == 1 else o["max_tokens"]
                            if T > lim:
                                continue
                            for prefix in o.get("prefix", [0]):
                                if prefix and T > o.get("max_prefix_tokens", 0):
                                    continue
                                out.append(Shape(op, H, gemm, kvd, b, isl, prefix))
                            if b == 1 and isl <= o.get("max_prefix_tokens", 0):
                                for prefix in o.get("prefix_b1", []):
                                    out.append(Shape(op, H, gemm, kvd, b, isl, prefix))
                    else:
                        for kv in o["kv_len"]:
                            if b * kv > o["max_kv_tokens"]:
                                continue
                            out.append(Shape(op, H, gemm, kvd, b, 1, kv))
    out = list(dict.fromkeys(out))
    out.sort(key=lambda s: (estimate_ms(s), s.key()))
    return out


def estimate_ms(s: Shape) -> float:
    """Rough cost model, only used to order the sweep (cheap shapes first)."""
    d = DIMS
    H, b = s.num_heads, s.batch_size
    T = b * s.isl
    L = s.prefix + s.isl if s.phase == "context" else s.prefix + 1
    n_a = d.q_lora_rank + d.kv_lora_rank + d.qk_rope + (d.index_head_dim + d.index_n_heads if s.family == "dsa" else 0)
    gemm = 2 * T * (d.hidden * n_a + d.q_lora_rank * H * d.qk_head + H * d.v_head * d.hidden)
    wbytes = (d.hidden * n_a + d.q_lora_rank * H * d.qk_head + H * d.v_head * d.hidden) * (1 if "fp8" in s.gemm_type else 2)
    flops, nbytes = gemm, wbytes
    if s.family == "dsa":
        hp = 64 * -(-H // 64) if H > 32 else max(16, H)
        keys = min(L, d.index_topk)
        flops += 2 * T * hp * (d.d_latent + d.kv_lora_rank) * keys
        nbytes += T * keys * d.d_latent * 2 / (8 if s.phase == "context" else 1)
        if L > d.index_topk:
            sk = T * L if s.phase == "generation" else b * (s.isl * s.prefix + s.isl * s.isl / 2)
            flops += 2 * d.index_n_heads * d.index_head_dim * sk / 2  # fp8 rate ~2x
            nbytes += b * L * 132 + 8 * sk
    elif s.phase == "context":
        flops += 2 * b * H * (d.qk_head + d.v_head) * s.isl * s.isl / 2 + 2 * b * L * d.kv_lora_rank * H * 256
    else:
        flops += 2 * T * H * (d.d_latent + d.kv_lora_rank) * L
        nbytes += b * L * d.d_latent * (1 if s.kv_cache_dtype == "fp8" else 2)
    return 0.03 + flops / 350e9 + nbytes / 3e9
