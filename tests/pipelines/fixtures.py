"""Small raw logs for pipeline tests, written into tmp dirs (values checkable by hand).

Latency grows with batch and sequence length (latency_ms = base + a * batch *
seq), so the monotonic check passes on clean files; `write_dirty` adds rows
the warehouse must quarantine.
"""

from __future__ import annotations

from pathlib import Path

HEADER = (
    "framework,version,device,op_name,kernel_source,model,architecture,mla_dtype,"
    "kv_cache_dtype,gemm_type,num_heads,batch_size,isl,tp_size,step,latency"
)
DSA = "deepseek-ai/DeepSeek-V3.2,DeepseekV32ForCausalLM"
MLA = "deepseek-ai/DeepSeek-V3,DeepseekV3ForCausalLM"
BATCHES = (1, 2, 4, 8)
SEQS = (256, 512, 1024, 2048, 4096)
VERSION_DIR = Path("h200_sxm") / "trtllm" / "1.0"


def context_row(op: str, model: str, batch: int, isl: int, latency: float | str, heads: int = 128) -> str:
    return f"TRTLLM,1.0,NVIDIA H200,{op},default,{model},bfloat16,bfloat16,bfloat16,{heads},{batch},{isl},1,0,{latency}"


def generation_row(op: str, model: str, batch: int, kv_len: int, latency: float | str, heads: int = 128) -> str:
    return f"TRTLLM,1.0,NVIDIA H200,{op},default,{model},bfloat16,bfloat16,bfloat16,{heads},{batch},1,1,{kv_len},{latency}"


def context_latency(batch: int, isl: int) -> float:
    # at least half the raw roofline of DeepSeek-V3.2 / V3 context shapes (estimator.lookup.limits: lower is impossible)
    return round(0.2 + 2e-4 * batch * isl + 1e-6 * batch * isl * isl, 6)


def generation_latency(batch: int, kv_len: int) -> float:
    return round(0.1 + 2e-6 * batch * kv_len, 6)


def write(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def write_dsa_context(landing: Path, repeats: int = 1) -> Path:
    rows = [
        context_row("dsa_context_module", DSA, b, s, context_latency(b, s))
        for b in BATCHES
        for s in SEQS
        for _ in range(repeats)
    ]
    return write(landing / VERSION_DIR / "dsa_context_module_perf.txt", rows)


def write_dsa_generation(landing: Path, scale: float = 1.0) -> Path:
    rows = [
        generation_row("dsa_generation_module", DSA, b, s, round(generation_latency(b, s) * scale, 6))
        for b in BATCHES
        for s in SEQS
    ]
    return write(landing / VERSION_DIR / "dsa_generation_module_perf.txt", rows)


DIRTY_ROWS = 3


def write_dirty(landing: Path) -> Path:
    """MLA context log: a full clean grid plus DIRTY_ROWS rows that must be quarantined."""
    rows = [context_row("mla_context_module", MLA, b, s, context_latency(b, s) * 1.5) for b in BATCHES for s in SEQS]
    rows += [
        context_row("mla_context_module", MLA, 1, 256, "nan"),
        context_row("mla_context_module", MLA, 2, 256, "-1.0"),
        "garbage,line",
    ]
    return write(landing / VERSION_DIR / "mla_context_module_perf.txt", rows)


def write_landing(landing: Path) -> list[Path]:
    """Two clean logs and one dirty one."""
    return [write_dsa_context(landing), write_dsa_generation(landing), write_dirty(landing)]
