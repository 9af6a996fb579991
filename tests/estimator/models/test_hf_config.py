"""Config parsing of HF config.json files (estimator.models.hf_config)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from estimator.models import hf_config

V32 = {
    "architectures": ["DeepseekV32ForCausalLM"],
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "hidden_size": 7168,
    "q_lora_rank": 1536,
    "kv_lora_rank": 512,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "first_k_dense_replace": 3,
    "moe_layer_freq": 1,
    "n_routed_experts": 256,
    "index_n_heads": 64,
    "index_head_dim": 128,
    "index_topk": 2048,
}


def write_config(tmp_path, cfg, name="config.json"):
    p = tmp_path / name
    p.write_text(json.dumps(cfg))
    return p


def test_bundled_ids():
    assert set(hf_config.bundled_models()) == {
        "deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-V3.2", "deepseek-ai/DeepSeek-V3.2-Exp", "zai-org/GLM-5",
    }


@pytest.mark.parametrize("model, arch, attention, layers, heads", [
    ("deepseek-ai/DeepSeek-V3", "DeepseekV3ForCausalLM", "mla", 61, 128),
    ("deepseek-ai/DeepSeek-V3.2", "DeepseekV32ForCausalLM", "dsa", 61, 128),
    ("deepseek-ai/deepseek-v3.2-exp", "DeepseekV32ForCausalLM", "dsa", 61, 128),
    ("zai-org/GLM-5", "GlmMoeDsaForCausalLM", "dsa", 78, 64),
])
def test_bundled_configs(model, arch, attention, layers, heads):
    cfg = hf_config.load_model_config(model)
    assert (cfg.architecture, cfg.attention, cfg.num_hidden_layers, cfg.num_attention_heads) == (
        arch, attention, layers, heads)
    assert cfg.family == "DEEPSEEK" and cfg.source == "bundled" and cfg.defaults_used == ()
    assert (cfg.dsa is not None) == (attention == "dsa")


def test_v32_values_from_published_config():
    cfg = hf_config.load_model_config("deepseek-ai/DeepSeek-V3.2")
    assert (cfg.hidden_size, cfg.q_lora_rank, cfg.kv_lora_rank) == (7168, 1536, 512)
    assert (cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim) == (128, 64, 128)
    assert cfg.dsa == hf_config.DeepSeekV32Config(64, 128, 2048, 3)
    assert [cfg.is_moe_layer(i) for i in range(5)] == [False, False, False, True, True]


def test_local_folder_and_file(tmp_path):
    p = write_config(tmp_path, V32)
    by_dir = hf_config.load_model_config(tmp_path)
    by_file = hf_config.load_model_config(p)
    assert by_dir.dsa == by_file.dsa == hf_config.DeepSeekV32Config(64, 128, 2048, 3)
    assert by_dir.source == str(p)


def test_local_v32_without_index_fields_is_an_error(tmp_path):
    cfg = {k: v for k, v in V32.items() if not k.startswith("index_")}
    write_config(tmp_path, cfg)
    with pytest.raises(ValueError, match="index_n_heads, index_head_dim, index_topk"):
        hf_config.load_model_config(tmp_path)


def test_local_v3_config_ignores_index_fields(tmp_path):
    cfg = dict(V32, architectures=["DeepseekV3ForCausalLM"])
    del cfg["index_topk"]
    write_config(tmp_path, cfg)
    parsed = hf_config.load_model_config(tmp_path)
    assert parsed.attention == "mla" and parsed.dsa is None


def test_optional_ffn_fields_are_reported_when_absent(tmp_path):
    cfg = {k: v for k, v in V32.items() if k not in ("moe_layer_freq", "n_routed_experts")}
    write_config(tmp_path, cfg)
    parsed = hf_config.load_model_config(tmp_path)
    assert parsed.defaults_used == ("moe_layer_freq=1", "n_routed_experts=0")
    assert not any(parsed.is_moe_layer(i) for i in range(61))


@pytest.mark.parametrize("field", hf_config.REQUIRED_FIELDS)
def test_missing_required_field_is_named(tmp_path, field):
    write_config(tmp_path, {k: v for k, v in V32.items() if k != field})
    with pytest.raises(ValueError, match=f"lacks required field\\(s\\): {field}"):
        hf_config.load_model_config(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"architectures": ["LlamaForCausalLM"]}, "unsupported architecture LlamaForCausalLM"),
    ({"architectures": []}, "no 'architectures'"),
    ({"num_attention_heads": 0}, "num_attention_heads must be >= 1"),
    ({"hidden_size": "7168"}, "hidden_size must be an integer"),
    ({"index_topk": 2048.5}, "index_topk must be an integer"),
    ({"first_k_dense_replace": 62}, "first_k_dense_replace=62 exceeds num_hidden_layers=61"),
])
def test_bad_values(tmp_path, change, message):
    write_config(tmp_path, dict(V32, **change))
    with pytest.raises(ValueError, match=message):
        hf_config.load_model_config(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"num_hidden_layers": 10**9}, "config field num_hidden_layers must be <= 4096, got 1000000000"),
    ({"num_attention_heads": 10**9 + 7}, "config field num_attention_heads must be <= 65536, got 1000000007"),
    ({"index_topk": 2**31}, "config field index_topk must be <= 2147483647, got 2147483648"),
])
def test_counts_too_large_to_build_are_refused(tmp_path, change, message):
    """num_hidden_layers=10**9 built a billion layer objects until the process was killed for memory; a
    huge head count hung listing the divisors of the heads for a tp_size error."""
    write_config(tmp_path, dict(V32, **change))
    with pytest.raises(ValueError, match=message):
        hf_config.load_model_config(tmp_path)


def test_unknown_model_lists_bundled():
    with pytest.raises(ValueError, match="unknown model 'acme/Nope'.*deepseek-ai/DeepSeek-V3.2"):
        hf_config.load_model_config("acme/Nope")


def test_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        hf_config.load_model_config(tmp_path)


def test_invalid_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        hf_config.load_model_config(tmp_path)


def test_a_config_that_is_not_utf8_names_the_file(tmp_path):
    """A UTF-16 config.json raised "'utf-8' codec can't decode byte 0xff", naming no file."""
    (tmp_path / "config.json").write_text('{"architectures": ["DeepseekV3ForCausalLM"]}', encoding="utf-16")
    with pytest.raises(ValueError, match=f"{tmp_path / 'config.json'} is not valid JSON: 'utf-8' codec"):
        hf_config.load_model_config(tmp_path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(V32)), st.one_of(
    st.none(), st.integers(-5, 5000), st.text(max_size=3), st.floats(allow_nan=True))))
def test_parser_accepts_or_names_the_problem(overrides):
    """Any mangled config either parses to positive dims or raises ValueError (never anything else)."""
    try:
        cfg = hf_config.parse_config(dict(V32, **overrides))
    except ValueError as exc:
        assert str(exc)
    else:
        assert cfg.num_hidden_layers >= 1 and cfg.num_attention_heads >= 1
        assert 0 <= cfg.first_k_dense_replace <= cfg.num_hidden_layers
