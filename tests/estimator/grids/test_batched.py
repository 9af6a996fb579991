"""The batched rule scoring (estimator.grids.batched) gives exactly the per-slice results."""

import numpy as np

from estimator.grids.batched import power_errors_many, slice_estimates_many
from estimator.grids.rules import power_errors, slice_estimates


def _fixture(seed: int = 3):
    """Slices of three shapes with holes, each axis its own values; 0 to 3 siblings each."""
    rng = np.random.default_rng(seed)
    out = []
    for n, (nb, ns) in enumerate([(3, 4), (3, 4), (5, 6), (3, 4), (5, 6), (2, 7), (5, 6)]):
        xb = np.cumsum(rng.uniform(0.5, 2.0, nb))
        xs = np.cumsum(rng.uniform(0.5, 2.0, ns))
        vals = rng.normal(size=(nb, ns))
        vals[rng.random((nb, ns)) < 0.25] = np.nan
        sibs = []
        for _ in range(n % 4):
            sib = vals + rng.normal(0.1, 0.05, (nb, ns))
            sib[rng.random((nb, ns)) < 0.3] = np.nan
            sibs.append(sib)
        powers = [(0.0, 0.0), (0.5, 1.0)][n % 2]
        out.append((vals, xb, xs, sibs, powers))
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def test_power_errors_many_equals_per_slice():
    slices = _fixture()
    many = power_errors_many([s[:3] for s in slices])
    for s, got in zip(slices, many):
        want = power_errors(*s[:3])
        assert got.keys() == want.keys()
        assert all(_same(got[k], want[k]) for k in want)
        assert sum(v.size for v in want.values()) > 0


def test_slice_estimates_many_equals_per_slice():
    slices = _fixture()
    many = slice_estimates_many(slices)
    for s, got in zip(slices, many):
        want = slice_estimates(*s)
        assert got.keys() == want.keys()
        assert all(_same(got[k], want[k]) for k in want), [k for k in want if not _same(got[k], want[k])]
    assert any(np.isfinite(e["median_local"]).any() for e in many)


def test_extrapolation_errors_many_equals_one_cell_at_a_time(monkeypatch):
    """Bit for bit the one-left-out-cell-at-a-time reference, on slices of mixed shapes with holes,
    ties in distance (equally spaced axes), empty rows and columns, in chunks of any size."""
    from estimator.grids import batched
    from estimator.grids.rules import _extrapolation_errors_one_by_one

    rng = np.random.default_rng(5)
    slices = []
    for n in range(300):
        nb, ns = [(1, 1), (2, 3), (4, 4), (6, 5), (3, 8)][n % 5]
        vals = rng.normal(0.0, 0.3, (nb, ns))
        vals[rng.random((nb, ns)) < rng.uniform(0.0, 0.6)] = np.nan
        xb = np.log2(np.sort(rng.choice(np.arange(1, 300), nb, replace=False)).astype(float))
        xs = np.arange(ns, dtype=float) if n % 3 else np.cumsum(rng.uniform(0.3, 2.0, ns))
        slices.append((vals, xb, xs))
    want = [_extrapolation_errors_one_by_one(*s) for s in slices]
    assert sum(w["hold"].size for w in want) > 500
    for chunk in (batched.CHUNK_CELLS, 50):  # 50: a chunk of one slice for the larger shapes
        monkeypatch.setattr(batched, "CHUNK_CELLS", chunk)
        got = batched.extrapolation_errors_many(slices)
        for n, (g, w) in enumerate(zip(got, want)):
            assert g.keys() == w.keys()
            for mode in w:
                assert _same(g[mode], w[mode]), (n, mode)
