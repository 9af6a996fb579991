"""Shared fixtures: small raw logs written into tmp dirs, the shared data path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PERFWH_SHARED_DATA", REPO.parent / "shared" / "data" / "aiconfigurator"))

HEADER = (
    "framework,version,device,op_name,kernel_source,model,architecture,mla_dtype,"
    "kv_cache_dtype,gemm_type,num_heads,batch_size,isl,tp_size,step,latency"
)


def dsa_context_row(batch=1, isl=1024, step=0, heads=128, latency=1.0, gemm="bfloat16", kv="bfloat16"):
    return (
        f"TRTLLM,1.0,NVIDIA H200,dsa_context_module,default,deepseek-ai/DeepSeek-V3.2,"
        f"DeepseekV32ForCausalLM,bfloat16,{kv},{gemm},{heads},{batch},{isl},1,{step},{latency}"
    )


def dsa_generation_row(batch=1, kv_len=1024, heads=128, latency=0.3, isl=1):
    return (
        f"TRTLLM,1.0,NVIDIA H200,dsa_generation_module,default,deepseek-ai/DeepSeek-V3.2,"
        f"DeepseekV32ForCausalLM,bfloat16,bfloat16,bfloat16,{heads},{batch},{isl},1,{kv_len},{latency}"
    )


def write_log(path: Path, lines: list[str], *, header: str = HEADER, newline: str = "\n", end: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = newline.join([header, *lines]) + (newline if end else "")
    path.write_bytes(text.encode())
    return path


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "wh"


@pytest.fixture
def raw_dir(tmp_path) -> Path:
    d = tmp_path / "raw" / "h200_sxm" / "trtllm" / "1.0"
    d.mkdir(parents=True)
    return d


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data set not present at {SHARED_DATA}")
    return SHARED_DATA
