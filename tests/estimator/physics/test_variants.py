"""The kernel_source -> attention variant table (estimator.physics.variants) and that only the
listed DSA sources change the SOL model."""

import pytest

from estimator.physics import sol
from estimator.physics.specs import load_model
from estimator.physics.variants import DSA, AttentionVariant, attention_variant

SGLANG = {
    "sglang_dsa_dense_mha_fa3": AttentionVariant(dense=True, indexer=True),
    "sglang_dsa_dense_mha_fa3+skip_indexer": AttentionVariant(dense=True, indexer=False),
    "sglang_dsa_skip_indexer_flashmla_kv": AttentionVariant(dense=False, indexer=False),
    "sglang_dsa_skip_indexer_flashmla_sparse": AttentionVariant(dense=False, indexer=False),
    "sglang_dsa_indexer_flashmla_kv": AttentionVariant(dense=False, indexer=True),
    "sglang_dsa_indexer_flashmla_sparse": AttentionVariant(dense=False, indexer=True),
    "sglang_dsa_indexer_fa3": AttentionVariant(dense=False, indexer=True),
    "sglang_dsa_skip_indexer_fa3": AttentionVariant(dense=False, indexer=False),
    # Blackwell's sources: the dense ragged prefill answered plain DSA queries on B200 / GB200 (0.78 ms
    # where the sparse path measures ~9x that), skip-indexer paths were charged the indexer
    "sglang_dsa_dense_mha_trtllm_ragged": AttentionVariant(dense=True, indexer=True),
    "sglang_dsa_dense_mha_trtllm_ragged+skip_indexer": AttentionVariant(dense=True, indexer=False),
    "sglang_dsa_skip_indexer_trtllm": AttentionVariant(dense=False, indexer=False),
    "sglang_dsa_indexer_trtllm": AttentionVariant(dense=False, indexer=True),
}
# The other kernel sources of the published tables (trtllm, vllm) and ones no table holds.
OTHERS = ("default", "FLASHMLA", "FLASHMLA_SPARSE", "FLASH_ATTN", "FLASH_ATTN_MLA", "sglang_dsa_new_path", None)


@pytest.mark.parametrize("source", list(SGLANG))
def test_sglang_sources_map_to_their_variant(source):
    assert attention_variant(source) == SGLANG[source]


@pytest.mark.parametrize("source", OTHERS)
def test_other_sources_run_dsa(source):
    assert attention_variant(source) == DSA == AttentionVariant(dense=False, indexer=True)


SHAPES = (dict(batch=2, isl=64, prefix=0, kv_len=0), dict(batch=1, isl=3000, prefix=5000, kv_len=0),
          dict(batch=8, isl=1, prefix=0, kv_len=40_000))


@pytest.mark.parametrize("op, model", [("dsa_context", "DeepseekV32ForCausalLM"),
                                       ("dsa_generation", "GlmMoeDsaForCausalLM")])
@pytest.mark.parametrize("source", OTHERS)
def test_other_sources_leave_dsa_kernels_unchanged(op, model, source):
    spec = load_model(model)
    for gemm, kv in (("bfloat16", "bfloat16"), ("fp8_block", "fp8")):
        assert sol.kernel_specs(op, spec, gemm, kv, kernel_source=source) == sol.kernel_specs(op, spec, gemm, kv)
    assert [k.name for k in sol.kernel_specs(op, spec)][-2:] == ["indexer_logits", "indexer_topk"]


@pytest.mark.parametrize("op", ["mla_context", "mla_generation", "mla_context_kernel", "mla_generation_kernel"])
@pytest.mark.parametrize("source", list(SGLANG) + list(OTHERS))
def test_mla_ops_ignore_the_kernel_source(op, source):
    spec = load_model("DeepseekV3ForCausalLM")
    assert sol.kernel_specs(op, spec, kernel_source=source) == sol.kernel_specs(op, spec)


def test_dense_attention_grows_with_every_prior_key_sparse_with_top_k():
    """Beyond top-k, dense attention's FLOPs follow the causal key count, sparse attention's stay
    at top-k per query: doubling isl at 4096 -> 8192 (b 1, H 64) quadruples the one, doubles the other."""
    spec = load_model("DeepseekV32ForCausalLM")

    def attn(source, isl):
        ks = sol.kernels("dsa_context", spec, batch=1, isl=isl, prefix=0, kv_len=0, num_heads=64,
                         kernel_source=source)
        return next(k.flops for k in ks if k.name in ("attention", "sparse_attention"))

    dense, sparse = "sglang_dsa_dense_mha_fa3", "sglang_dsa_indexer_flashmla_sparse"
    assert attn(dense, 8192) / attn(dense, 4096) == pytest.approx(8192 * 8193 / (4096 * 4097), rel=1e-12)
    assert attn(sparse, 8192) / attn(sparse, 4096) == 2.0


def test_dense_attention_never_runs_the_indexer_selection():
    """Beyond index_topk (isl 8192 > 2048) DSA runs the indexer logits and top-k; the dense variant
    keeps every key, so only the indexer's projections and quantisation are charged."""
    spec = load_model("DeepseekV32ForCausalLM")
    shape = dict(batch=1, isl=8192, prefix=0, kv_len=0, num_heads=64)
    dsa = {k.name: k.flops for k in sol.kernels("dsa_context", spec, **shape)}
    dense = [k.name for k in sol.kernels("dsa_context", spec, kernel_source="sglang_dsa_dense_mha_fa3", **shape)]
    assert dsa["indexer_logits"] > 0
    assert [n for n in dense if n.startswith("indexer")] == ["indexer_q_proj", "indexer_weights_proj", "indexer_quant"]


@pytest.mark.parametrize("source", list(SGLANG))
def test_the_table_agrees_with_the_names(source):
    """SGLang's names say the variant: 'dense_mha' attends densely, 'skip_indexer' skips the indexer."""
    assert attention_variant(source) == AttentionVariant(dense="dense_mha" in source,
                                                         indexer="skip_indexer" not in source)
