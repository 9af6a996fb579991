"""Which slice answers a DSA query without an exact match: one running DSA, never a dense-MHA path by
list order (SGLang's H200 DeepSeek-V3.2 bf16 dsa_context answered 1.8 ms from `sglang_dsa_dense_mha_fa3`
where its DSA kernels measure 5.8 ms at fp8_block)."""

from __future__ import annotations

import polars as pl
import pytest

from estimator.grids.build import build_grids
from estimator.lookup.database import PerfDatabase

from ..conftest import fixed_calibration, synthetic_points

DENSE = "sglang_dsa_dense_mha_fa3"
SPARSE = "sglang_dsa_indexer_flashmla_sparse"
SKIP = "sglang_dsa_skip_indexer_flashmla_sparse"


def _db(kernel_sources, gemm_types=("fp8_block",)) -> PerfDatabase:
    base = synthetic_points(ops=("dsa_context",), gemm_types=gemm_types)
    pts = pl.concat([base.with_columns(pl.lit(ks).alias("kernel_source")) for ks in kernel_sources])
    cal = fixed_calibration(pts)
    return PerfDatabase(calibration=cal, grids=build_grids(pts, cal))


Q = dict(batch_size=4, s=256, num_heads=64)  # a measured cell


def test_a_dsa_query_without_an_exact_slice_is_answered_by_dsa_kernels():
    db = _db([DENSE, SPARSE])  # both fp8_block: a bf16 query ties on every key but the attention
    est = db.estimate("dsa_context", **Q, gemm_type="bfloat16")
    assert dict(est.slice)["kernel_source"] == SPARSE
    assert est.transferred_from == "gemm_type=bfloat16->fp8_block"
    asked = db.estimate("dsa_context", **Q, gemm_type="bfloat16", kernel_source=DENSE)  # asked for: it answers
    assert dict(asked.slice)["kernel_source"] == DENSE and "attention" not in asked.transferred_from
    assert asked.latency_ms != pytest.approx(est.latency_ms, rel=0.05)


def test_among_exact_slices_the_op_own_attention_answers():
    """Before, the largest grid (then the largest name) picked: here the skip-indexer path."""
    db = _db([DENSE, SKIP, SPARSE])
    est = db.estimate("dsa_context", **Q, gemm_type="fp8_block")
    assert dict(est.slice)["kernel_source"] == SPARSE and est.transferred_from is None
    assert est.source.value == "measured"


def test_only_other_attention_measured_answers_with_the_reason():
    db = _db([DENSE])
    est = db.estimate("dsa_context", **Q, gemm_type="fp8_block")
    assert dict(est.slice)["kernel_source"] == DENSE and est.source.value == "transferred"
    assert est.transferred_from == (f"attention=DSA->dense MHA ({DENSE}: no DSA kernel measured for "
                                    f"dsa_context here)")
    many = db.estimate_many("dsa_context", pl.DataFrame({"batch_size": [4], "isl": [256], "num_heads": [64],
                                                         "gemm_type": ["fp8_block"]}))
    assert many["source"][0] == "transferred"


def test_blackwell_dsa_query_is_answered_by_dsa_kernels():
    """SGLang's B200 / GB200 tables: the dense ragged prefill sorts first and was taken for DSA (0.78 ms
    where the sparse path measures ~9x that) because the variant table knew only the Hopper names."""
    db = _db(["sglang_dsa_dense_mha_trtllm_ragged", "sglang_dsa_indexer_trtllm",
              "sglang_dsa_skip_indexer_trtllm"])
    est = db.estimate("dsa_context", **Q, gemm_type="bfloat16")
    assert dict(est.slice)["kernel_source"] == "sglang_dsa_indexer_trtllm"
    assert est.transferred_from == "gemm_type=bfloat16->fp8_block"
