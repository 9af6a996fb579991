"""Run-time grids (estimator.lookup.grids): the stored table read back as arrays per group."""

import numpy as np
import pytest

from estimator.grids.build import build_grids
from estimator.grids.interp import MEASURED
from estimator.lookup.grids import GridSet

from ..conftest import HEADS, SEQS, BATCHES, fixed_calibration, synthetic_points


def test_grid_set_holds_every_slice_as_dense_arrays():
    pts = synthetic_points(ops=("dsa_generation",))
    grids = build_grids(pts, fixed_calibration(pts))
    gs = GridSet.from_frame(grids)
    assert len(gs.groups) == 1
    grp = next(iter(gs.groups.values()))
    assert grp.heads.tolist() == list(HEADS) and grp.prefixes.tolist() == [0]
    sg = grp.slices[(HEADS[0], 0)]
    assert sg.batch.tolist() == list(BATCHES) and sg.seq.tolist() == list(SEQS)
    assert (sg.source == MEASURED).all()
    row = grids.filter((grids["num_heads"] == HEADS[0]) & (grids["batch_size"] == 4) & (grids["seq_len"] == 256))
    assert sg.ratio[BATCHES.index(4), SEQS.index(256)] == row["log2_ratio"][0]


def test_grid_set_refuses_a_slice_that_is_not_dense():
    pts = synthetic_points(ops=("dsa_generation",))
    grids = build_grids(pts, fixed_calibration(pts))
    with pytest.raises(ValueError, match="not dense"):
        GridSet.from_frame(grids.slice(1))
