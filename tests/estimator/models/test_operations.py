import pytest

from estimator.common import KVCacheQuantMode, Source
from estimator.models.operations import ContextDSA, ContextMLA, GenerationDSA, GenerationMLA

from ..conftest import ratio_pattern, sol_of


def test_operations_query_data_and_scale(db):
    op = ContextDSA(num_heads=32, scale_factor=58.0)
    assert op.name == "context_dsa" and op.index_topk == 2048
    expected = sol_of("dsa_context", 2, 64, 32) * 2 ** ratio_pattern(2, 64, 32)
    assert op.query(db, batch_size=2, s=64) == pytest.approx(58.0 * expected, rel=1e-9)
    est = op.estimate(db, 2, 64)
    assert est.source is Source.measured and est.latency_ms == pytest.approx(58.0 * expected, rel=1e-9)


def test_operations_fall_back_through_the_chain_not_to_a_constant(db):
    op = GenerationDSA(num_heads=64, index_topk=1024)
    est = op.estimate(db, 4, 3000)
    assert est.source is Source.transferred
    assert op.query(db, 4, 3000) == pytest.approx(est.latency_ms)
    mla = GenerationMLA(num_heads=64, kvcache_quant_mode=KVCacheQuantMode.fp8)
    assert mla.estimate(db, 2, 64).source is Source.transferred
    assert ContextMLA(num_heads=128).estimate(db, 1, 16, prefix=0).source is Source.measured


def test_operations_reject_unknown_kwargs(db):
    with pytest.raises(ValueError, match="unknown arguments"):
        ContextDSA().query(db, 1, 16, isl=3)
