"""Hugging Face `config.json` parsing for the model roll-up.

`--model-path` is a local folder or file holding a `config.json`, or the id of
a bundled config (`deepseek-ai/DeepSeek-V3.2`, ...; the published config.json
values, stored under `estimator/physics/specs/models/<org>__<name>.json`). Nothing
is fetched from the network.

The architecture class names the family and the attention kind; every field
the estimate needs must be in the config (a missing one is an error that names
it, never a silent default).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

BUNDLED_DIR = ("specs", "models")


@dataclass(frozen=True)
class Architecture:
    """What an HF architecture class means for the estimator."""

    family: str  # model family, as aiconfigurator names it
    attention: str  # "mla" or "dsa"


ARCHITECTURES: dict[str, Architecture] = {
    "DeepseekV3ForCausalLM": Architecture("DEEPSEEK", "mla"),
    "DeepseekV32ForCausalLM": Architecture("DEEPSEEK", "dsa"),
    "GlmMoeDsaForCausalLM": Architecture("DEEPSEEK", "dsa"),
}

# Attention dimensions every supported config must state.
REQUIRED_FIELDS = (
    "num_hidden_layers",
    "num_attention_heads",
    "hidden_size",
    "q_lora_rank",
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "first_k_dense_replace",
)
DSA_FIELDS = ("index_n_heads", "index_head_dim", "index_topk")


@dataclass(frozen=True)
class DeepSeekV32Config:
    """The DSA (lightning indexer) fields of a DeepSeek-V3.2-style config.

    Every layer of such a model has the indexer; `first_k_dense_replace` only
    makes the first layers' FFN dense instead of MoE.
    """

    index_n_heads: int = 64
    index_head_dim: int = 128
    index_topk: int = 2048
    first_k_dense_replace: int = 3

    def __post_init__(self) -> None:
        for name in ("index_n_heads", "index_head_dim", "index_topk"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("first_k_dense_replace", self.first_k_dense_replace, minimum=0)


@dataclass(frozen=True)
class HFModelConfig:
    """The fields of one model's config.json that the estimator uses."""

    model_path: str
    source: str  # "bundled" or the local file it was read from
    architecture: str
    family: str
    attention: str  # "mla" or "dsa"
    num_hidden_layers: int
    num_attention_heads: int
    hidden_size: int
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    first_k_dense_replace: int
    moe_layer_freq: int
    n_routed_experts: int  # 0: no MoE layers
    dsa: DeepSeekV32Config | None
    defaults_used: tuple[str, ...] = ()  # optional fields absent from the file

    def is_moe_layer(self, i: int) -> bool:
        """The HF DeepSeek rule: MoE from layer first_k_dense_replace on, every moe_layer_freq."""
        return (
            self.n_routed_experts > 0
            and i >= self.first_k_dense_replace
            and i % self.moe_layer_freq == 0
        )


# Upper bounds of config fields: a model is built as one object per layer (and two ops), and a tp_size
# error lists the divisors of the heads, so num_hidden_layers=10**9 was killed for memory and a huge
# head count hung. Published models have at most a few hundred layers and 128 heads.
FIELD_MAX = {"num_hidden_layers": 4096, "num_attention_heads": 65536}
_INT_MAX = 2**31 - 1  # estimator.lookup.limits.MAX_INT: no count above it is answered anyway


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"config field {name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"config field {name} must be >= {minimum}, got {value}")
    if value > FIELD_MAX.get(name, _INT_MAX):
        raise ValueError(f"config field {name} must be <= {FIELD_MAX.get(name, _INT_MAX)}, got {value}")
    return value


def bundled_models() -> dict[str, str]:
    """Bundled model ids (`org/name`) -> file name."""
    folder = resources.files("estimator.physics").joinpath(*BUNDLED_DIR)
    out = {}
    for p in folder.iterdir():
        if p.name.endswith(".json") and "__" in p.name:
            org, _, name = p.name[: -len(".json")].partition("__")
            out[f"{org}/{name}"] = p.name
    return dict(sorted(out.items()))


def load_config_dict(model_path: str | os.PathLike) -> tuple[dict, str]:
    """The raw config.json of `model_path` and where it came from.

    A local folder (its config.json) or file wins over a bundled id of the
    same spelling; bundled ids match case-insensitively.
    """
    text = str(model_path).strip()
    if not text:
        raise ValueError("model path is empty; give a bundled id or a folder/file with config.json")
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"model folder {text!r} has no config.json")
    if path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # JSON is UTF-8 (a UTF-16 save is not)
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        return raw, str(path)
    bundled = bundled_models()
    by_lower = {k.lower(): k for k in bundled}
    key = by_lower.get(text.lower())
    if key is None:
        raise ValueError(
            f"unknown model {text!r}: not a local folder or config.json file, and not bundled; "
            f"bundled: {', '.join(bundled)}"
        )
    folder = resources.files("estimator.physics").joinpath(*BUNDLED_DIR)
    return json.loads(folder.joinpath(bundled[key]).read_text()), "bundled"


def parse_config(raw: dict, model_path: str = "<config>", source: str = "dict") -> HFModelConfig:
    """Validate a config.json dict; errors name every missing or bad field at once."""
    archs = raw.get("architectures")
    if isinstance(archs, str):
        archs = [archs]
    if not archs or not isinstance(archs, list):
        raise ValueError(f"{model_path}: config has no 'architectures' list; supported: {', '.join(ARCHITECTURES)}")
    known = [a for a in archs if a in ARCHITECTURES]
    if not known:
        raise ValueError(
            f"{model_path}: unsupported architecture {', '.join(map(str, archs))}; "
            f"supported: {', '.join(ARCHITECTURES)}"
        )
    architecture = known[0]
    arch = ARCHITECTURES[architecture]
    needed = REQUIRED_FIELDS + (DSA_FIELDS if arch.attention == "dsa" else ())
    missing = [f for f in needed if raw.get(f) is None]
    if missing:
        raise ValueError(
            f"{model_path}: config.json of {architecture} ({arch.attention.upper()}) "
            f"lacks required field(s): {', '.join(missing)}"
        )
    vals = {f: _check_int(f, raw[f], minimum=0 if f == "first_k_dense_replace" else 1)
            for f in REQUIRED_FIELDS}
    if vals["first_k_dense_replace"] > vals["num_hidden_layers"]:
        raise ValueError(
            f"{model_path}: first_k_dense_replace={vals['first_k_dense_replace']} exceeds "
            f"num_hidden_layers={vals['num_hidden_layers']}"
        )
    defaults = []
    if raw.get("moe_layer_freq") is None:
        defaults.append("moe_layer_freq=1")
        moe_freq = 1
    else:
        moe_freq = _check_int("moe_layer_freq", raw["moe_layer_freq"], minimum=1)
    if raw.get("n_routed_experts") is None:
        defaults.append("n_routed_experts=0")
        n_experts = 0
    else:
        n_experts = _check_int("n_routed_experts", raw["n_routed_experts"], minimum=0)
    dsa = None
    if arch.attention == "dsa":
        dsa = DeepSeekV32Config(
            index_n_heads=_check_int("index_n_heads", raw["index_n_heads"], 1),
            index_head_dim=_check_int("index_head_dim", raw["index_head_dim"], 1),
            index_topk=_check_int("index_topk", raw["index_topk"], 1),
            first_k_dense_replace=vals["first_k_dense_replace"],
        )
    return HFModelConfig(
        model_path=model_path,
        source=source,
        architecture=architecture,
        family=arch.family,
        attention=arch.attention,
        moe_layer_freq=moe_freq,
        n_routed_experts=n_experts,
        dsa=dsa,
        defaults_used=tuple(defaults),
        **vals,
    )


def load_model_config(model_path: str | os.PathLike) -> HFModelConfig:
    """Read and validate the config of a bundled model id or a local folder/file."""
    raw, source = load_config_dict(model_path)
    return parse_config(raw, model_path=str(model_path), source=source)
