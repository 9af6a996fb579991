"""A partition's derived tables (estimator.derived.partition): the key, and the pure build."""

import pytest

from estimator.derived.partition import ERRORS_TABLE, build_partition, parse_slice_key, slice_key

from ..conftest import synthetic_points


def test_slice_key_round_trip_and_one_line_errors():
    key = ("h200_sxm", "trtllm", "1.3.0rc20")
    assert slice_key(key) == "h200_sxm|trtllm|1.3.0rc20"
    assert parse_slice_key(slice_key(key)) == key
    with pytest.raises(ValueError, match="holds '\\|'"):
        slice_key(("h200_sxm", "trt|llm", "1"))
    with pytest.raises(ValueError, match="is not system\\|framework\\|version"):
        parse_slice_key("h200_sxm|trtllm")


def test_build_partition_gives_every_table_and_no_errors_on_clean_points():
    pts = synthetic_points(ops=("mla_generation",))
    tables = build_partition(pts)
    assert {"sol_calibration", "grids", "perf_points", ERRORS_TABLE} <= set(tables)
    assert tables[ERRORS_TABLE].height == 0
    assert tables["grids"].filter(tables["grids"]["source"] == "measured").height == pts.height
    assert set(tables["sol_calibration"]["op"].unique()) == {"mla_generation"}
