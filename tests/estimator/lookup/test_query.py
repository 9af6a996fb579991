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
