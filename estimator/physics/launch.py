"""Launch waves of the project's own collector attention kernel (backend `perfwh`).

The collector's decode attention (`collector/kernels/mla_attn.py`) launches
query token x head block x key split programs, one per SM at a time. Between
the power-of-two batch values of a sweep the number of rounds (waves) and the
split-KV chunk jump: at 128 heads DSA decode at batch 64 runs 256
half-length programs (about one wave on 132 SMs), batch 96 runs 192
full-length ones (two waves, like batch 128). A SOL proportional to the
kernel's FLOPs and bytes is smooth there, so the measured/SOL ratio the grids
interpolate had steps no grid value shows. `occupied` is what the launch
holds the machine for: waves x SMs x chunk keys x head rows per program
(padded chunks and head blocks included); `sol.kernels` scales the attention
kernel's FLOPs and bytes by it over the kernel form's own work.

The launch rule mirrors the collector's code in Python, one function for ints
(one estimate) and int arrays (numpy, `estimate_many`); no torch or triton in
the estimator. It uses the launch configs the collector's runs used
(`collector/configs/h100.json`, `h200.json`: the module defaults);
tests/estimator/physics/test_launch.py pins the two against each other. Only
the (framework, version, op) in `RULES` have a rule: the published tables
(TensorRT-LLM, vLLM, SGLang) run kernels whose launch we do not model.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np

# mla_attn.CONFIG (context) and CONFIG_DEC (T * head blocks < DEC_PROGRAMS * SMs): what the launch reads
ATTN_CTX = {"block_n": 64, "block_h_max": 64, "split_target": 2}
ATTN_DEC = {"block_n": 64, "block_h_max": 64, "split_target": 1, "split_target_dense": 4}
DEC_PROGRAMS = 4
MIN_CHUNK = 256  # pick_splits' default

# (framework, version) -> op -> rule: "sparse" (mla_attn over the index_topk slots) or "dense" (mla_attn
# over the kv_len + 1 cached keys, collector 0.1's MLA decode). Collector 0.2 decodes MLA with
# mla_decode.py, whose split rule already minimises its own makespan: modelling its waves made the
# held-out fit accuracy worse (README "Off-grid validation"), so it keeps the plain SOL.
RULES: dict[tuple[str, str], dict[str, str]] = {
    ("perfwh", "0.1"): {"dsa_generation": "sparse", "mla_generation": "dense"},
    ("perfwh", "0.2"): {"dsa_generation": "sparse"},
}


class Launch(NamedTuple):
    """An attention launch rule on a GPU of n_sm SMs."""

    rule: str
    n_sm: int


def launch_rule(framework: str | None, version: str | None, op: str) -> str | None:
    """The attention launch rule of one (framework, version, op); None: plain SOL."""
    return RULES.get((framework, version), {}).get(op)


def _cdiv(a, b):
    return -(-a // b)


def _where(cond, a, b):
    """a if cond else b, for ints or (elementwise) int arrays: one rule serves both evaluators."""
    return np.where(cond, a, b) if isinstance(cond, np.ndarray) else (a if cond else b)


def _max(a, b):
    return np.maximum(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else max(a, b)


def _min(a, b):
    return np.minimum(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else min(a, b)


def _next_pow2(x):
    """1 << (x - 1).bit_length() (x >= 1): the smallest power of two >= x."""
    if isinstance(x, np.ndarray):
        return np.left_shift(1, np.frexp((x - 1).astype(np.float64))[1]).astype(np.int64)
    return 1 << (x - 1).bit_length()


def pick_splits(n_tokens, n_head_blocks, n_slots, n_sm: int = 132, min_chunk: int = MIN_CHUNK,
                target: float = 2.0):
    """`mla_attn.pick_splits`: about target * n_sm programs, chunks of >= min_chunk keys."""
    progs = n_tokens * n_head_blocks
    want = _cdiv(int(target * n_sm), progs)
    most = _max(1, n_slots // min_chunk)
    return _where(progs >= target * n_sm, 1, _max(1, _min(want, most)))


def _config_launch(cfg: dict, n_tokens, heads, k_slots, n_sm: int, dense: bool):
    block_h = _max(16, _min(cfg["block_h_max"], _next_pow2(heads)))
    n_hb = _cdiv(heads, block_h)
    target = cfg.get("split_target_dense", cfg["split_target"]) if dense else cfg["split_target"]
    splits = pick_splits(n_tokens, n_hb, k_slots, n_sm, target=target)
    chunk = _cdiv(_cdiv(k_slots, splits), cfg["block_n"]) * cfg["block_n"]
    return n_tokens * n_hb * _cdiv(k_slots, chunk), chunk, block_h


def attn_launch(n_tokens, heads, k_slots, n_sm: int, dense: bool):
    """(programs, chunk keys, head rows per program) of `mla_attn.mla_attention` (ints or int arrays)."""
    dec = n_tokens * _cdiv(heads, min(64, ATTN_CTX["block_h_max"])) < DEC_PROGRAMS * n_sm
    if not isinstance(dec, np.ndarray):
        return _config_launch(ATTN_DEC if dec else ATTN_CTX, n_tokens, heads, k_slots, n_sm, dense)
    on_dec = _config_launch(ATTN_DEC, n_tokens, heads, k_slots, n_sm, dense)
    on_ctx = _config_launch(ATTN_CTX, n_tokens, heads, k_slots, n_sm, dense)
    return tuple(np.where(dec, a, b) for a, b in zip(on_dec, on_ctx))


def _occupied(rule: str, n_tokens, heads, keys, n_sm: int):
    programs, chunk, rows = attn_launch(n_tokens, heads, keys, n_sm, dense=rule == "dense")
    waves = _cdiv(programs, n_sm)
    if isinstance(waves, np.ndarray):  # int64 wraps past 2^63 (batch and index_topk near 2^31): multiply in
        return waves.astype(np.float64) * n_sm * chunk * rows  # float64, exact below 2^53 as the ints were
    return waves * n_sm * chunk * rows


_occupied_one = lru_cache(maxsize=1 << 16)(_occupied)


def occupied(launch: Launch, n_tokens, heads, keys):
    """Head-row x key slots the launch holds the GPU for: waves x n_sm x chunk x head rows per
    program (floats or arrays; values are rounded up to whole numbers)."""
    if not any(isinstance(x, np.ndarray) for x in (n_tokens, heads, keys)):
        return float(_occupied_one(launch.rule, math.ceil(n_tokens), math.ceil(heads), math.ceil(keys), launch.n_sm))
    t, h, k = np.broadcast_arrays(*(np.ceil(np.asarray(x, dtype=np.float64)).astype(np.int64)
                                    for x in (n_tokens, heads, keys)))
    return _occupied(launch.rule, t, h, k, launch.n_sm).astype(np.float64)
