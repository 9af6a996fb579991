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
