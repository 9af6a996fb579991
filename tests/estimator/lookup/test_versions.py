"""Per-op versions (docs/limits.md): PEP 440 order, the default per op and slice, named errors."""

import polars as pl
import pytest

from estimator.lookup.database import PerfDatabase, VersionError
from estimator.lookup.versions import sort_versions

from ..conftest import fixed_calibration, synthetic_points


def test_pep440_order_and_fallback_for_other_strings():
    assert sort_versions(["1.3.0", "1.3.0rc23", "1.3.0rc20", "1.10.0", "1.9", "main", "nightly-10", "nightly-2"]) == [
        "main", "nightly-2", "nightly-10", "1.3.0rc20", "1.3.0rc23", "1.3.0", "1.9", "1.10.0"]


@pytest.fixture(scope="module")
def two_versions():
    """1.0: every op; 1.3.0rc23 and 1.3.0 (newer, PEP 440): dsa_generation only, 1.3.0 only in fp8 kv cache."""
    base = synthetic_points()
    rc = synthetic_points(ops=("dsa_generation",)).with_columns(pl.lit("1.3.0rc23").alias("version"),
                                                                pl.col("latency_ms") * 2)
    final = synthetic_points(ops=("dsa_generation",), kv_dtypes=("fp8",)).with_columns(
        pl.lit("1.3.0").alias("version"), pl.col("latency_ms") * 3)
    pts = pl.concat([base, rc, final])
    from estimator.grids.build import build_grids

    cal = fixed_calibration(pts)
    return cal, build_grids(pts, cal)


def test_default_is_the_newest_version_with_data_for_the_op_and_slice(two_versions):
    cal, grids = two_versions
    db = PerfDatabase(calibration=cal, grids=grids)
    assert db.version == "1.3.0" and db.versions_for("dsa_generation") == ["1.0", "1.3.0rc23", "1.3.0"]
    # ops the newer versions lack answer from their own newest version
    assert db.estimate("dsa_context", batch_size=2, s=64, num_heads=32).version == "1.0"
    assert db.estimate("mla_generation", batch_size=2, s=64, num_heads=32).version == "1.0"
    # bf16 kv cache: 1.3.0 has no such slice, 1.3.0rc23 (sorted before 1.3.0 by PEP 440) has
    bf16 = db.estimate("dsa_generation", batch_size=2, s=64, num_heads=32)
    assert bf16.version == "1.3.0rc23" and bf16.source.value == "measured"
    fp8 = db.estimate("dsa_generation", batch_size=2, s=64, num_heads=32, kv_cache_dtype="fp8")
    assert fp8.version == "1.3.0" and fp8.source.value == "measured"
    out = db.estimate_many("dsa_generation", pl.DataFrame({"batch_size": [2, 2], "kv_len": [64, 64],
                                                           "num_heads": [32, 32], "kv_cache_dtype": ["bfloat16", "fp8"]}))
    assert out["version"].cast(pl.String).to_list() == ["1.3.0rc23", "1.3.0"]
    assert out["latency_ms"].to_list() == pytest.approx([bf16.latency_ms, fp8.latency_ms], rel=1e-5)


def test_explicit_version_without_data_for_the_op_is_a_named_error(two_versions):
    cal, grids = two_versions
    db = PerfDatabase(calibration=cal, grids=grids, version="1.3.0rc23")
    assert db.estimate("dsa_generation", batch_size=2, s=64, num_heads=32).version == "1.3.0rc23"
    with pytest.raises(VersionError, match="version 1.3.0rc23 has no dsa_context data for h200_sxm/trtllm; "
                                           "versions with dsa_context data: 1.0$"):
        db.estimate("dsa_context", batch_size=2, s=64, num_heads=32)
    with pytest.raises(VersionError, match="row 0: version 1.3.0rc23 has no mla_context data"):
        db.estimate_many("mla_context", pl.DataFrame({"batch_size": [2], "isl": [64], "num_heads": [32]}))
    with pytest.raises(VersionError, match="unknown version '2.0' for h200_sxm/trtllm; valid: 1.0, 1.3.0rc23, 1.3.0"):
        PerfDatabase(calibration=cal, grids=grids, version="2.0")


def test_model_rollup_names_the_versions_its_ops_answered_from(two_versions):
    from estimator.models.config import ModelConfig
    from estimator.models.model import get_model

    cal, grids = two_versions
    db = PerfDatabase(calibration=cal, grids=grids)
    m = get_model("deepseek-ai/DeepSeek-V3.2", "h200_sxm", "trtllm", ModelConfig(tp_size=4))
    est = m.estimate(isl=100, osl=2, batch_size=1, db=db)
    assert est.version == "1.0+1.3.0rc23"  # context from 1.0 (the only one with dsa_context), decode from rc23
    assert m.estimate(isl=100, osl=0, batch_size=1, db=db).version == "1.0"
