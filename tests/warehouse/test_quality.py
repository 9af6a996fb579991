"""warehouse.quality: each rule on a tiny hand-checkable frame."""

from __future__ import annotations

import math

import polars as pl
import pytest

from warehouse.quality import (
    bad_latency_rows,
    decreasing_latency,
    duplicate_keys,
    high_spread,
    overall_quarantine_share,
    quarantine_reasons,
    quarantine_shares,
    unbalanced_sources,
)
from warehouse.schema import KEY_COLUMNS, PERF_POINT_SCHEMA


def points(rows: list[dict]) -> pl.DataFrame:
    base = {c: None for c in PERF_POINT_SCHEMA}
    base.update(system="h200_sxm", framework="trtllm", version="1", kernel_source="default", num_heads=128,
                batch_size=1, tp_size=1, n=1, spread_rel=0.0)  # fmt: skip
    return pl.DataFrame([{**base, **r} for r in rows], schema=PERF_POINT_SCHEMA)


def test_bad_latency_rows():
    frame = pl.DataFrame({"latency_ms": [1.0, math.nan, math.inf, 0.0, -2.0, None, 3.0]})
    assert bad_latency_rows(frame).height == 5
    assert bad_latency_rows(frame.lazy().head(1)).height == 0


def test_ledger_rules():
    ledger = pl.DataFrame({
        "path": ["a", "b", "c", "d"], "rows_read": [10, 10, 0, 5], "rows_accepted": [10, 8, 0, 4],
        "rows_quarantined": [0, 2, 0, 0], "status": ["ingested", "ingested", "ingested", "superseded"],
    })  # fmt: skip
    assert unbalanced_sources(ledger)["path"].to_list() == ["d"]
    shares = quarantine_shares(ledger)
    assert shares["path"].to_list() == ["a", "b", "c"]
    assert shares["quarantine_share"].to_list() == [0.0, 0.2, 0.0]
    assert overall_quarantine_share(ledger) == pytest.approx(0.1)


def test_duplicate_keys():
    p = points([dict(op="dsa_generation", isl=1, kv_len=256, latency_ms=1.0)] * 2
               + [dict(op="dsa_generation", isl=1, kv_len=512, latency_ms=1.0)])
    dups = duplicate_keys(p)
    assert dups.height == 1 and dups["copies"].to_list() == [2] and dups["kv_len"].to_list() == [256]
    assert set(KEY_COLUMNS) < set(dups.columns)


def test_duplicate_keys_counts_copies_with_null_keys_and_none():
    row = dict(op="dsa_context", isl=128, prefix=None, kv_len=None, latency_ms=1.0)
    p = points([row] * 3 + [dict(row, isl=256)] * 2 + [dict(row, isl=512), dict(row, isl=128, prefix=0)])
    dups = duplicate_keys(p)
    assert dups.select("isl", "prefix", "copies").rows() == [(128, None, 3), (256, None, 2)]
    none = duplicate_keys(p.unique(list(KEY_COLUMNS)))
    assert none.height == 0 and none.schema == dups.schema


def test_decreasing_latency_per_line_and_axis():
    p = points([
        dict(op="dsa_context", isl=256, prefix=0, latency_ms=1.0),
        dict(op="dsa_context", isl=512, prefix=0, latency_ms=0.97),  # -3%: within 5% noise
        dict(op="dsa_context", isl=1024, prefix=0, latency_ms=0.5),  # -48%: flagged
        dict(op="dsa_context", isl=256, prefix=128, latency_ms=0.1),  # other line
        dict(op="dsa_generation", isl=1, kv_len=256, latency_ms=2.0),
        dict(op="dsa_generation", isl=1, kv_len=512, latency_ms=1.0),  # -50%: flagged
    ])  # fmt: skip
    drops = decreasing_latency(p, 0.05)
    assert drops.select("op", "prev_seq", "seq").rows() == [("dsa_context", 512, 1024), ("dsa_generation", 256, 512)]
    assert drops["drop_rel"].to_list() == pytest.approx([1 - 0.5 / 0.97, 0.5])
    with pytest.raises(ValueError, match="tolerance"):
        decreasing_latency(p, 1.5)


def test_high_spread_only_for_repeats():
    p = points([dict(op="mla_generation", kv_len=1, n=3, spread_rel=0.5),
                dict(op="mla_generation", kv_len=2, n=1, spread_rel=0.9),
                dict(op="mla_generation", kv_len=3, n=2, spread_rel=0.1)])  # fmt: skip
    assert high_spread(p, 0.25)["kv_len"].to_list() == [1]
    with pytest.raises(ValueError):
        high_spread(p, -1)


def test_quarantine_reasons_counts():
    q = pl.DataFrame({"reason": ["a", "b", "a"], "source_line": [5, 3, 2]})
    assert quarantine_reasons(q).rows() == [("a", 2, 2), ("b", 1, 3)]
