"""Rules of the grid build (estimator.grids.rules), each on a small surface worked out by hand."""

import numpy as np
import pytest


def test_choose_seq_trend_by_measurement():
    from estimator.grids.rules import choose_seq_trend

    xs = np.log2(np.array([256.0, 512.0, 1024.0, 2048.0]))
    linear = np.array([[0.0, 0.1, 0.2, 0.3]])
    flat = np.array([[0.0, 0.1, 0.2, 0.2]])
    assert choose_seq_trend([(xs, linear, linear)]) == 1.0
    assert choose_seq_trend([(xs, flat, flat)]) == 0.0


def test_affine_extension_follows_measured_increment():
    from estimator.grids.rules import affine_extension, choose_extension

    # latency = 1 + 3 * SOL exactly; the SOL alone grows too slowly (ratio rises with seq)
    sol = np.array([[1.0, 2.0, 3.0, 5.0]])
    lat = 1.0 + 3.0 * sol
    ratio = np.log2(lat / sol)
    assert np.allclose(affine_extension(ratio[:, :2], sol[:, :2], sol[:, 2:]), ratio[:, 2:])
    xs = np.log2(np.array([256.0, 512.0, 1024.0, 2048.0]))
    assert choose_extension([(xs, ratio, ratio, sol[:, 1:])], trend=1.0)
    flat = np.zeros((1, 4))  # latency proportional to the SOL: the ratio trend is exact
    assert not choose_extension([(xs, flat, flat, np.array([[2.0, 3.0, 3.5]]))], trend=0.0)
    # a falling measured latency never extrapolates downwards past the last column
    falling = np.log2(np.array([[2.0, 1.0]]) / sol[:, :2])
    assert np.allclose(affine_extension(falling, sol[:, :2], sol[:, 2:]), np.log2(1.0 / sol[:, 2:]))


def test_choose_fill_rule_pools_slices_and_scores_the_median_error():
    from estimator.grids.rules import FILL_RULES, choose_fill_rule

    few = {r: np.zeros(3) for r in FILL_RULES}
    assert choose_fill_rule([few]) == "line"  # too few scored cells
    errs = {r: np.full(4, 0.05) for r in FILL_RULES}
    errs["median"] = np.array([0.01, 0.01, 0.01, 0.5])  # best median error, worst mean
    assert choose_fill_rule([errs, {r: e[:2] for r, e in errs.items()}]) == "median"


def test_choose_pooling_prefers_the_less_noisy_surface():
    from estimator.grids.rules import choose_pooling

    xs = np.log2(np.array([16.0, 32.0, 64.0, 128.0, 256.0]))
    truth = np.tile(np.linspace(0.0, 0.4, 5), (3, 1))
    noise = np.array([[0.05, -0.05, 0.05, -0.05, 0.05]] * 3)
    noisy = truth + noise
    assert choose_pooling([(xs, noisy, truth, noisy)]) is True
    assert choose_pooling([(xs, truth, noisy, truth)]) is False


def test_choose_powers_picks_raw_batch_for_a_surface_linear_in_batch():
    from estimator.grids.rules import choose_powers, power_errors

    batch, seq = np.array([1.0, 2, 4, 8, 16, 32]), np.array([64.0, 128, 256, 512])
    vals = 0.01 * batch[:, None] + 0.1 * np.log2(seq)[None, :]  # linear in raw batch, in log2 seq
    assert choose_powers([power_errors(vals, np.log2(batch), np.log2(seq))]) == (1.0, 0.0)
    assert choose_powers([power_errors(vals.T, np.log2(seq), np.log2(batch))]) == (0.0, 1.0)


def test_median_row_and_median_col_rules_by_hand():
    from estimator.grids.rules import FILL_RULES, slice_estimates

    x = np.array([0.0, 1.0, 2.0])
    vals = np.array([[0.0, 0.0, 0.0], [1.0, np.nan, 3.0], [0.0, 10.0, 0.0]])
    sib1, sib2 = vals.copy(), vals.copy()
    sib1[1, 1], sib2[1, 1] = 2.5, 7.0  # siblings agree with the slice elsewhere: offset 0
    est = slice_estimates(vals, x, x, [sib1, sib2])
    # row line 2, column line 5, sibling estimates 2.5 and 7
    assert est["median_row"][1, 1] == 2.5 and est["median_col"][1, 1] == 5.0 and est["median"][1, 1] == 3.75
    assert {"median_row", "median_col"} <= set(FILL_RULES)


def test_choose_hole_blend_weights_by_inverse_squared_error_and_keeps_only_a_better_blend():
    from estimator.grids.rules import choose_hole_blend

    # independent errors of equal size that cancel pairwise: weight 1/2, blend error 0
    own = np.array([0.1, -0.1, 0.1, -0.1, 0.1, -0.1])
    pool = -own
    assert choose_hole_blend([(own[:3], pool[:3]), (own[3:], pool[3:])]) == 0.5
    # the fill rule's errors twice the pooled mean's: weights 1/4 : 1/1 -> 0.2 for the fill rule
    assert np.isclose(choose_hole_blend([(2 * own, pool)]), 0.2)
    # the same sign everywhere: the blend is no better than the pooled mean -> keep pooling
    assert choose_hole_blend([(np.full(6, 0.2), np.full(6, 0.1))]) is None
    assert choose_hole_blend([(own[:4], pool[:4])]) is None  # too few cells
    assert choose_hole_blend([]) is None


def test_hole_blend_errors_score_the_cells_with_a_line_and_a_sibling():
    from estimator.grids.rules import hole_blend_errors

    vals = np.array([[0.0, 1.0], [np.nan, 3.0]])
    est = {"has_line": np.array([[True, True], [True, False]]), "has_sibling": np.ones((2, 2), bool)}
    own, pool = vals + 0.5, vals - 0.25
    d_own, d_pool = hole_blend_errors(vals, est, own, pool)
    assert d_own.tolist() == [0.5, 0.5] and d_pool.tolist() == [-0.25, -0.25]  # the hole and (1, 1) not scored


def test_pool_siblings_share_gives_the_pooled_mean_of_another_own_surface():
    from estimator.grids.rules import pool_siblings

    base = ("s", "f", "v", "mla_context", "default", "A", "bfloat16")
    key, fp8, other_heads = base + ("bfloat16", "bfloat16", 64, 0), base + ("fp8", "bfloat16", 64, 0), \
        base + ("bfloat16", "bfloat16", 32, 0)
    axis = np.array([1, 2, 4])
    vals = np.array([[0.0, 0.1, 0.2], [0.3, np.nan, 0.5], [0.6, 0.7, 0.8]])
    sib = vals + 0.25  # measured 0.25 above everywhere: offset -0.25
    sib_filled = np.where(np.isnan(sib), 0.65, sib)
    sib_part = np.full((3, 3), np.nan)  # a sibling whose filled surface is missing at (0, 0)
    raw = {key: (axis, axis, vals), fp8: (axis, axis, sib), other_heads: (axis, axis, vals)}
    own = np.where(np.isnan(vals), 0.4, vals)
    filled = {key: (own, None), fp8: (sib_filled, None), other_heads: (vals * 0, None)}
    pooled, share = pool_siblings(key, raw, filled, {key: [fp8, other_heads]})
    # the other-heads slice is not pooled: mean of own and the shifted fp8 surface
    assert np.allclose(pooled, (own + sib_filled - 0.25) / 2) and np.allclose(share, 0.5)
    raw[fp8] = (axis, axis, np.where(np.arange(9).reshape(3, 3) == 0, np.nan, sib))
    filled[fp8] = (np.where(np.arange(9).reshape(3, 3) == 0, sib_part, sib_filled), None)
    pooled, share = pool_siblings(key, raw, filled, {key: [fp8]})
    assert share[0, 0] == 1.0 and share[1, 1] == 0.5  # where the sibling has nothing, own stands in for it
    other_own = own + np.arange(9).reshape(3, 3) * 0.01
    filled2 = {**filled, key: (other_own, None)}
    assert np.allclose(pool_siblings(key, raw, filled2, {key: [fp8]})[0], pooled + share * (other_own - own))


def test_extrapolation_modes_fill_from_row_and_column_and_are_chosen_by_measurement():
    from estimator.grids.interp import EXTRAPOLATED, extrapolate_holes
    from estimator.grids.rules import choose_extrapolation, extrapolation_errors

    xb = np.log2(np.array([1.0, 2.0, 4.0]))
    xs = np.log2(np.array([16.0, 32.0, 64.0]))
    vals = np.array([[0.0, 0.2, 0.4],
                     [0.1, 0.3, 0.6],
                     [0.2, 0.5, np.nan]])  # the corner is past the last row's end
    src = np.zeros(vals.shape, dtype=np.int8)
    held, _ = extrapolate_holes(vals, src.copy(), xb, xs)
    assert held[2, 2] == 0.5  # the nearest cell, same row
    crossed, codes = extrapolate_holes(vals, src.copy(), xb, xs, mode="cross")
    assert np.isclose(crossed[2, 2], 0.5 * (0.5 + 0.6))  # row neighbour and column neighbour
    assert codes[2, 2] == EXTRAPOLATED
    added, _ = extrapolate_holes(vals, src.copy(), xb, xs, mode="additive")
    assert np.isclose(added[2, 2], 0.5 + (0.6 - 0.3))  # the row's last cell plus the column's change
    # scored on each row's last measured cell: rows 0 and 1 (column 2 has two cells), row 2 (column 1)
    errs = extrapolation_errors(vals, xb, xs)
    assert np.allclose(errs["hold"], [0.2, 0.3, 0.3])  # 0.2 vs 0.4, 0.3 vs 0.6, 0.2 vs 0.5 (same row first)
    assert np.allclose(errs["cross"], [0.0, 0.25, 0.25])  # (0.2+0.6)/2 vs 0.4, (0.3+0.4)/2, (0.2+0.3)/2
    # 0.2 + (0.6 - 0.3) vs 0.4; 0.3 + (0.4 - 0.2) vs 0.6; 0.2 + (0.3 - 0.1) vs 0.5
    assert np.allclose(errs["additive"], [0.1, 0.1, 0.1])
    assert choose_extrapolation([errs, errs]) == "additive"  # lowest mean (0.1 vs 0.17) of those beating hold
    # a surface additive in batch and sequence: the column's change carries over exactly
    plane = np.add.outer(np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.3, 0.5]))
    e = extrapolation_errors(plane, xb, xs)
    assert np.allclose(e["additive"], 0.0) and choose_extrapolation([e] * 2) == "additive"
    # flat along the sequence, steep along batch: holding the row wins
    flat = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    assert choose_extrapolation([extrapolation_errors(flat, xb, xs)] * 2) == "hold"
    with pytest.raises(ValueError, match="unknown extrapolation mode"):
        extrapolate_holes(vals, src.copy(), xb, xs, mode="bogus")
    # independent noise on a flat surface: hold misses by ~1.41 sd, the mean of two by ~1.22,
    # the additive fill (three noisy cells) by ~2
    noisy = np.random.default_rng(0).normal(0.0, 0.1, (40, 6))
    xb40 = np.log2(np.arange(1.0, 41.0))
    xs6 = np.log2(np.array([16.0, 32.0, 64.0, 128.0, 256.0, 512.0]))
    assert choose_extrapolation([extrapolation_errors(noisy, xb40, xs6)]) == "cross"


def test_extrapolation_errors_all_cells_at_once_equal_one_cell_at_a_time():
    """The vectorised leave-one-out gives the reference's values bit for bit (the grid build's rule
    choice, and so every answer, depends on their means), on slices with holes, ragged rows,
    ties in distance, lone cells in a column and missing corners."""
    from estimator.grids.rules import _extrapolation_errors_one_by_one, extrapolation_errors

    rng = np.random.default_rng(3)
    scored = 0
    for trial in range(200):
        nb, ns = rng.integers(1, 9), rng.integers(1, 9)
        vals = rng.normal(0.0, 0.3, (nb, ns))
        vals[rng.random((nb, ns)) < rng.uniform(0.0, 0.6)] = np.nan
        xb = np.log2(np.sort(rng.choice(np.arange(1, 300), nb, replace=False)).astype(float))
        xs = np.log2(2.0 ** np.arange(ns) if trial % 2 else np.sort(rng.choice(np.arange(1, 9000), ns, replace=False)))
        fast, ref = extrapolation_errors(vals, xb, xs), _extrapolation_errors_one_by_one(vals, xb, xs)
        assert fast.keys() == ref.keys()
        for mode in ref:
            assert fast[mode].shape == ref[mode].shape and np.array_equal(fast[mode], ref[mode]), (trial, mode)
        scored += ref["hold"].size
    assert scored > 300  # most slices score cells (the rest: empty arrays on both sides)
