import math

import polars as pl
import pytest

from estimator.common import FMHAQuantMode, GEMMQuantMode, KVCacheQuantMode, Source
from estimator.lookup.database import PerfDatabase
from estimator.grids.build import build_grids

from estimator.physics import sol
from estimator.physics.calibrate import calibrated_ms
from estimator.slices import model_for
from estimator.physics.specs import load_system
from estimator.physics.transfer import transfer_params

from ..conftest import ARCH, PARAMS, fixed_calibration, ratio_pattern, sol_of, synthetic_points


def truth(op, b, s, h, **kw):
    return sol_of(op, b, s, h, **kw) * 2 ** ratio_pattern(b, s, h)


def test_exact_hit_is_measured(db):
    est = db.estimate("dsa_context", batch_size=2, s=64, num_heads=32)
    assert est.source is Source.measured
    assert est.latency_ms == pytest.approx(truth("dsa_context", 2, 64, 32), rel=1e-9)
    assert [(n.batch_size, n.seq_len, n.weight) for n in est.neighbours] == [(2, 64, 1.0)]


def test_interpolation_between_grid_points_is_exact_for_log_linear_ratio(db):
    est = db.estimate("mla_generation", batch_size=3, s=100, num_heads=48)
    assert est.source is Source.interpolated
    assert est.latency_ms == pytest.approx(truth("mla_generation", 3, 100, 48), rel=1e-9)
    assert len(est.neighbours) == 8 and math.isclose(sum(n.weight for n in est.neighbours), 1.0)


def test_hole_in_grid_is_filled_and_labelled(db):
    # (dsa_context, heads 64, batch 4, isl 256) was left out of the fixture
    est = db.estimate("dsa_context", batch_size=4, s=256, num_heads=64)
    assert est.source is Source.interpolated
    assert est.latency_ms == pytest.approx(truth("dsa_context", 4, 256, 64), rel=1e-9)
    assert est.neighbours[0].source is Source.interpolated


def test_extrapolation_follows_sol_growth_law(db):
    # the fixture's log-ratio is linear in log2(seq): the trend chosen by measurement is the
    # full slope, so extrapolation (SOL growth x continued ratio trend) is exact
    grp = next(g for k, g in db.grids.groups.items() if k[3] == "dsa_context")
    assert {sg.trend for sg in grp.slices.values()} == {1.0}
    est = db.estimate("dsa_context", batch_size=2, s=4096, num_heads=128)  # 4x the last measured: the limit
    assert est.source is Source.extrapolated
    assert est.latency_ms == pytest.approx(truth("dsa_context", 2, 4096, 128), rel=1e-9)
    assert est.latency_ms > db.estimate("dsa_context", batch_size=2, s=1024, num_heads=128).latency_ms
    # in batch the boundary ratio holds: latency follows the SOL alone
    big = db.estimate("dsa_context", batch_size=32, s=64, num_heads=128)
    assert big.source is Source.extrapolated
    assert big.latency_ms == pytest.approx(sol_of("dsa_context", 32, 64, 128) * 2 ** ratio_pattern(8, 64, 128),
                                           rel=1e-9)


def test_transfer_from_sibling_dtype_is_labelled(db):
    est = db.estimate("mla_generation", batch_size=2, s=64, num_heads=64, kv_cache_dtype="fp8")
    assert est.source is Source.transferred
    assert "kv_cache_dtype=fp8->bfloat16" in est.transferred_from
    assert est.latency_ms == pytest.approx(
        sol_of("mla_generation", 2, 64, 64, kv_cache_dtype="fp8") * 2 ** ratio_pattern(2, 64, 64), rel=1e-9)


def test_transfer_to_other_gpu_and_index_topk(points):
    cal = fixed_calibration(points)
    h100 = PerfDatabase(system="h100_sxm", calibration=cal, grids=build_grids(points, cal))
    est = h100.estimate("dsa_generation", batch_size=2, s=64, num_heads=64)
    assert est.source is Source.transferred and "h100_sxm<-h200_sxm (trtllm 1.0)" in est.transferred_from
    # the h200 answer of that shape, moved by the ratio of the transferred calibrated SOLs (estimator/physics/transfer.py)
    moved = transfer_params(PARAMS, load_system("h200_sxm"), load_system("h100_sxm"))
    ks = sol.kernels("dsa_generation", model_for("dsa_generation", ARCH["dsa"]), batch=2, isl=1, prefix=0, kv_len=64,
                     num_heads=64)
    ratio = calibrated_ms(ks, load_system("h100_sxm"), moved) / sol_of("dsa_generation", 2, 64, 64)
    assert est.latency_ms == pytest.approx(
        sol_of("dsa_generation", 2, 64, 64) * 2 ** ratio_pattern(2, 64, 64) * ratio, rel=1e-9)
    with pytest.raises(KeyError, match="h100_sxm"):
        h100.query_generation_dsa(2, 64, 64)
    h200 = PerfDatabase(calibration=cal, grids=build_grids(points, cal))
    topk = h200.estimate("dsa_generation", batch_size=2, s=4000, num_heads=64, index_topk=1024)
    assert topk.source is Source.transferred and "index_topk=1024" in topk.transferred_from


def test_calibrated_sol_alone_when_no_grid(points):
    cal = fixed_calibration(points)
    grids = build_grids(points.filter(pl.col("op") != "mla_context"), cal)
    db = PerfDatabase(calibration=cal, grids=grids)
    est = db.estimate("mla_context", batch_size=1, s=64, num_heads=64)
    assert est.source is Source.sol and est.neighbours == ()
    assert est.latency_ms == pytest.approx(sol_of("mla_context", 1, 64, 64))
    with pytest.raises(KeyError, match="mla_context"):
        db.query_context_mla(1, 64, 64)
    no_cal = PerfDatabase(calibration=cal.filter(pl.col("op") != "mla_context"), grids=grids)
    with pytest.raises(KeyError, match="ops with data"):
        no_cal.estimate("mla_context", batch_size=1, s=64, num_heads=64)


def test_nearest_method(db):
    est = db.estimate("mla_context", batch_size=3, s=70, num_heads=128, method="nearest")
    assert est.latency_ms == pytest.approx(truth("mla_context", 4, 64, 128), rel=1e-9)
    assert est.method == "nearest"


def test_draft_query_api_returns_ms_and_keyerror_for_missing_slice(db):
    ms = db.query_context_dsa(b=2, s=64, num_heads=32, index_n_heads=64, index_topk=2048,
                              kvcache_quant_mode=KVCacheQuantMode.bfloat16, fmha_quant_mode=FMHAQuantMode.bfloat16)
    assert ms == pytest.approx(truth("dsa_context", 2, 64, 32), rel=1e-9)
    assert db.query_generation_dsa(2, 64, 32) == pytest.approx(truth("dsa_generation", 2, 64, 32), rel=1e-9)
    assert db.query_context_mla(2, 64, 32) == pytest.approx(truth("mla_context", 2, 64, 32), rel=1e-9)
    assert db.query_generation_mla(2, 64, 32) == pytest.approx(truth("mla_generation", 2, 64, 32), rel=1e-9)
    with pytest.raises(KeyError, match="fp8_block"):
        db.query_context_dsa(2, 64, 32, gemm_quant_mode=GEMMQuantMode.fp8_block)
    with pytest.raises(KeyError, match="index_topk"):
        db.query_generation_dsa(2, 64, 32, index_topk=512)


def test_estimate_many_matches_scalar(db):
    frame = pl.DataFrame({"batch_size": [1, 3, 8, 16, 2], "isl": [16, 100, 1024, 5000, 64],
                          "num_heads": [32, 48, 128, 128, 64], "prefix": [0, 0, 0, 0, 0], "tag": list("abcde")})
    out = db.estimate_many("dsa_context", frame)
    assert out.columns == frame.columns + ["latency_ms", "source", "sol_ms", "version", "low_ms", "high_ms"]
    for row in out.iter_rows(named=True):
        est = db.estimate("dsa_context", batch_size=row["batch_size"], s=row["isl"], num_heads=row["num_heads"])
        assert row["latency_ms"] == pytest.approx(est.latency_ms, rel=1e-5)
        assert row["source"] == est.source.value


def test_estimate_many_per_row_categories(db):
    frame = pl.DataFrame({"batch_size": [2, 2], "kv_len": [64, 64], "num_heads": [64, 64],
                          "kv_cache_dtype": ["bfloat16", "fp8"]})
    out = db.estimate_many("mla_generation", frame)
    assert out["source"].to_list() == ["measured", "transferred"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0, s=64, num_heads=32), "batch_size"),
    (dict(batch_size=-1, s=64, num_heads=32), "batch_size"),
    (dict(batch_size=1.5, s=64, num_heads=32), "batch_size"),
    (dict(batch_size=1, s=0, num_heads=32), "s must"),
    (dict(batch_size=1, s=64, num_heads=0), "num_heads"),
    (dict(batch_size=1, s=64, num_heads=32, prefix=-2), "prefix"),
    (dict(batch_size=1, s=64, num_heads=32, kv_cache_dtype="int4"), "bfloat16, float16, fp8"),
    (dict(batch_size=1, s=64, num_heads=32, gemm_type="nvfp4"), "fp8_block"),
    (dict(batch_size=1, s=64, num_heads=32, attn_dtype="fp4"), "FMHAQuantMode"),
    (dict(batch_size=1, s=64, num_heads=32, architecture="LlamaForCausalLM"), "DeepseekV32ForCausalLM"),
    (dict(batch_size=1, s=64, num_heads=32, method="cubic"), "interp, nearest"),
    (dict(batch_size=1, isl=64, kv_len=3, num_heads=32), "exactly one"),
])
def test_bad_scalar_input_names_the_argument(db, kwargs, match):
    with pytest.raises(ValueError, match=match):
        db.estimate("dsa_context", **kwargs)


def test_bad_op_system_backend_version(points, db):
    cal = fixed_calibration(points)
    grids = build_grids(points, cal)
    with pytest.raises(ValueError, match="dsa_context"):
        db.estimate("gqa_context", batch_size=1, s=1, num_heads=1)
    with pytest.raises(ValueError, match="h200_sxm"):
        PerfDatabase(system="a100", calibration=cal, grids=grids)
    with pytest.raises(ValueError, match="trtllm"):
        PerfDatabase(backend="onnx", calibration=cal, grids=grids)
    with pytest.raises(ValueError, match="valid: 1.0"):
        PerfDatabase(version="9.9", calibration=cal, grids=grids)
    with pytest.raises(ValueError, match="backends with data: trtllm"):
        PerfDatabase(backend="vllm", calibration=cal, grids=grids)
    with pytest.raises(TypeError, match="version must be a string such as '1.0', got float 1.0"):
        PerfDatabase(version=1.0, calibration=cal, grids=grids)  # said "unknown version 1.0; valid: 1.0"


def test_generation_rejects_prefix(db):
    with pytest.raises(ValueError, match="prefix"):
        db.estimate("dsa_generation", batch_size=1, s=64, num_heads=32, prefix=16)


@pytest.mark.parametrize("frame, match", [
    (pl.DataFrame({"batch_size": [1, 0], "isl": [16, 16], "num_heads": [32, 32]}), "row 1: column batch_size"),
    (pl.DataFrame({"batch_size": [1], "isl": [16.5], "num_heads": [32]}), "isl"),
    (pl.DataFrame({"batch_size": [1], "isl": [None], "num_heads": [32]}), "row 0: column isl is empty"),
    (pl.DataFrame({"batch_size": [1], "num_heads": [32]}), "missing: isl"),
])
def test_bad_frame_input(db, frame, match):
    with pytest.raises(ValueError, match=match):
        db.estimate_many("dsa_context", frame)


def test_no_nan_anywhere_in_a_wide_sweep(db):
    import itertools

    frame = pl.DataFrame([dict(batch_size=b, isl=s, num_heads=h) for b, s, h in
                          itertools.product((1, 5, 300, 4096), (1, 7, 50000), (1, 24, 128))])
    out = db.estimate_many("dsa_context", frame)
    assert out["latency_ms"].is_nan().sum() == 0 and (out["latency_ms"] > 0).all()


def test_synthetic_fixture_shape():
    assert synthetic_points(ops=("mla_context",)).height == 3 * 4 * 4


@pytest.mark.parametrize("bad", [float("nan"), 0, -5, 2.5, "many"])
def test_estimate_many_rejects_bad_index_topk_with_one_line(db, bad):
    frame = pl.DataFrame({"batch_size": [1], "kv_len": [100], "num_heads": [128]})
    with pytest.raises(ValueError, match="index_topk must be a positive integer"):
        db.estimate_many("dsa_generation", frame, index_topk=bad)


def test_frames_given_for_the_tables_are_checked(points):
    """grids= without calibration= was dropped in favour of the warehouse's tables without a word; frames
    with the wrong columns died deep in polars (ColumnNotFoundError) or a KeyError; transfer_overheads with
    the wrong columns was silently ignored."""
    from estimator.grids.build import build_grids
    from estimator.lookup.database import PerfDatabase

    from ..conftest import fixed_calibration

    cal = fixed_calibration(points)
    grids = build_grids(points, cal)
    with pytest.raises(ValueError, match=r"^pass calibration= and grids= together"):
        PerfDatabase(grids=grids)
    with pytest.raises(ValueError, match=r"^calibration lacks column\(s\) system, framework"):
        PerfDatabase(calibration=pl.DataFrame({"a": [1]}), grids=grids)
    with pytest.raises(ValueError, match=r"^intervals lacks column\(s\) bucket of its table"):
        PerfDatabase(calibration=cal, grids=grids, intervals=pl.DataFrame({"op": ["x"], "provenance": ["y"]}).join(
            pl.DataFrame({c: [1.0] for c in ("d_lo", "d_hi", "n", "q_lo", "q_hi", "expected_error_pct",
                                             "coverage_pct", "n_heldout", "borrowed_from", "grow_from")}),
            how="cross"))
    with pytest.raises(ValueError, match=r"^transfer_overheads lacks column\(s\) framework"):
        PerfDatabase("h100_sxm", calibration=cal, grids=grids, transfer_overheads=pl.DataFrame({"a": [1]}))
    with pytest.raises(TypeError, match="^intervals must be a polars DataFrame, got dict"):
        PerfDatabase(calibration=cal, grids=grids, intervals={"op": "x"})
    empty = PerfDatabase(calibration=cal, grids=grids, intervals=pl.DataFrame())  # no interval model: NaN bounds
    assert math.isnan(empty.estimate("dsa_context", batch_size=2, s=64, num_heads=32).low_ms)
