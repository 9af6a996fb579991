import numpy as np  # noqa: F401 - loads numpy's OpenBLAS, so the BLAS pool below is never empty
from threadpoolctl import threadpool_info

from estimator.physics.calibrate import single_blas_thread


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_single_blas_thread_sets_one_and_restores():
    before = _blas_threads()
    assert before, "numpy loaded no BLAS library: the test would pass vacuously"
    with single_blas_thread():
        inside = [(p["filepath"], p["num_threads"]) for p in threadpool_info() if p["user_api"] == "blas"]
        # scipy's own OpenBLAS (what the fits run on) is loaded and limited too, not only numpy's
        assert any("scipy" in path for path, _ in inside), inside
        assert {n for _, n in inside} == {1}
    assert _blas_threads()[: len(before)] == before


def test_cached_kernel_terms_follow_theta():
    """The fit's Jacobian reuses the residual evaluation's kernel terms only at the same theta:
    after a residual at another theta it is the Jacobian computed from scratch."""
    from estimator.physics.calibrate import _Terms, _group_bins, _jacobian, _predict

    rng = np.random.default_rng(1)
    ng, width, n = 3, 4, 50
    ct, bt = rng.uniform(0.1, 2.0, (width, n)), rng.uniform(0.1, 2.0, (width, n))
    gidx = rng.integers(0, ng, (width, n))
    bins = _group_bins(gidx, ng)
    terms = _Terms(ct, bt, gidx, ng)
    a, b = (rng.normal(scale=0.5, size=2 * ng + 2) for _ in range(2))
    for theta, other in ((a, b), (b, a), (a, a)):
        _predict(other, ct, bt, gidx, ng, terms)  # fills the cache for `other`
        assert np.array_equal(_predict(theta, ct, bt, gidx, ng, terms), _predict(theta, ct, bt, gidx, ng))
        assert np.array_equal(_jacobian(theta, ct, bt, gidx, ng, bins, terms), _jacobian(theta, ct, bt, gidx, ng, bins))
