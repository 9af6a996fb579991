"""What a query may name (estimator.lookup.query): op names and integer arguments, one-line errors."""

import numpy as np
import pytest

from estimator.lookup.limits import OutOfRangeError
from estimator.lookup.query import _non_negative_int, _positive_int, canonical_op


def test_canonical_op_and_its_error_names_the_valid_ops():
    assert canonical_op("dsa_context") == "dsa_context"
    with pytest.raises(ValueError, match="dsa_context"):
        canonical_op("attention")


def test_integer_arguments():
    assert _positive_int("batch_size", 3) == 3
    assert _positive_int("batch_size", np.int64(3)) == 3 and _positive_int("batch_size", 4.0) == 4
    assert _non_negative_int("prefix", 0) == 0
    for bad in (0, -1, 2.5, True, "3", None):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            _positive_int("batch_size", bad)
    with pytest.raises(OutOfRangeError):
        _positive_int("batch_size", 2**31)


def test_prefix_may_be_zero_and_its_error_says_so():
    """prefix=-1 said 'must be a positive integer' (0 is valid) and prefix=False passed as 0 where
    batch_size=True was refused."""
    assert _non_negative_int("prefix", 0) == 0 and _non_negative_int("prefix", np.int64(0)) == 0
    assert _non_negative_int("prefix", 0.0) == 0 and _non_negative_int("prefix", 5) == 5
    for bad in (-1, 1.5, float("nan"), False, True, "0", None):
        with pytest.raises(ValueError, match=r"^prefix must be an integer >= 0, got "):
            _non_negative_int("prefix", bad)
    with pytest.raises(OutOfRangeError):
        _non_negative_int("prefix", 2**31)


def test_an_op_the_nearest_system_lacks_says_the_system_was_picked_by_spec():
    """A30 from A100 SXM (nearest by spec) said only 'no data ... in a100_sxm/trtllm' for an op A100 lacks,
    for a query that named a30: the user did not ask for a100_sxm and was not told how to pick another."""
    from estimator.grids.build import build_grids
    from estimator.lookup.database import PerfDatabase

    from ..conftest import fixed_calibration, synthetic_points

    pts = synthetic_points(ops=("mla_generation",))
    cal = fixed_calibration(pts)
    db = PerfDatabase(system="h100_sxm", calibration=cal, grids=build_grids(pts, cal))
    with pytest.raises(KeyError) as info:
        db.estimate("dsa_context", batch_size=1, s=64, num_heads=32)
    assert info.value.args[0] == (
        "no data or calibration for op 'dsa_context' in h200_sxm/trtllm; ops with data: mla_generation "
        "(h100_sxm has no trtllm data of its own and h200_sxm is the system with data nearest by spec; "
        "from_system= / --from picks another)")
    asked = PerfDatabase(system="h100_sxm", calibration=cal, grids=build_grids(pts, cal), from_system="h200_sxm")
    with pytest.raises(KeyError, match=r"ops with data: mla_generation.$"):
        asked.estimate("dsa_context", batch_size=1, s=64, num_heads=32)
