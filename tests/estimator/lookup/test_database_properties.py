"""Property tests: the scalar and vectorised paths agree; answers are positive and labelled."""

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from estimator.common import Source

OPS = ("dsa_context", "dsa_generation", "mla_context", "mla_generation")


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(OPS), b=st.integers(1, 4096), s=st.integers(1, 150_000), h=st.integers(1, 128),
       prefix=st.integers(0, 4096), kv=st.sampled_from(["bfloat16", "fp8"]))
def test_scalar_and_vector_paths_agree(db, op, b, s, h, prefix, kv):
    pre = prefix if "context" in op else 0
    est = db.estimate(op, batch_size=b, s=s, num_heads=h, prefix=pre, kv_cache_dtype=kv)
    assert est.latency_ms > 0 and est.sol_ms > 0 and isinstance(est.source, Source)
    assert est.latency_ms == pytest.approx(est.sol_ms * 2 ** est.log2_ratio, rel=1e-12)
    seq = "isl" if "context" in op else "kv_len"
    frame = pl.DataFrame({"batch_size": [b], seq: [s], "num_heads": [h], "prefix": [pre], "kv_cache_dtype": [kv]})
    row = db.estimate_many(op, frame).row(0, named=True)
    assert row["latency_ms"] == pytest.approx(est.latency_ms, rel=1e-5)
    assert row["source"] == est.source.value


def test_lazy_package_exports():
    import estimator

    assert estimator.PerfDatabase.__name__ == "PerfDatabase"
    assert estimator.Source.measured.value == "measured"
