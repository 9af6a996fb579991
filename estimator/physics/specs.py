"""System (GPU) and model specs, loaded from the package's YAML/JSON data."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources

import yaml


@dataclass(frozen=True)
class SystemSpec:
    """Datasheet peaks of one GPU, SI units."""

    name: str
    peak_bf16_flops_per_s: float
    peak_fp8_flops_per_s: float
    hbm_bytes_per_s: float
    memory_bytes: float
    sm_count: int
    family: str
    peak_fp4_flops_per_s: float | None = None  # optional keys of a system YAML
    sm_clock_hz: float | None = None
    sources: tuple[str, ...] = ()  # datasheet URLs or citations
    host: str = "x86"  # the CPU that launches the kernels: "grace" on Grace superchips (GB200, GB300)
    memory: str = "hbm"  # device memory kind: "hbm", or "gddr" (L4, L40S, RTX PRO 6000, B60)


_REQUIRED = ("name", "peak_bf16_flops_per_s", "peak_fp8_flops_per_s", "hbm_bytes_per_s", "memory_bytes",
             "sm_count", "family")
_OPTIONAL = ("peak_fp4_flops_per_s", "sm_clock_hz", "sources", "host", "memory")


def system_from_mapping(raw: dict, where: str = "system spec") -> SystemSpec:
    """A SystemSpec from a parsed YAML mapping; ValueError names a missing, unknown or badly typed key."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    missing = [k for k in _REQUIRED if k not in raw]
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if missing or unknown:
        raise ValueError(f"{where}: " + "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(unknown)}"] if unknown else [])))
    try:
        values = {"name": str(raw["name"]), "family": str(raw["family"]), "sm_count": int(raw["sm_count"]),
                  **{k: float(raw[k]) for k in ("peak_bf16_flops_per_s", "peak_fp8_flops_per_s", "hbm_bytes_per_s",
                                                "memory_bytes")},
                  **{k: float(raw[k]) for k in ("peak_fp4_flops_per_s", "sm_clock_hz") if raw.get(k) is not None}}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: a numeric key has a non-numeric value ({exc})") from None
    sources = raw.get("sources") or ()
    if isinstance(sources, str) or not all(isinstance(x, str) for x in sources):
        raise ValueError(f"{where}: sources must be a list of strings")
    return SystemSpec(**values, sources=tuple(sources), host=str(raw.get("host") or "x86"),
                      memory=str(raw.get("memory") or "hbm"))


@dataclass(frozen=True)
class ModelSpec:
    """Attention dimensions of one model (one layer's attention block)."""

    name: str
    hf_id: str
    architecture: str
    attention: str  # "mla" or "dsa"
    hidden_size: int
    num_attention_heads: int
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    index_n_heads: int
    index_head_dim: int
    index_topk: int
    num_hidden_layers: int
    first_k_dense_replace: int
    max_position_embeddings: int  # the model's context length (HF config): longer sequences are refused


def _specs_dir():
    return resources.files("estimator.physics") / "specs"


@lru_cache(maxsize=None)
def system_names() -> tuple[str, ...]:
    return tuple(sorted(p.name[:-5] for p in _specs_dir().iterdir() if p.name.endswith(".yaml")))


@lru_cache(maxsize=None)
def load_system(name: str) -> SystemSpec:
    """The spec of system `name` (e.g. 'h200_sxm'); ValueError lists the known ones."""
    if name not in system_names():
        raise ValueError(f"unknown system {name!r}; valid: {', '.join(system_names())}")
    raw = yaml.safe_load((_specs_dir() / f"{name}.yaml").read_text())
    return system_from_mapping(raw, f"estimator/physics/specs/{name}.yaml")


# The models the estimator has specs of: short name -> HF id. Their dimensions are read from the
# bundled HF config.json (`specs/models/<org>__<name>.json`, the one copy; `estimator.models.hf_config`
# parses the same files for the model roll-up). Order: the reference model of each kind first.
SPEC_MODELS = {"deepseek-v3.2": "deepseek-ai/DeepSeek-V3.2", "deepseek-v3": "deepseek-ai/DeepSeek-V3",
               "glm-5": "zai-org/GLM-5"}
_NOT_IN_CONFIG = ("name", "hf_id", "architecture", "attention")
_INDEXER = ("index_n_heads", "index_head_dim", "index_topk")  # absent (0) in an MLA model's config


@lru_cache(maxsize=None)
def _models() -> tuple[ModelSpec, ...]:
    out = []
    for name, hf_id in SPEC_MODELS.items():
        raw = json.loads((_specs_dir() / "models" / (hf_id.replace("/", "__") + ".json")).read_text())
        dims = {f.name: raw.get(f.name, 0) if f.name in _INDEXER else raw[f.name]
                for f in fields(ModelSpec) if f.name not in _NOT_IN_CONFIG}
        out.append(ModelSpec(name=name, hf_id=hf_id, architecture=raw["architectures"][0],
                             attention="dsa" if raw.get("index_topk") else "mla", **dims))
    return tuple(out)


def model_names() -> tuple[str, ...]:
    return tuple(m.name for m in _models())


def load_model(name: str) -> ModelSpec:
    """A model by short name, HF id or architecture class; ValueError lists the known ones."""
    for m in _models():
        if name in (m.name, m.hf_id, m.architecture):
            return m
    valid = ", ".join(f"{m.name} ({m.architecture})" for m in _models())
    raise ValueError(f"unknown model {name!r}; valid: {valid}")


def architectures(attention: str | None = None) -> tuple[str, ...]:
    """Architecture classes with a spec, optionally only those of one attention kind."""
    return tuple(m.architecture for m in _models() if attention in (None, m.attention))


def default_model(attention: str) -> ModelSpec:
    """The reference model of an attention kind: DeepSeek-V3 (mla), DeepSeek-V3.2 (dsa)."""
    return load_model({"mla": "deepseek-v3", "dsa": "deepseek-v3.2"}[attention])
