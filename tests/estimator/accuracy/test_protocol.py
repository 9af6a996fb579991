"""The accuracy protocol's nearest-neighbour baseline (estimator.accuracy.protocol._nearest), by hand."""

import numpy as np
import polars as pl

from estimator.accuracy.protocol import _nearest
from estimator.slices import SLICE_KEYS


def _frame(rows):
    """rows: (num_heads, kv_cache_dtype, batch, seq, latency); other slice keys fixed (gemm_type null)."""
    base = {k: "x" for k in SLICE_KEYS}
    base.update(num_heads=None, prefix=0, gemm_type=None)
    out = [{**base, "num_heads": h, "kv_cache_dtype": kv, "batch_size": b, "seq_len": s, "latency_ms": lat}
           for h, kv, b, s, lat in rows]
    schema = {k: pl.String for k in SLICE_KEYS} | {"num_heads": pl.Int64, "prefix": pl.Int64, "batch_size": pl.Int64,
                                                    "seq_len": pl.Int64, "latency_ms": pl.Float64}
    return pl.DataFrame(out, schema=schema)


def test_nearest_is_same_slice_log2_nearest_first_on_tie():
    train = _frame([
        (16, "fp8", 1, 1024, 1.0), (16, "fp8", 4, 1024, 4.0), (16, "fp8", 1, 4096, 2.0),
        (16, "bf16", 2, 2048, 7.0), (32, "fp8", 2, 2048, 9.0),
    ])
    test = _frame([
        (16, "fp8", 2, 1024, 0.0),   # batch 2 halfway (log2) between 1 and 4: the first (1.0)
        (16, "fp8", 1, 2048, 0.0),   # seq 2048 halfway between 1024 and 4096: the first (1.0)
        (16, "fp8", 4, 4096, 0.0),   # (4, 1024) and (1, 4096) both 2 away in log2: the first (4.0)
        (16, "fp8", 8, 1024, 0.0),   # nearest (4, 1024)
        (16, "bf16", 64, 64, 0.0),   # the only bf16 point, however far
        (64, "fp8", 2, 2048, 0.0),   # no training slice: NaN
    ]).with_row_index("_row")
    got = _nearest(train, test)
    assert np.array_equal(got["pred_ms"].to_numpy(), [1.0, 1.0, 4.0, 4.0, 7.0, np.nan], equal_nan=True)
    assert got.columns == [*test.drop("_row").columns, "pred_ms", "source", "sol_ms"]
    assert got["source"].to_list() == ["nearest"] * 6
