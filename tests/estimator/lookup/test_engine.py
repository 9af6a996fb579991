"""estimate_group (estimator.lookup.engine): grid ratio x calibrated SOL, the SOL fallback, provenance codes."""

import numpy as np
import pytest

from estimator.grids import interp
from estimator.lookup.engine import estimate_group
from estimator.physics.specs import load_system
from estimator.slices import model_for
from tests.estimator.conftest import ARCH, PARAMS, sol_of, two_by_two_group

OP = "dsa_context"
MODEL = model_for(OP, ARCH["dsa"])
SYSTEM = load_system("h200_sxm")


def _run(grp, batch, isl, heads, **kw):
    n = len(batch)
    return estimate_group(grp, OP, MODEL, SYSTEM, PARAMS, gemm_type="bfloat16", kv_cache_dtype="bfloat16",
                          batch=batch, isl=isl, prefix=np.zeros(n), kv_len=np.zeros(n), num_heads=heads, **kw)


def test_without_grids_the_calibrated_sol_answers():
    lat, code, sol_ms = _run(None, [1, 8], [512, 4096], [128, 128])
    assert sol_ms == pytest.approx([sol_of(OP, 1, 512, 128), sol_of(OP, 8, 4096, 128)], rel=1e-9)
    assert np.array_equal(lat, sol_ms) and lat is not sol_ms
    assert code.tolist() == [interp.SOL, interp.SOL]


def test_grid_ratio_scales_the_sol():
    # on the (4, 128) cell: 2**1.2 x SOL; batch 3 is halfway in raw batch (batch_power 1): 2**0.5 x SOL
    lat, code, sol_ms = _run(two_by_two_group(), [4, 3], [128, 64], [64, 64])
    assert lat[0] == pytest.approx(sol_of(OP, 4, 128, 64) * 2**1.2, rel=1e-9)
    assert lat[1] == pytest.approx(sol_of(OP, 3, 64, 64) * 2**0.5, rel=1e-9)
    assert code.tolist() == [interp.MEASURED, interp.INTERPOLATED]


def test_outside_the_grid_is_extrapolated():
    # 32 heads is below the group's one heads value: the boundary ratio holds, labelled extrapolated
    lat, code, _ = _run(two_by_two_group(), [2], [64], [32])
    assert lat[0] == pytest.approx(sol_of(OP, 2, 64, 32), rel=1e-9) and code.tolist() == [interp.EXTRAPOLATED]


def test_transferred_marks_every_grid_answer():
    # measured, interpolated and extrapolated answers from another system's grid all read 'transferred'
    lat, code, _ = _run(two_by_two_group(), [2, 3, 2], [64, 64, 64], [64, 64, 32], transferred=True)
    assert code.tolist() == [interp.TRANSFERRED] * 3
    assert lat[0] == pytest.approx(sol_of(OP, 2, 64, 64), rel=1e-9)
