"""Model roll-up: layer structure, ops, the draft's snippet, estimate = sum of op estimates, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from estimator import get_model as lazy_get_model
from estimator.common import GEMMQuantMode, KVCacheQuantMode
from estimator.models.config import ModelConfig
from estimator.models.hf_config import DeepSeekV32Config
from estimator.models.curves import compare_models
from estimator.models.model import get_model
from estimator.models.operations import ContextDSA, ContextMLA, GenerationDSA, GenerationMLA
from tests.estimator.models.fixture import context_ms, generation_ms, model_db, model_home  # noqa: F401

V3, V32 = "deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-V3.2"


def test_lazy_import_from_package():
    assert lazy_get_model is get_model


def test_v32_default_is_61_dsa_layers():
    m = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    assert m.layer_counts == {"mla": 0, "dsa": 61}
    assert m.ffn_counts == {"dense": 3, "moe": 58}
    assert [op.name for op in m.context_ops[:2]] == ["context_dsa_layer_0", "context_dsa_layer_1"]
    assert m.generation_ops[60].name == "generation_dsa_layer_60"
    assert all(type(op) is ContextDSA for op in m.context_ops)
    assert all(type(op) is GenerationDSA for op in m.generation_ops)
    op = m.context_ops[0]
    assert (op.num_heads, op.index_n_heads, op.index_topk, op.architecture) == (16, 64, 2048,
                                                                               "DeepseekV32ForCausalLM")
    assert m.dsa_config == DeepSeekV32Config(64, 128, 2048, 3)


def test_draft_split_on_request():
    m = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8, dense_attention_layers=3))
    assert m.layer_counts == {"mla": 3, "dsa": 58}
    assert [op.name for op in m.context_ops[2:4]] == ["context_mla_layer_2", "context_dsa_layer_3"]
    assert type(m.generation_ops[2]) is GenerationMLA
    # the MLA layers of V3.2 read DeepSeek-V3's MLA data (same attention dims)
    assert m.context_ops[0].architecture == "DeepseekV3ForCausalLM"
    dsa_ops = [op for op in m.context_ops if "dsa" in op.name.lower()]
    assert len(dsa_ops) == 58


def test_v3_is_61_mla_layers():
    m = get_model(V3, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    assert m.layer_counts == {"mla": 61, "dsa": 0}
    assert all(type(op) is ContextMLA for op in m.context_ops)
    assert m.dsa_config is None


def test_glm5_is_78_dsa_layers():
    m = get_model("zai-org/GLM-5", "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    assert m.layer_counts == {"mla": 0, "dsa": 78}
    assert m.num_heads == 8 and m.context_ops[0].index_n_heads == 32


@pytest.mark.parametrize("tp, heads", [(1, 128), (8, 16), (16, 8)])
def test_heads_per_gpu(tp, heads):
    for path in (V3, V32):
        m = get_model(path, "h200_sxm", "trtllm", ModelConfig(tp_size=tp))
        assert m.num_heads == heads
        assert {op.num_heads for op in m.context_ops + m.generation_ops} == {heads}


def test_quant_modes_reach_the_ops():
    cfg = ModelConfig(tp_size=8, gemm_quant_mode="fp8_block", kvcache_quant_mode="fp8")
    m = get_model(V3, "h200_sxm", "trtllm", cfg)
    assert m.context_ops[0].gemm_quant_mode is GEMMQuantMode.fp8_block
    assert m.generation_ops[0].kvcache_quant_mode is KVCacheQuantMode.fp8


def test_draft_snippet(model_home, model_db):
    model = get_model(model_path=V32, system="h200_sxm", backend="trtllm",
                      config=ModelConfig(tp_size=8), home=model_home)
    dsa_ops = [op for op in model.context_ops if "dsa" in op.name.lower()]
    assert len(dsa_ops) == 61
    latency = dsa_ops[0].query(model_db, batch_size=1, s=4096)
    assert latency == pytest.approx(context_ms("dsa", 4096), rel=1e-6)


@pytest.mark.parametrize("path, osl, prefix", [(V32, 16, 0), (V3, 5, 0), (V32, 1, 1000)])
def test_estimate_is_sum_of_op_estimates(model_db, path, osl, prefix):
    cfg = ModelConfig(tp_size=8, dense_attention_layers=3 if path == V32 and prefix else 0)
    m = get_model(path, "h200_sxm", "trtllm", cfg)
    isl, b = 3000, 2
    est = m.estimate(isl=isl, osl=osl, batch_size=b, prefix=prefix, db=model_db)
    direct_ctx = sum(op.query(model_db, batch_size=b, s=isl, prefix=prefix) for op in m.context_ops)
    assert est.context_ms == pytest.approx(direct_ctx, rel=1e-6)
    first = sum(op.query(model_db, batch_size=b, s=prefix + isl) for op in m.generation_ops)
    last = sum(op.query(model_db, batch_size=b, s=prefix + isl + osl - 1) for op in m.generation_ops)
    steps = [sum(op.query(model_db, batch_size=b, s=prefix + isl + j) for op in m.generation_ops)
             for j in range(osl)]
    assert est.generation_first_ms == pytest.approx(first, rel=1e-6)
    assert est.generation_last_ms == pytest.approx(last, rel=1e-6)
    assert est.generation_mean_ms == pytest.approx(np.mean(steps), rel=1e-6)
    assert est.generation_total_ms == pytest.approx(sum(steps), rel=1e-6)
    assert est.layers["context_ms"].sum() == pytest.approx(est.context_ms, rel=1e-12)
    assert sum(est.provenance["context"].values()) == 61
    assert sum(est.provenance["generation"].values()) == 61 * osl
    src = m.context_ops[-1].estimate(model_db, batch_size=b, s=isl, prefix=prefix).source.value
    assert est.layers["context_source"][-1] == src


def test_estimate_measured_point_is_exact(model_db):
    m = get_model(V3, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    est = m.estimate(isl=4096, osl=1, batch_size=1, db=model_db)
    assert est.context_ms == pytest.approx(61 * context_ms("mla", 4096), rel=1e-6)
    assert est.generation_first_ms == pytest.approx(61 * generation_ms("mla", 4096), rel=1e-6)
    assert est.provenance == {"context": {"measured": 61}, "generation": {"measured": 61}}


def test_estimate_is_one_call_per_kind_and_phase(model_db):
    calls = []

    class Spy:
        version = model_db.version

        def estimate_many(self, op, frame, **kw):
            calls.append((op, frame.height))
            return model_db.estimate_many(op, frame, **kw)

    m = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8, dense_attention_layers=3))
    m.estimate(isl=2048, osl=300, batch_size=1, db=Spy())
    assert sorted(calls) == [("dsa_context", 1), ("dsa_generation", 300), ("mla_context", 1),
                             ("mla_generation", 300)]


def test_osl_zero_has_no_decode_steps(model_db):
    m = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    est = m.estimate(isl=1024, osl=0, batch_size=1, db=model_db)
    assert est.generation_steps == 0 and est.generation_total_ms == 0.0
    assert est.provenance["generation"] == {}
    assert est.as_dict()["layers"][0]["generation_worst_source"] is None


def test_scale_factor_applies(model_db):
    m = get_model(V3, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    base = m.estimate(isl=2048, osl=2, batch_size=1, db=model_db)
    m.context_ops[0].scale_factor = 2.0
    m.generation_ops[0].scale_factor = 3.0
    scaled = m.estimate(isl=2048, osl=2, batch_size=1, db=model_db)
    per_layer_ctx = base.context_ms / 61
    assert scaled.context_ms == pytest.approx(base.context_ms + per_layer_ctx, rel=1e-6)
    assert scaled.generation_first_ms == pytest.approx(base.generation_first_ms * 63 / 61, rel=1e-6)


# ---- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, message", [
    ({"model_path": "acme/Nope"}, ValueError, "unknown model 'acme/Nope'"),
    ({"system": "b300"}, ValueError, "unknown system 'b300'"),
    ({"backend": "onnx"}, ValueError, "unknown backend 'onnx'"),
    ({"config": ModelConfig(tp_size=3)}, ValueError, "tp_size 3 does not divide 128 attention heads"),
    ({"config": ModelConfig(tp_size=8, dense_attention_layers=62)}, ValueError, "dense_attention_layers 62 exceeds"),
])
def test_get_model_bad_input(kwargs, exc, message):
    args = {"model_path": V32, "system": "h200_sxm", "backend": "trtllm", "config": ModelConfig(tp_size=8)}
    with pytest.raises(exc, match=message):
        get_model(**{**args, **kwargs})


def test_glm5_has_no_mla_equivalent():
    with pytest.raises(ValueError, match="dense_attention_layers is not available for GlmMoeDsaForCausalLM"):
        get_model("zai-org/GLM-5", "h200_sxm", "trtllm", ModelConfig(tp_size=8, dense_attention_layers=3))


@pytest.mark.parametrize("kwargs, message", [
    ({"tp_size": 0}, "tp_size must be an integer >= 1"),
    ({"tp_size": 2.5}, "tp_size must be an integer >= 1"),
    ({"dense_attention_layers": -1}, "dense_attention_layers must be an integer >= 0"),
    ({"gemm_quant_mode": "int4"}, "unknown GEMMQuantMode 'int4'"),
    ({"kvcache_quant_mode": "fp4"}, "unknown KVCacheQuantMode 'fp4'"),
])
def test_model_config_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"isl": 0}, "isl must be an integer >= 1"),
    ({"isl": -5}, "isl must be an integer >= 1"),
    ({"osl": -1}, "osl must be an integer >= 0"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"prefix": -1}, "prefix must be an integer >= 0"),
    ({"isl": 10.5}, "isl must be an integer >= 1"),
])
def test_estimate_bad_input(model_db, kwargs, message):
    m = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    args = {"isl": 1024, "osl": 4, "batch_size": 1, "prefix": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        m.estimate(db=model_db, **args)


def test_decode_past_the_context_length_is_refused_before_allocating():
    """osl=1e11 used to die in numpy (a 745 GiB array) with a traceback; no database is touched."""

    class NoDatabase:
        def estimate_many(self, *a, **k):
            raise AssertionError("the length check comes first")

    m = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    with pytest.raises(ValueError, match=r"prefix \+ isl \+ osl - 1 = 100000001023 .* exceeds the context length"):
        m.estimate(isl=1024, osl=100_000_000_000, batch_size=1, db=NoDatabase())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(isl=st.integers(1, 150_000), osl=st.integers(0, 40), batch=st.integers(1, 64),
       prefix=st.integers(0, 5000), split=st.sampled_from([0, 3, 61]))
def test_estimate_properties(model_db, isl, osl, batch, prefix, split):
    """For any shape: totals are the per-layer sums, counts add up, and every number is finite and positive."""
    m = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8, dense_attention_layers=split))
    est = m.estimate(isl=isl, osl=osl, batch_size=batch, prefix=prefix, db=model_db)
    assert est.context_ms > 0 and np.isfinite(est.context_ms)
    assert est.context_ms == pytest.approx(est.layers["context_ms"].sum(), rel=1e-12)
    assert sum(est.provenance["context"].values()) == 61
    assert sum(est.provenance["generation"].values()) == 61 * osl
    if osl:
        assert est.generation_mean_ms == pytest.approx(est.layers["generation_mean_ms"].sum(), rel=1e-6)
        lo, hi = sorted((est.generation_first_ms, est.generation_last_ms))
        assert est.generation_total_ms == pytest.approx(est.generation_mean_ms * osl, rel=1e-6)
        assert lo > 0 and np.isfinite(hi)


@pytest.mark.slow
def test_real_h200_trtllm(shared_data, tmp_path):
    """On the published H200 / TensorRT-LLM tables: the benchmark shape, and exact measured points."""
    from estimator.lookup.database import PerfDatabase
    from warehouse.ingest import ingest_paths
    from warehouse.read import read_perf_points

    ingest_paths([shared_data / "h200_sxm" / "trtllm"], tmp_path / "wh")
    db = PerfDatabase("h200_sxm", "trtllm", home=tmp_path / "wh")
    v32 = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    est = v32.estimate(isl=32768, osl=1024, batch_size=8, db=db)
    assert est.version == "1.3.0rc20" and est.num_heads == 16
    assert est.provenance["context"] == {"extrapolated": 61}  # measured isl ends at 16384
    assert est.provenance["generation"].get("measured") == 61  # kv 32768 is measured at batch 8
    pts = read_perf_points(tmp_path / "wh", system="h200_sxm", framework="trtllm")

    def measured(op, arch, **eq):
        sub = pts.filter((pts["op"] == op) & (pts["architecture"] == arch) & (pts["num_heads"] == 16)
                         & (pts["gemm_type"] == "bfloat16") & (pts["kv_cache_dtype"] == "bfloat16"))
        for k, v in eq.items():
            sub = sub.filter(sub[k] == v)
        assert sub.height == 1
        return sub["latency_ms"][0]

    gen = measured("dsa_generation", "DeepseekV32ForCausalLM", batch_size=8, kv_len=32768)
    assert est.generation_first_ms == pytest.approx(61 * gen, rel=1e-6)
    v3 = get_model(V3, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    df = compare_models([v3, v32], [4096], batch_size=1, db=db)
    ctx = {r["model"]: r["model_ms"] for r in df.filter(df["phase"] == "context").iter_rows(named=True)}
    assert ctx[V3] == pytest.approx(61 * measured("mla_context", "DeepseekV3ForCausalLM", batch_size=1,
                                                  isl=4096, prefix=0), rel=1e-6)
    assert ctx[V32] == pytest.approx(61 * measured("dsa_context", "DeepseekV32ForCausalLM", batch_size=1,
                                                   isl=4096, prefix=0), rel=1e-6)


def test_bundled_models_match_estimator_specs():
    for path in (V3, V32, "deepseek-ai/DeepSeek-V3.2-Exp", "zai-org/GLM-5"):
        assert get_model(path, "h200_sxm", "trtllm", ModelConfig(tp_size=8)).spec_differences() == []


def test_local_config_dims_that_the_database_does_not_use_are_named(tmp_path):
    import json

    from estimator.models.hf_config import load_config_dict

    raw, _ = load_config_dict(V32)
    (tmp_path / "config.json").write_text(json.dumps(dict(raw, hidden_size=4096, index_head_dim=64)))
    m = get_model(tmp_path, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    assert m.spec_differences() == ["hidden_size 4096 (spec of DeepseekV32ForCausalLM: 7168)",
                                    "index_head_dim 64 (spec of DeepseekV32ForCausalLM: 128)"]


def test_a_database_of_another_deployment_is_refused(model_home, model_db):
    """model.estimate(db=...) answered from whatever database it got and labelled the numbers with the
    model's own system / backend / version (an H100 database's numbers came out as 'h200_sxm')."""
    from estimator.lookup.database import PerfDatabase

    m = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    with pytest.raises(ValueError, match="db answers for system 'h100_sxm', but this model is deployed on "
                                         "system 'h200_sxm'"):
        m.estimate(isl=1024, osl=1, batch_size=1, db=PerfDatabase("h100_sxm", "trtllm", home=model_home))
    with pytest.raises(ValueError, match="db answers for backend 'vllm', but this model is deployed on backend "
                                         "'trtllm'"):
        m.estimate(isl=1024, osl=1, batch_size=1, db=PerfDatabase("h200_sxm", "vllm", home=model_home))
    pinned = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8), version="1.0")
    with pytest.raises(ValueError, match="db answers for version None, but this model is deployed on version '1.0'"):
        pinned.estimate(isl=1024, osl=1, batch_size=1, db=model_db)
    with pytest.raises(TypeError, match="db must be a PerfDatabase, got str"):
        m.estimate(isl=1024, osl=1, batch_size=1, db="h200_sxm")
    assert m.estimate(isl=1024, osl=1, batch_size=1, db=model_db).system == "h200_sxm"


def test_model_config_takes_numpy_integers_for_every_count():
    """tp_size=np.int64(8) passed but dense_attention_layers=np.int64(3) was refused."""
    cfg = ModelConfig(tp_size=np.int64(8), dense_attention_layers=np.int64(3))
    assert (cfg.tp_size, cfg.dense_attention_layers) == (8, 3) and type(cfg.dense_attention_layers) is int
    assert get_model(V32, "h200_sxm", "trtllm", cfg).layer_counts == {"mla": 3, "dsa": 58}
    with pytest.raises(ValueError, match="dense_attention_layers must be an integer >= 0, got 3.0"):
        ModelConfig(dense_attention_layers=3.0)
