"""Off-grid validation points (issue 12 item 5): off the default grid, held out
of data/raw and of the warehouse's default landing."""
from pathlib import Path

import pytest

pytest.importorskip("yaml")

from collector.sweep import expand, load_spec  # noqa: E402
from collector.validation import spec_yaml, validation_shapes  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
VAL = REPO / "data" / "validation"


def test_committed_spec_is_the_generated_one():
    assert (VAL / "sweep.yaml").read_text() == spec_yaml(0)


def test_points_are_off_the_default_grid():
    grid = {s.key() for s in expand(load_spec())}
    spec = load_spec()["ops"]
    pts = validation_shapes(0)
    assert 120 <= len(pts) <= 200
    assert {s.op for s, _ in pts} == set(spec)
    for s, cls in pts:
        o = spec[s.op]
        assert s.key() not in grid
        assert s.num_heads in o["num_heads"] and [s.gemm_type, s.kv_cache_dtype] in o["variants"]
        if s.phase == "generation":
            off = s.batch_size not in o["batch_size"] or s.prefix not in o["kv_len"]
            assert off and s.batch_size * s.prefix <= o["max_kv_tokens"]
            assert (cls == "past") == (s.prefix > 131072)
        else:
            assert s.batch_size not in o["batch_size"] or s.isl not in o["isl"] or s.prefix not in (0, 4096)
            assert (cls == "past") == (s.isl > 32768)
    classes = [c for _, c in pts]
    assert classes.count("past") >= 15 and classes.count("interior") >= 100
    assert {s.batch_size for s, _ in pts if s.phase == "generation"} >= {3, 6, 12, 24, 48, 96}


def test_validation_data_is_not_in_the_default_landing():
    pytest.importorskip("polars")
    from pipelines.state import REPO_LANDING, default_landing
    from warehouse.ingest import discover
    assert Path(REPO_LANDING).resolve() == (REPO / "data" / "raw").resolve()
    landing = default_landing()
    if landing.startswith("/") or Path(landing).exists():
        files = discover([landing])
        assert files and not any("validation" in p.parts for p in files)
        assert all((REPO / "data" / "raw") in p.parents for p in files)
    # and nothing under data/validation is reachable from data/raw (no links into it)
    raw_files = {p.resolve() for p in (REPO / "data" / "raw").rglob("*") if p.is_file()}
    val_files = {p.resolve() for p in VAL.rglob("*") if p.is_file()}
    assert val_files and not raw_files & val_files
