"""Launch overhead between launch classes (estimator/physics/transfer.py): measured on other systems of
the target's and the source's classes, never on their own rows, and folded into the fitted overhead."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from estimator.grids.build import build_grids
from estimator.physics.calibrate import CalibrationParams, params_from_frame
from estimator.physics.specs import load_system
from estimator.physics.transfer import (
    OVERHEAD_MIN_RATIO, OVERHEAD_SCHEMA, TransferRule, class_overhead_ratios, launch_class, overhead_lookup,
    overhead_multipliers, overhead_ratios, proxy_pairs,
)
from estimator.lookup.engine import estimate_group
from estimator.slices import model_for

from ..conftest import fixed_calibration, synthetic_points

SYSTEMS = ["h100_sxm", "h200_sxm", "b200_sxm", "b300_sxm", "gb200", "gb300"]


def _as(points: pl.DataFrame, system: str, scale: float = 1.0, floor_add: float = 0.0) -> pl.DataFrame:
    return points.with_columns(pl.lit(system).alias("system"), pl.col("latency_ms") * scale + floor_add)


@pytest.fixture(scope="module")
def base():
    return synthetic_points(ops=("dsa_context",))


def test_launch_classes_of_the_published_systems():
    assert [launch_class(load_system(s)) for s in SYSTEMS] == [
        "hopper/x86", "hopper/x86", "blackwell/x86", "blackwell/x86", "blackwell/grace", "blackwell/grace"]


def test_proxies_are_other_systems_of_the_two_classes_and_none_within_a_class():
    assert proxy_pairs("gb200", "b200_sxm", SYSTEMS) == [("gb300", "b300_sxm")]
    assert proxy_pairs("b200_sxm", "h200_sxm", SYSTEMS) == [("b300_sxm", "h100_sxm")]
    assert proxy_pairs("h100_sxm", "h200_sxm", SYSTEMS) == []  # one class: the overhead is kept
    assert proxy_pairs("gb200", "b200_sxm", ["gb200", "b200_sxm", "b300_sxm"]) == []  # no GB300: no proxy


def test_ratio_is_the_proxies_launch_bound_ratio_and_never_reads_target_or_source(base):
    # GB300 = B300 + 1 ms at every shape: its fastest shapes take (fast + 1) / fast as long
    b300 = _as(base, "b300_sxm")
    gb300 = _as(base, "gb300", floor_add=1.0)
    lat = b300["latency_ms"].to_numpy()
    fast = lat[lat <= np.quantile(lat, 0.1, method="lower")]  # the fastest 10% of the shapes (either system)
    want = 2 ** float(np.median(np.log2((fast + 1.0) / fast)))
    pts = pl.concat([b300, gb300, _as(base, "b200_sxm", 7.0), _as(base, "gb200", 0.01)])
    got = overhead_ratios(pts, "gb200", "b200_sxm")
    assert got.columns == list(OVERHEAD_SCHEMA) and got.height == 1
    assert got["overhead_ratio"][0] == pytest.approx(want, rel=1e-9)
    assert got["pairs"][0] == "gb300<-b300_sxm"
    # the target's and source's own rows do not move it
    other = pl.concat([b300, gb300, _as(base, "b200_sxm", 0.1), _as(base, "gb200", 50.0)])
    assert overhead_ratios(other, "gb200", "b200_sxm")["overhead_ratio"][0] == got["overhead_ratio"][0]


def test_ratio_is_symmetric_between_the_two_directions(base):
    b300, gb300 = _as(base, "b300_sxm"), _as(base, "gb300", 1.7, floor_add=0.3)
    pts = pl.concat([b300, gb300])
    there = overhead_ratios(pts, "gb200", "b200_sxm")["overhead_ratio"][0]
    back = overhead_ratios(pts, "b200_sxm", "gb200")["overhead_ratio"][0]
    assert there > 1.7 and back == pytest.approx(1 / there, rel=1e-9)


def test_class_table_and_lookup_keep_ratios_within_the_scatter_of_one_class(base):
    pts = pl.concat([_as(base, "b300_sxm"), _as(base, "gb300", 3.0), _as(base, "b200_sxm"),
                     _as(base, "gb200", 1.2)])
    table = class_overhead_ratios(pts)
    row = table.filter((pl.col("target_class") == "blackwell/grace") & (pl.col("source_class") == "blackwell/x86"))
    assert row["overhead_ratio"][0] == pytest.approx(math.sqrt(3.0 * 1.2), rel=1e-6)  # geometric mean
    gb200, b200, h200 = load_system("gb200"), load_system("b200_sxm"), load_system("h200_sxm")
    assert overhead_lookup(table, gb200, b200) == {("trtllm", "1.0", "dsa_context"): pytest.approx(math.sqrt(3.6))}
    small = table.with_columns(pl.lit(OVERHEAD_MIN_RATIO * 0.9).alias("overhead_ratio"))
    assert overhead_lookup(small, gb200, b200) == {}  # within one class's scatter: kept
    assert overhead_lookup(table, b200, b200) == {} and overhead_lookup(None, gb200, h200) == {}


def test_rule_params_scale_only_the_overhead():
    p = CalibrationParams(eff={"attention": (0.5, 0.5)}, overhead_ms=0.2, combine_p=2.0)
    rule = TransferRule(load_system("b200_sxm"), load_system("gb200"))
    kept, moved = rule.params(p), rule.params(p, 3.0)
    assert moved.eff == kept.eff and moved.combine_p == kept.combine_p
    assert kept.overhead_ms == pytest.approx(0.2) and moved.overhead_ms == pytest.approx(0.6)
    assert rule.params(p, float("nan")).overhead_ms == pytest.approx(0.2)


def test_multiplier_moves_the_launch_bound_shapes_by_the_ratio(base):
    src = _as(base, "h200_sxm")
    cal = fixed_calibration(src)
    params = params_from_frame(cal)
    grids = build_grids(src, cal)
    rule = TransferRule(load_system("h200_sxm"), load_system("b200_sxm"))
    mult = overhead_multipliers(grids, params, rule, {("trtllm", "1.0", "dsa_context"): 0.35})
    (key, m), = mult.items()
    assert key == ("h200_sxm", "trtllm", "1.0", "dsa_context", "default") and 0 < m < 1
    # on the source's fastest 10% of measured cells the calibrated SOL moves by 0.35 (median), where the
    # kept overhead moves it less: B200's peaks alone take part of the way
    cells = grids.filter(pl.col("measured_log2_ratio").is_not_null())
    fast = cells.filter(pl.col("latency_ms") <= pl.col("latency_ms").quantile(0.1, "lower"))
    kw = dict(gemm_type="bfloat16", kv_cache_dtype="bfloat16", kernel_source="default",
              batch=fast["batch_size"].to_numpy().astype(float), isl=fast["seq_len"].to_numpy().astype(float),
              kv_len=fast["seq_len"].to_numpy().astype(float), prefix=np.zeros(fast.height),
              num_heads=fast["num_heads"].to_numpy().astype(float))
    model = model_for("dsa_context", fast["architecture"][0])
    s = estimate_group(None, "dsa_context", model, rule.source, params[key], **kw)[0]
    moved = estimate_group(None, "dsa_context", model, rule.target, rule.params(params[key], m), **kw)[0]
    kept = estimate_group(None, "dsa_context", model, rule.target, rule.params(params[key]), **kw)[0]
    assert float(np.median(moved / s)) == pytest.approx(0.35, rel=0.01)
    assert float(np.median(kept / s)) > 0.4
    assert overhead_multipliers(grids, params, rule, {}) == {}


def test_database_moves_the_overhead_by_the_warehouse_table_across_launch_classes(base):
    from estimator.lookup.database import PerfDatabase

    src = _as(base, "b200_sxm")
    cal, grids = fixed_calibration(src), build_grids(src, fixed_calibration(src))
    table = pl.DataFrame([("trtllm", "1.0", "dsa_context", "blackwell/grace", "blackwell/x86", 2.0, 100, "x")],
                         schema=OVERHEAD_SCHEMA, orient="row")
    kept = PerfDatabase("gb200", calibration=cal, grids=grids, from_system="b200_sxm")
    moved = PerfDatabase("gb200", calibration=cal, grids=grids, from_system="b200_sxm", transfer_overheads=table)
    small, large = dict(batch_size=1, s=128, num_heads=16), dict(batch_size=64, s=16384, num_heads=128)
    grow = moved.estimate("dsa_context", **small).latency_ms / kept.estimate("dsa_context", **small).latency_ms
    assert 1.7 < grow < 2.3  # a launch-bound shape: about the table's 2x (Grace host)
    big = moved.estimate("dsa_context", **large).latency_ms / kept.estimate("dsa_context", **large).latency_ms
    assert 1.0 <= big < 1.1  # a long one hides the launch cost
    # one launch class (H100 from H200) never reads the table
    h = _as(base, "h200_sxm")
    hc, hg = fixed_calibration(h), build_grids(h, fixed_calibration(h))
    anyway = table.with_columns(pl.lit("hopper/x86").alias("target_class"), pl.lit("hopper/x86").alias("source_class"))
    a = PerfDatabase("h100_sxm", calibration=hc, grids=hg, from_system="h200_sxm", transfer_overheads=anyway)
    b = PerfDatabase("h100_sxm", calibration=hc, grids=hg, from_system="h200_sxm")
    assert a.estimate("dsa_context", **small).latency_ms == b.estimate("dsa_context", **small).latency_ms
