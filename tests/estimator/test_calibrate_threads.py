from estimator.calibrate import _loaded_openblas, single_blas_thread


def test_single_blas_thread_sets_one_and_restores():
    libs = _loaded_openblas()
    before = [get() for get, _ in libs]
    with single_blas_thread():
        assert all(get() == 1 for get, _ in libs)
    assert [get() for get, _ in libs] == before
