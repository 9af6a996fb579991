"""Model dimensions (one attention layer) and small shared helpers."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AttnDims:
    """DeepSeek-V3 (MLA) / DeepSeek-V3.2 (DSA) attention-layer dimensions."""

    hidden: int = 7168
    q_lora_rank: int = 1536
    kv_lora_rank: int = 512
    qk_nope: int = 128
    qk_rope: int = 64
    v_head: int = 128
    # DSA lightning indexer (V3.2); not divided by tensor parallelism
    index_n_heads: int = 64
    index_head_dim: int = 128
    index_topk: int = 2048

    @property
    def qk_head(self) -> int:
        return self.qk_nope + self.qk_rope

    @property
    def d_latent(self) -> int:  # one latent-cache row: 512 + 64
        return self.kv_lora_rank + self.qk_rope


DIMS = AttnDims()

MODELS = {
    "dsa": ("deepseek-ai/DeepSeek-V3.2", "DeepseekV32ForCausalLM"),
    "mla": ("deepseek-ai/DeepSeek-V3", "DeepseekV3ForCausalLM"),
}

GEMM_TYPES = ("bfloat16", "fp8_block", "fp8_tensor")
KV_DTYPES = ("bfloat16", "fp8")

# canonical op -> (table stem, CSV op_name, attention family, phase)
OPS = {
    "dsa_context": ("dsa_context_module_perf", "dsa_context_module", "dsa", "context"),
    "dsa_generation": ("dsa_generation_module_perf", "dsa_generation_module", "dsa", "generation"),
    "mla_context": ("mla_context_module_perf", "mla_context_module", "mla", "context"),
    "mla_generation": ("mla_generation_module_perf", "mla_generation_module", "mla", "generation"),
    # the attention kernel alone (kernel_ops.py): the published kernel tables' names
    "mla_context_kernel": ("context_mla_perf", "mla_context", "mla", "context"),
    "mla_generation_kernel": ("generation_mla_perf", "mla_generation", "mla", "generation"),
}


def system_of(device_name: str) -> str:
    """Map torch.cuda.get_device_name() to the warehouse system folder."""
    n = device_name.lower()
    if "h200" in n:
        return "h200_sxm"
    if "h100" in n:
        return "h100_pcie" if "pcie" in n else "h100_sxm"
    raise ValueError(
        f"unknown GPU {device_name!r}: the collector knows H200 (h200_sxm) and H100 (h100_sxm/h100_pcie)"
    )


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(x: int) -> int:
    p = 1
    while p < x:
        p *= 2
    return p
