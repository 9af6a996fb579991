"""One whole op per family against FLOPs and bytes worked out by hand from design/SOL.md
(DeepSeek-V3 / V3.2 dims: hidden 7168, q_lora 1536, kv_lora 512, rope 64, nope 128,
v 128; indexer 64 heads x 128, top-k 2048; bf16 weights, activations and KV cache).
The numbers are literals: a physics change in `sol.kernel_specs` shows up here."""

import pytest

from estimator.physics import sol
from estimator.physics.specs import load_model

V3 = load_model("DeepseekV3ForCausalLM")
V32 = load_model("DeepseekV32ForCausalLM")

# T = 2 tokens, L = 1024 keys per request, H = 16.
MLA_GENERATION = {
        "kv_a_proj": (60_555_264, 30_314_752),
        "q_b_proj": (18_874_368, 9_455_616),
        "o_proj": (58_720_256, 29_396_992),
        "elementwise": (0, 29_184),
        "bmm_uk": (4_194_304, 2_138_112),
        "bmm_uv": (4_194_304, 2_138_112),
        "attention": (71_303_168, 2_428_928),
    }
# T = 128 tokens (b 2 x isl 64, causal: Sk = 2 * 64 * 65 / 2 = 4160 keys), H = 16.
MLA_CONTEXT = {
        "kv_a_proj": (3_875_536_896, 32_653_312),
        "q_b_proj": (1_207_959_552, 10_616_832),
        "o_proj": (3_758_096_384, 31_719_424),
        "elementwise": (0, 1_867_776),
        "kv_b_proj": (536_870_912, 5_373_952),
        "attention": (42_598_400, 2_621_440),
        "attention_row_tiles": (167_772_160, 0),
    }
# T = 2, L = 4096 > top-k: the indexer runs over 8192 keys; heads padded 16 -> 64.
DSA_GENERATION = {
        "kv_a_proj": (64_225_280, 32_150_272),
        "q_b_proj": (18_874_368, 9_455_616),
        "o_proj": (58_720_256, 29_396_992),
        "elementwise": (0, 29_184),
        "bmm_uk": (4_194_304, 2_138_112),
        "bmm_uv": (4_194_304, 2_138_112),
        "sparse_attention": (570_425_344, 5_013_504),
        "indexer_q_proj": (50_331_648, 25_204_736),
        "indexer_weights_proj": (1_835_008, 946_432),
        "indexer_quant": (0, 49_920),
        "indexer_logits": (134_217_728, 1_131_008),
        "indexer_topk": (0, 49_152),
    }
# T = 1024 tokens (b 1, isl 1024 <= top-k: no indexer logits or top-k), H = 128.
DSA_CONTEXT = {
        "kv_a_proj": (32_883_343_360, 51_380_224),
        "q_b_proj": (77_309_411_328, 128_974_848),
        "o_proj": (240_518_168_576, 283_115_520),
        "elementwise": (0, 44_302_336),
        "bmm_uk": (17_179_869_184, 184_549_376),
        "bmm_uv": (17_179_869_184, 184_549_376),
        "sparse_attention": (584_115_552_256, 294_780_928),
        "indexer_q_proj": (25_769_803_776, 45_088_768),
        "indexer_weights_proj": (939_524_096, 15_728_640),
        "indexer_quant": (0, 25_559_040),
        "indexer_logits": (0, 0),
        "indexer_topk": (0, 0),
    }

CASES = [
    ("mla_generation", V3, dict(batch=2, isl=1, prefix=0, kv_len=1023, num_heads=16), MLA_GENERATION),
    ("mla_context", V3, dict(batch=2, isl=64, prefix=0, kv_len=0, num_heads=16), MLA_CONTEXT),
    ("dsa_generation", V32, dict(batch=2, isl=1, prefix=0, kv_len=4095, num_heads=16), DSA_GENERATION),
    ("dsa_context", V32, dict(batch=1, isl=1024, prefix=0, kv_len=0, num_heads=128), DSA_CONTEXT),
]


@pytest.mark.parametrize(("op", "model", "shape", "want"), CASES, ids=[c[0] for c in CASES])
def test_whole_op_flops_and_bytes_by_hand(op, model, shape, want):
    got = {k.name: (k.flops, k.bytes) for k in sol.kernels(op, model, **shape)}
    assert list(got) == list(want)
    for name, (flops, nbytes) in want.items():
        assert got[name][0] == pytest.approx(flops, rel=1e-12), name
        assert got[name][1] == pytest.approx(nbytes, rel=1e-12), name


# SGLang's DSA kernel sources that are not DSA's own path (estimator.physics.variants), at
# V3.2 b 2 x isl 64 (T = 128, Sk = 4160), H = 16: the MLA_CONTEXT shape above.
# Dense MHA without the indexer is MLA prefill exactly: V3.2 has V3's MLA dims, and the
# indexer's key projection (128 columns of kv_a_proj) is not charged.
DSA_CONTEXT_DENSE_SKIP_INDEXER = MLA_CONTEXT
# Dense MHA with the indexer: kv_a_proj N = 1536 + 512 + 64 + 128 = 2240:
#   F = 2 * 128 * 7168 * 2240, B = 2 * 7168 * 2240 + 2 * 128 * (7168 + 2240);
# indexer_q_proj M 128, K 1536, N 64 * 128: F = 2 * 128 * 1536 * 8192, B = 2 * 1536 * 8192 + 256 * 9728;
# indexer_weights_proj M 128, K 7168, N 64: F = 2 * 128 * 7168 * 64, B = 2 * 7168 * 64 + 256 * 7232;
# indexer_quant B = 128 * 3 * (8192 + 128); dense attention keeps every key: no logits or top-k kernels.
DSA_CONTEXT_DENSE = {
        "kv_a_proj": (4_110_417_920, 34_521_088),
        "q_b_proj": MLA_CONTEXT["q_b_proj"],
        "o_proj": MLA_CONTEXT["o_proj"],
        "elementwise": MLA_CONTEXT["elementwise"],
        "kv_b_proj": MLA_CONTEXT["kv_b_proj"],
        "attention": MLA_CONTEXT["attention"],
        "attention_row_tiles": MLA_CONTEXT["attention_row_tiles"],
        "indexer_q_proj": (3_221_225_472, 27_656_192),
        "indexer_weights_proj": (117_440_512, 2_768_896),
        "indexer_quant": (0, 3_194_880),
    }
# Sparse attention without the indexer, at the DSA_CONTEXT shape: kv_a_proj N = 2112:
#   F = 2 * 1024 * 7168 * 2112, B = 2 * 7168 * 2112 + 2 * 1024 * (7168 + 2112); no indexer kernels.
DSA_CONTEXT_SKIP_INDEXER = {
        "kv_a_proj": (31_004_295_168, 49_283_072),
        **{k: v for k, v in DSA_CONTEXT.items() if k != "kv_a_proj" and not k.startswith("indexer")},
    }
VARIANT_CASES = [
    ("sglang_dsa_dense_mha_fa3+skip_indexer", dict(batch=2, isl=64, prefix=0, kv_len=0, num_heads=16),
     DSA_CONTEXT_DENSE_SKIP_INDEXER),
    ("sglang_dsa_dense_mha_fa3", dict(batch=2, isl=64, prefix=0, kv_len=0, num_heads=16), DSA_CONTEXT_DENSE),
    ("sglang_dsa_skip_indexer_flashmla_sparse", dict(batch=1, isl=1024, prefix=0, kv_len=0, num_heads=128),
     DSA_CONTEXT_SKIP_INDEXER),
]


@pytest.mark.parametrize(("source", "shape", "want"), VARIANT_CASES, ids=[c[0] for c in VARIANT_CASES])
def test_dsa_context_kernel_source_variants_by_hand(source, shape, want):
    got = {k.name: (k.flops, k.bytes) for k in sol.kernels("dsa_context", V32, kernel_source=source, **shape)}
    assert list(got) == list(want)
    for name, (flops, nbytes) in want.items():
        assert got[name][0] == pytest.approx(flops, rel=1e-12), name
        assert got[name][1] == pytest.approx(nbytes, rel=1e-12), name
