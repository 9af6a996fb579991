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
