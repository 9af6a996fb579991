"""A small hand-made warehouse for the model tests (imported by tests/estimator/models/test_model.py and tests/app/test_models.py).

Latencies follow simple laws so the expected answers are checkable by hand:
MLA context = 1e-6 * isl^2 ms, DSA context = 0.004 * isl ms (equal at isl 4000);
MLA decode = 0.05 + 2e-6 * kv ms, DSA decode = 0.1 + 2e-7 * kv ms (equal at kv ~27,778).
One slice per op: 16 heads (tp 8 of 128), bfloat16 everywhere, batch 1 and 4
(batch 4 = 4x batch 1), trtllm 1.0 on h200_sxm; vllm 0.1 holds the DSA context table only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse.ingest import ingest_paths

HEADER = (
    "framework,version,device,op_name,kernel_source,model,architecture,mla_dtype,"
    "kv_cache_dtype,gemm_type,num_heads,batch_size,isl,tp_size,step,latency"
)
ISLS = (1024, 2048, 4096, 8192, 16384)
KVS = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
BATCHES = (1, 4)
HEADS = 16
MODELS = {"dsa": ("deepseek-ai/DeepSeek-V3.2", "DeepseekV32ForCausalLM"),
          "mla": ("deepseek-ai/DeepSeek-V3", "DeepseekV3ForCausalLM")}


def context_ms(kind: str, isl: int, batch: int = 1) -> float:
    return batch * (1e-6 * isl * isl if kind == "mla" else 0.004 * isl)


def generation_ms(kind: str, kv: int, batch: int = 1) -> float:
    return batch * (0.05 + 2e-6 * kv if kind == "mla" else 0.1 + 2e-7 * kv)


def _row(kind, phase, batch, isl, step, latency):
    model, arch = MODELS[kind]
    return (f"TRTLLM,1.0,NVIDIA H200,{kind}_{phase}_module,default,{model},{arch},bfloat16,bfloat16,"
            f"bfloat16,{HEADS},{batch},{isl},1,{step},{latency:.6f}")


def write_fixture_logs(folder: Path) -> Path:
    d = folder / "h200_sxm" / "trtllm" / "1.0"
    d.mkdir(parents=True, exist_ok=True)
    for kind in MODELS:
        ctx = [_row(kind, "context", b, s, 0, context_ms(kind, s, b)) for b in BATCHES for s in ISLS]
        gen = [_row(kind, "generation", b, 1, kv, generation_ms(kind, kv, b)) for b in BATCHES for kv in KVS]
        (d / f"{kind}_context_module_perf.txt").write_text("\n".join([HEADER, *ctx]) + "\n")
        (d / f"{kind}_generation_module_perf.txt").write_text("\n".join([HEADER, *gen]) + "\n")
    # a second backend with the DSA context table only (its generation op cannot be served)
    v = folder / "h200_sxm" / "vllm" / "0.1"
    v.mkdir(parents=True, exist_ok=True)
    rows = [_row("dsa", "context", b, s, 0, context_ms("dsa", s, b)).replace("TRTLLM,1.0,", "VLLM,0.1,")
            for b in BATCHES for s in ISLS]
    (v / "dsa_context_module_perf.txt").write_text("\n".join([HEADER, *rows]) + "\n")
    return folder


@pytest.fixture(scope="session")
def model_home(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models_wh")
    raw = write_fixture_logs(root / "raw")
    home = root / "home"
    report = ingest_paths([raw], home)
    assert report.rows_quarantined == 0
    from estimator.derived.store import DerivedStore

    # built here, so that no test's stderr depends on whether an earlier test built them
    DerivedStore(home, say=lambda line: None).refresh()
    return home


@pytest.fixture(scope="session")
def model_db(model_home):
    from estimator.lookup.database import PerfDatabase

    return PerfDatabase("h200_sxm", "trtllm", home=model_home)
