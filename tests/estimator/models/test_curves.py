"""Attention curves, model comparisons and crossovers (estimator.models.curves)."""

from __future__ import annotations

import numpy as np
import pytest

from estimator.models.config import ModelConfig
from estimator.models.curves import attention_curve, compare_models, find_crossover, fine_grid
from estimator.models.model import get_model
from tests.estimator.models.fixture import context_ms, model_db, model_home  # noqa: F401

V3, V32 = "deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-V3.2"


# ---- compare and crossover ------------------------------------------------------------------

def test_compare_crossover_on_fixture(model_db):
    models = [get_model(p, "h200_sxm", "trtllm", ModelConfig(tp_size=8)) for p in (V3, V32)]
    seq = fine_grid(1024, 65536)
    df = compare_models(models, seq, batch_size=1, db=model_db)
    assert df.height == 2 * 2 * seq.size
    a = df.filter((df["model"] == V3) & (df["phase"] == "context")).sort("seq")
    b = df.filter((df["model"] == V32) & (df["phase"] == "context")).sort("seq")
    c = find_crossover(a["seq"].to_numpy(), a["model_ms"].to_numpy(), b["model_ms"].to_numpy(), phase="context")
    # 1e-6 isl^2 = 0.004 isl at isl 4000; measured at 2048 and 4096 bracket it
    assert c.status == "crosses" and 2048 < c.seq < 4096
    assert c.seq == pytest.approx(4000, rel=0.05)
    a = df.filter((df["model"] == V3) & (df["phase"] == "generation")).sort("seq")
    b = df.filter((df["model"] == V32) & (df["phase"] == "generation")).sort("seq")
    g = find_crossover(a["seq"].to_numpy(), a["model_ms"].to_numpy(), b["model_ms"].to_numpy())
    assert g.status == "crosses" and 16384 < g.seq < 32768
    assert g.seq == pytest.approx(0.05 / 1.8e-6, rel=0.05)


def test_attention_curve_matches_estimate(model_db):
    m = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    total, src = attention_curve(m, "context", [1024, 16384, 32768], 1, db=model_db)
    assert total[0] == pytest.approx(61 * context_ms("dsa", 1024), rel=1e-6)
    assert list(src) == ["measured", "measured", "extrapolated"]


@pytest.mark.parametrize("other, status", [([2, 3, 4], "never cheaper"), ([0.5, 1, 2], "always cheaper")])
def test_find_crossover_edges(other, status):
    c = find_crossover([1, 2, 4], [1, 2, 4], other)
    assert c.status == status and c.seq is None


def test_find_crossover_interpolates_in_log_space():
    # baseline x^2, other 4x: equal at x = 4, bracketed by 2 and 8
    c = find_crossover([2, 8], [4, 64], [8, 32])
    assert c.status == "crosses" and c.seq == pytest.approx(4.0)


def test_fine_grid():
    g = fine_grid(1024, 131072, 8)
    assert g[0] == 1024 and g[-1] == 131072 and 2048 in g and g.size == 57


def test_attention_curve_bad_input(model_db):
    m = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    with pytest.raises(ValueError, match="unknown phase 'prefill'"):
        attention_curve(m, "prefill", [1024], 1, db=model_db)
    with pytest.raises(ValueError, match="sequence lengths"):
        attention_curve(m, "context", [0], 1, db=model_db)


def test_fine_grid_by_hand():
    # two points per octave: 1024, 1024 * 2**0.5 = 1448.2, 2048, 2896.3, 4096
    assert fine_grid(1024, 4096, 2).tolist() == [1024, 1448, 2048, 2896, 4096]


def test_crossover_by_hand():
    # log(other / baseline) goes from +ln 2 at 1000 to -ln 2 at 2000: zero halfway in log space,
    # at sqrt(1000 * 2000) = 1414.21
    c = find_crossover([1000, 2000], [1.0, 1.0], [2.0, 0.5], baseline="a", other="b", phase="context")
    assert (c.status, c.baseline, c.other, c.phase, c.lo, c.hi) == ("crosses", "a", "b", "context", 1000, 2000)
    assert c.seq == pytest.approx(1414.2136, rel=1e-6)


def test_compare_needs_a_model():
    with pytest.raises(ValueError, match="compare needs at least one model"):
        compare_models([])


@pytest.mark.parametrize("seq", [[1024.5], [float("nan")], ["a"], [[1024]], [], [2**31]])
def test_sequence_lengths_a_cast_would_change_are_refused(model_db, seq):
    """[1024.5] was truncated to 1024 and answered; nan and 'a' died in numpy's int cast."""
    m = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    with pytest.raises(ValueError, match=r"^sequence lengths must be a non-empty list of integers 1\.\.2147483647"):
        attention_curve(m, "context", seq, 1, db=model_db)


@pytest.mark.parametrize("seq, base, other, says", [
    ([8, 2], [64, 4], [32, 8], "sequence lengths must increase, got [8, 2]"),
    ([2, 8], [4, float("nan")], [8, 32], "baseline_ms must hold 2 finite latencies > 0"),
    ([2, 8], [4, 64], [8], "other_ms must hold 2 finite latencies > 0"),
    ([2, 8], [4, 64], [8, -1], "other_ms must hold 2 finite latencies > 0"),
])
def test_find_crossover_refuses_what_it_would_answer_wrongly(seq, base, other, says):
    """Unsorted lengths gave a crossover range and point from array order; a nan latency read as 'never
    cheaper'; lengths of unequal size were a numpy broadcast error."""
    with pytest.raises(ValueError) as info:
        find_crossover(seq, base, other)
    assert str(info.value).startswith(says)


def test_attention_curve_refuses_a_database_of_another_system(model_home):
    from estimator.lookup.database import PerfDatabase

    m = get_model(V32, "h200_sxm", "trtllm", ModelConfig(tp_size=8))
    with pytest.raises(ValueError, match="db answers for system 'h100_sxm'"):
        compare_models([m], [1024], db=PerfDatabase("h100_sxm", "trtllm", home=model_home))
