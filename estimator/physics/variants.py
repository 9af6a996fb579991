"""Which attention a kernel_source runs: the one vocabulary the SOL model reads.

A DSA benchmark's kernel_source can name a backend path that is not DSA's own
(top-k sparse attention after the lightning indexer). SGLang's published
DSA tables (Hopper and Blackwell) hold paths that attend densely (FlashAttention-3
or TensorRT-LLM ragged MHA over every prior token, as MLA prefill does) and paths
that skip the indexer.
Charging them sparse attention and the indexer left their calibration fits
ill-posed (no convergence, ~28% median error, parameters that moved 8x under a
1e-12 input change). Unknown sources run the model's own DSA.
"""

from __future__ import annotations

from typing import NamedTuple


class AttentionVariant(NamedTuple):
    """What a DSA op's kernels are: dense attention (every prior key) instead of top-k sparse,
    and whether the lightning indexer runs. MLA ops ignore it (always dense, no indexer)."""

    dense: bool = False
    indexer: bool = True


DSA = AttentionVariant()

# kernel_source -> variant, for the sources whose kernels are not DSA's own; exact names only.
KERNEL_SOURCE_VARIANTS: dict[str, AttentionVariant] = {
    "sglang_dsa_dense_mha_fa3": AttentionVariant(dense=True, indexer=True),
    "sglang_dsa_dense_mha_fa3+skip_indexer": AttentionVariant(dense=True, indexer=False),
    "sglang_dsa_skip_indexer_flashmla_kv": AttentionVariant(dense=False, indexer=False),
    "sglang_dsa_skip_indexer_flashmla_sparse": AttentionVariant(dense=False, indexer=False),
    "sglang_dsa_skip_indexer_fa3": AttentionVariant(dense=False, indexer=False),  # H100 / H200 decode
    # Blackwell (B200, GB200, B300, GB300): TensorRT-LLM's ragged MHA prefill and its DSA kernels
    "sglang_dsa_dense_mha_trtllm_ragged": AttentionVariant(dense=True, indexer=True),
    "sglang_dsa_dense_mha_trtllm_ragged+skip_indexer": AttentionVariant(dense=True, indexer=False),
    "sglang_dsa_skip_indexer_trtllm": AttentionVariant(dense=False, indexer=False),
}


def attention_variant(kernel_source: str | None) -> AttentionVariant:
    """The attention a kernel_source runs; DSA's own for None and for sources not in the table."""
    return KERNEL_SOURCE_VARIANTS.get(kernel_source, DSA) if kernel_source is not None else DSA
