"""estimator.slices.group_rows: the groups of a maintain-order group_by, as row numbers."""

import numpy as np
import polars as pl

from estimator.slices import group_rows


def test_group_rows_are_the_group_by_groups_in_order():
    frame = pl.DataFrame({"a": ["x", "y", None, "x", None, "y", "x"], "b": [1, 2, 3, 1, 3, 2, 2],
                          "v": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5]})
    got = group_rows(frame, ["a", "b"])
    assert [k for k, _ in got] == [("x", 1), ("y", 2), (None, 3), ("x", 2)]
    assert [r.tolist() for _, r in got] == [[0, 3], [1, 5], [2, 4], [6]]
    for (key, rows), (want_key, sub) in zip(got, frame.group_by(["a", "b"], maintain_order=True)):
        assert key == want_key
        assert np.array_equal(frame["v"].to_numpy()[rows], sub["v"].to_numpy())


def test_group_rows_of_an_empty_frame():
    assert group_rows(pl.DataFrame({"a": [], "b": []}, schema={"a": pl.String, "b": pl.Int64}), ["a", "b"]) == []
