"""Lookups in a group's grids (estimator.lookup.interpolate): the scalar and numpy paths agree."""

import numpy as np

from estimator.grids import interp


def test_lookup_scalar_and_numpy_agree_with_a_raw_batch_coordinate(tmp_path):
    from estimator.lookup import interpolate
    from estimator.lookup.grids import GroupGrids, stack_group
    from estimator.grids.build import SliceGrid

    batch, seq = np.array([2, 4]), np.array([64, 128])
    ratio = np.array([[0.0, 0.2], [1.0, 1.2]])
    sg = SliceGrid(batch, seq, np.log2(batch), np.log2(seq), ratio, np.zeros((2, 2), np.int8), np.ones((2, 2)),
                   0.0, ratio.copy(), batch_power=1.0, seq_power=0.0)
    grp = GroupGrids(("k",), np.array([64]), np.array([0]), {(64, 0): sg})
    grp.stacked = stack_group(grp)
    many, _ = interpolate.lookup_many(grp, [64], [0], np.array([3.0]), np.array([64.0]))
    one, code, _ = interpolate.lookup_one(grp, 64, 0, 3, 64)
    assert np.isclose(many[0], 0.5) and np.isclose(one, 0.5) and code == interp.INTERPOLATED
    grp.stacked = None
    by_slice, _ = interpolate.lookup_many(grp, [64], [0], np.array([3.0]), np.array([64.0]))
    assert np.isclose(by_slice[0], 0.5) and np.isclose(interpolate.lookup_one(grp, 64, 0, 3, 64)[0], 0.5)
