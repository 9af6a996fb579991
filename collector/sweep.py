"""Sweep spec (YAML) -> ordered list of shapes."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from .config import DIMS, OPS

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


def load_spec(path: str | Path | None = None) -> dict:
    with open(path or DEFAULT_SPEC) as f:
        spec = yaml.safe_load(f)
    for op in spec.get("ops", {}):
        if op not in OPS:
            raise ValueError(f"unknown op {op!r} in sweep spec: expected one of {sorted(OPS)}")
    return spec


def expand(spec: dict, ops: list[str] | None = None) -> list[Shape]:
    out: list[Shape] = []
    for op, o in spec["ops"].items():
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
                    else:
                        for kv in o["kv_len"]:
                            if b * kv > o["max_kv_tokens"]:
                                continue
                            out.append(Shape(op, H, gemm, kvd, b, 1, kv))
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
