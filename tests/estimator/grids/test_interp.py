import numpy as np
import pytest

from estimator.grids import interp

from .. import oracles


def test_bracket_inside_and_clamped_outside():
    axis = np.array([0.0, 1.0, 3.0])
    i0, i1, w, out = interp.bracket(axis, np.array([0.5, 2.0, 3.0, -1.0, 5.0]))
    assert i0.tolist() == [0, 1, 1, 0, 1]
    assert i1.tolist() == [1, 2, 2, 1, 2]
    assert np.allclose(w, [0.5, 0.5, 1.0, 0.0, 1.0])
    assert out.tolist() == [False, False, False, True, True]


def test_bracket_single_value_axis():
    i0, i1, w, out = interp.bracket(np.array([2.0]), np.array([2.0, 3.0]))
    assert i0.tolist() == [0, 0] and w.tolist() == [0.0, 0.0] and out.tolist() == [False, True]


def test_bilinear_hand_checked():
    grid = np.array([[0.0, 1.0], [2.0, 3.0]])
    ax = np.array([0.0, 1.0])
    bi0, bi1, bw, _ = interp.bracket(ax, np.array([0.5]))
    si0, si1, sw, _ = interp.bracket(ax, np.array([0.25]))
    # (1-0.5)*(0*0.75+1*0.25) + 0.5*(2*0.75+3*0.25) = 0.125 + 1.125
    assert np.allclose(interp.bilinear(grid, bi0, bi1, bw, si0, si1, sw), [1.25])


def test_fill_holes_interpolates_between_measured_cells():
    x = np.array([0.0, 1.0, 2.0])
    vals = np.array([[0.0, np.nan, 2.0], [1.0, 2.0, 3.0], [2.0, 3.0, 4.0]])
    filled, src = oracles.fill_holes(vals, x, x)
    # row gives 1.0, column gives (nothing above row 0) -> row only
    assert filled[0, 1] == 1.0 and src[0, 1] == interp.INTERPOLATED
    assert src[1, 1] == interp.MEASURED


def test_fill_holes_averages_row_and_column():
    x = np.array([0.0, 1.0, 2.0])
    vals = np.array([[0.0, 0.0, 0.0], [0.0, np.nan, 2.0], [0.0, 4.0, 0.0]])
    filled, _ = oracles.fill_holes(vals, x, x)
    assert filled[1, 1] == (1.0 + 2.0) / 2  # row: (0+2)/2 = 1, column: (0+4)/2 = 2, equal distances


def test_extrapolate_holes_holds_nearest_in_row():
    x = np.array([0.0, 1.0, 2.0])
    vals = np.array([[1.0, 2.0, np.nan], [5.0, 6.0, 7.0], [0.0, 0.0, 0.0]])
    filled, src = oracles.fill_holes(vals, x, x)
    # the hole has a neighbour on one side of its row and column only: fill_holes leaves it
    assert np.isnan(filled[0, 2]) and src[0, 2] == -1
    filled, src = interp.extrapolate_holes(np.array([[1.0, 2.0, np.nan]]), np.array([[0, 0, -1]], np.int8),
                                           np.array([0.0]), x)
    assert filled[0, 2] == 2.0 and src[0, 2] == interp.EXTRAPOLATED


def test_bracket_trend_continues_last_slope_damped():
    axis = np.array([0.0, 1.0, 2.0])
    _, _, w, out = interp.bracket(axis, np.array([3.0, -1.0]), trend=0.5)
    assert np.allclose(w, [1.5, -0.5]) and out.all()


def test_median_estimates_follow_the_majority_level():
    nan = np.nan
    cands = np.array([[[0.0, nan]], [[0.3, nan]], [[0.0, nan]], [[0.02, nan]]])  # one candidate on the upper level
    est, has = interp.median_estimates(cands)
    assert has.tolist() == [[True, False]] and est[0, 0] == pytest.approx(0.01) and np.isnan(est[0, 1])


def test_sibling_estimate_uses_local_offset():
    vals = np.array([[1.0, 2.0, 3.0], [1.5, np.nan, 3.5]])
    sib = np.array([[0.0, 1.0, 2.0], [0.5, 5.0, 2.5]])
    known = ~np.isnan(vals)
    # offset over row 1 (1.0, 1.0) and column 1 (1.0): 1.0 -> 5.0 + 1.0
    assert oracles.sibling_estimate(vals, known, [sib], 1, 1) == 6.0


def _random_slice(rng, nb, ns, holes):
    vals = rng.normal(size=(nb, ns))
    vals[rng.random((nb, ns)) < holes] = np.nan
    return vals, np.log2(np.arange(1, nb + 1) * 2.0), np.log2(np.arange(1, ns + 1) * 64.0)


def test_vectorised_estimates_match_the_scalar_functions_bit_for_bit():
    rng = np.random.default_rng(7)
    for trial in range(40):
        nb, ns = rng.integers(1, 9), rng.integers(1, 12)
        vals, xb, xs = _random_slice(rng, nb, ns, holes=rng.uniform(0.0, 0.7))
        sibs = [np.where(rng.random((nb, ns)) < 0.3, np.nan, vals + rng.normal(size=(nb, ns)) * 0.1)
                for _ in range(rng.integers(0, 4))]
        known = ~np.isnan(vals)
        line, has_line = interp.line_estimates(vals, known, xb, xs)
        sib, has_sib = interp.sibling_estimates(vals, known, sibs)
        for i in range(nb):
            for j in range(ns):
                a = oracles.line_estimate(vals, known, xb, xs, i, j)
                b = oracles.sibling_estimate(vals, known, sibs, i, j)
                assert has_line[i, j] == (a is not None) and (a is None or line[i, j] == a), (trial, i, j)
                assert has_sib[i, j] == (b is not None) and (b is None or sib[i, j] == b), (trial, i, j)


def test_vectorised_extrapolation_matches_a_per_hole_argmin():
    rng = np.random.default_rng(3)
    vals, xb, xs = _random_slice(rng, 6, 9, holes=0.6)
    filled, src = interp.extrapolate_holes(vals, np.where(np.isnan(vals), -1, 0).astype(np.int8), xb, xs)
    ki, kj = np.nonzero(~np.isnan(vals))
    for i, j in zip(*np.nonzero(np.isnan(vals))):
        k = int(np.argmin(np.abs(xb[ki] - xb[i]) * 2.0 + np.abs(xs[kj] - xs[j])))
        assert filled[i, j] == vals[ki[k], kj[k]] and src[i, j] == interp.EXTRAPOLATED


def test_power_weight_linear_in_raw_coordinate():
    # 3 between 2 and 4: log2 weight 0.585, raw (power 1) weight 0.5, sqrt weight (1.732-1.414)/(2-1.414)
    x0, x1, x = np.log2(2.0), np.log2(4.0), np.log2(3.0)
    assert np.isclose(interp.power_weight(x0, x1, x, 0.0), np.log2(1.5))
    assert np.isclose(interp.power_weight(x0, x1, x, 1.0), 0.5)
    assert np.isclose(interp.power_weight(x0, x1, x, 0.5), (3**0.5 - 2**0.5) / (2 - 2**0.5))
    # inside points use the power; outside points keep the log2 trend rule
    _, _, w, out = interp.bracket(np.log2([2.0, 4.0]), np.log2([3.0, 8.0]), trend=1.0, power=1.0)
    assert np.allclose(w, [0.5, 2.0]) and out.tolist() == [False, True]


def test_local_sibling_offset_follows_a_drift_along_the_row():
    # the slice sits above its sibling by an offset that grows along the row: 0, 0.1, (0.2), 0.3
    x = np.array([0.0, 1.0, 2.0, 3.0])
    sib = np.array([[1.0, 2.0, 3.0, 4.0]])
    vals = sib + np.array([[0.0, 0.1, np.nan, 0.3]])
    local = interp.local_sibling_estimates(vals, [sib], np.array([0.0]), x)
    assert np.isclose(local[0, 0, 2], 3.2)
    # the whole-row median offset (0.1) misses the drift
    glob, _ = interp.sibling_estimates(vals, ~np.isnan(vals), [sib])
    assert np.isclose(glob[0, 2], 3.1)
