"""Intervals of transferred answers: the fit and its leave-one-system-out score
(estimator/accuracy/transfer_intervals.py)."""

from __future__ import annotations

import polars as pl
import pytest

from estimator.accuracy.transfer_intervals import (
    fit_transfer_intervals, loso_coverage, transfer_residuals,
)


def _resid(target, source, values, framework="trtllm", op="mla_context", rel="same_generation"):
    return pl.DataFrame({"target": target, "from_system": source, "framework": framework, "version": "1.0",
                         "op": op, "relation": rel, "resid": values})


def test_residuals_are_log2_measured_over_transferred_and_know_the_generation():
    errors = pl.DataFrame({"target": ["h100_sxm", "b200_sxm"], "from_system": ["h200_sxm", "h200_sxm"],
                           "framework": "trtllm", "version": "1.0", "op": "mla_context",
                           "measured_ms": [2.0, 1.0], "pred_ms": [1.0, 4.0]})
    got = transfer_residuals(errors).sort("target")
    assert got["resid"].to_list() == [-2.0, 1.0]  # b200 measured 1 for 4 predicted; h100 2 for 1
    assert got["relation"].to_list() == ["across_generations", "same_generation"]


def test_relation_tells_a_grace_hosted_system_from_an_x86_one():
    # GB200/GB300 launch their kernels from a Grace CPU (spec key host: grace), B200/H200 from x86
    errors = pl.DataFrame({"target": ["gb200", "gb200", "gb300", "b300_sxm"],
                           "from_system": ["b200_sxm", "h200_sxm", "gb200", "b200_sxm"],
                           "framework": "trtllm", "version": "1.0", "op": "mla_context",
                           "measured_ms": 1.0, "pred_ms": 1.0})
    got = dict(transfer_residuals(errors).select(pl.concat_str("target", "from_system", separator="<-"),
                                                 "relation").iter_rows())
    assert got == {"gb200<-b200_sxm": "same_generation_other_host",
                   "gb200<-h200_sxm": "across_generations_other_host",
                   "gb300<-gb200": "same_generation", "b300_sxm<-b200_sxm": "same_generation"}


def test_fit_takes_the_80pct_order_statistic_of_the_error_per_backend_op_relation_and_pools():
    # 24 residuals, 12 of each sign: the 20th smallest |residual| (ceil(25 x 0.8)) bounds both sides
    resid = pl.concat([_resid("h100_sxm", "h200_sxm", [s * i / 100 for i in range(1, 13) for s in (1, -1)]),
                       _resid("gb200", "b200_sxm", [1.0] * 24, framework="vllm")])
    table = fit_transfer_intervals(resid)
    own = table.filter(framework="trtllm").row(0, named=True)
    assert (own["n"], own["q_lo"], own["q_hi"]) == (24, -0.10, 0.10)
    assert own["pairs"] == "h100_sxm<-h200_sxm" and own["relation"] == "same_generation"
    pooled = table.filter(framework="*", relation="*").row(0, named=True)
    assert pooled["n"] == 48 and pooled["pairs"] == "gb200<-b200_sxm, h100_sxm<-h200_sxm"
    assert pooled["q_hi"] == 1.0


def test_coverage_of_a_target_comes_from_intervals_fitted_without_it():
    near = [i / 100 for i in range(-9, 10)]  # residuals within +-0.09
    resid = pl.concat([_resid("h100_sxm", "h200_sxm", near), _resid("h200_sxm", "a100_sxm", near),
                       _resid("gb200", "b200_sxm", [0.5] * 19), _resid("b200_sxm", "h100_sxm", [0.2] * 19)])
    cov = loso_coverage(resid).filter(op="*")
    by_target = dict(zip(cov["target"], cov["coverage_pct"]))
    # gb200 is 0.5 off: the intervals fitted on the other pairs (none holds gb200) miss every point
    assert by_target["gb200"] == 0.0
    # h100's interval leaves out h100<-h200 and b200<-h100: from h200<-a100 and gb200<-b200 (38 residuals,
    # the 32nd smallest |residual| is 0.5) it holds all of h100's points
    assert by_target["h100_sxm"] == 100.0
    # b200's leaves out gb200<-b200 and b200<-h100: +-0.08 from the two near pairs misses its 0.2
    assert by_target["b200_sxm"] == 0.0


def test_coverage_states_the_median_width_of_the_intervals_it_scores():
    # b200's interval is fitted on gb200<-h100 and h100<-h200: 38 residuals, the 32nd smallest |residual|
    # is 0.5, a width of 2^0.5 - 2^-0.5 = 70.7% of the transferred answer; h100's on b200<-gb200 alone (+-0.25)
    resid = pl.concat([_resid("gb200", "h100_sxm", [0.5, -0.5] * 9 + [0.5]),
                       _resid("h100_sxm", "h200_sxm", [0.1] * 19),
                       _resid("b200_sxm", "gb200", [0.25] * 19)])
    cov = loso_coverage(resid).filter(op="*")
    width = dict(zip(cov["target"], cov["median_width_pct"]))
    assert width["b200_sxm"] == pytest.approx(70.71, abs=0.01)
    assert width["h100_sxm"] == pytest.approx(34.83, abs=0.01)  # 2^0.25 - 2^-0.25
