"""benchmarks/offgrid_validation.py: off-grid shapes, their classes, and the held-out scoring."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tests.benchmark_scripts import load_benchmark

REPO = Path(__file__).resolve().parents[1]
RAW = REPO / "data" / "raw"


@pytest.fixture(scope="module")
def ov():
    return load_benchmark("offgrid_validation")


@pytest.fixture(scope="module")
def fit(ov, tmp_path_factory):
    # the H200 0.1 tables, as the benchmark's default --system / --version take them (data/raw holds H100
    # tables and the H200's 0.4 / 0.5 generation tables too)
    return ov._points([RAW], tmp_path_factory.mktemp("wh") / "fit").filter(
        (pl.col("system") == "h200_sxm") & (pl.col("version") == "0.1"))


def _rows(batches, seqs, op="mla_generation"):
    return pl.DataFrame({"system": "h200_sxm", "framework": "perfwh", "version": "0.1", "op": op,
                         "kernel_source": "k", "architecture": "a", "attn_dtype": "bfloat16", "gemm_type": "bfloat16",
                         "kv_cache_dtype": "bfloat16", "num_heads": 16, "prefix": 0,
                         "batch_size": batches, "seq_len": seqs})


def test_classify_against_the_slice_axes(ov):
    fit = _rows([1, 1, 4, 4], [1024, 4096, 1024, 4096])
    test = pl.concat([_rows([2, 1, 4, 2, 8], [1024, 2048, 8192, 16384, 1024]),
                      _rows([2], [1024]).with_columns(pl.lit(32).alias("num_heads"))])
    got = ov.classify(fit, test)["class"].to_list()
    assert got == ["interior", "interior", "past", "past", "outside", "no-slice"]
    assert ov.classify(fit, _rows([4], [4096]))["class"].to_list() == ["on-grid"]


def test_offgrid_shapes_are_off_the_committed_grid(ov, fit):
    shapes = ov.offgrid_shapes(fit, seed=0)
    assert shapes.height >= 120 and set(shapes["op"]) == set(ov.OPS)
    assert shapes.equals(ov.offgrid_shapes(fit, seed=0)) and not shapes.equals(ov.offgrid_shapes(fit, seed=1))
    test = shapes.with_columns(
        pl.when(pl.col("op").str.ends_with("_context")).then(pl.col("isl")).otherwise(pl.col("seq")).alias("seq_len"),
        pl.lit("h200_sxm").alias("system"), pl.lit("perfwh").alias("framework"), pl.lit("0.1").alias("version"),
        pl.lit(0).alias("prefix"))
    keys = fit.select("op", "kernel_source", "architecture", "attn_dtype").unique()
    classes = ov.classify(fit, test.join(keys, on="op"))
    assert set(classes["class"]) == {"interior", "past"}
    off = classes.filter(~pl.col("batch_size").is_in([1, 2, 4, 8, 16, 32, 64, 128, 256]))
    assert off.height > 0 and off["batch_size"].is_in(ov.OFF_BATCH).all()
    gen = classes.filter(pl.col("op").str.ends_with("_generation"))
    assert (gen["batch_size"] * gen["seq_len"] <= ov.MAX_KV_TOKENS).all()
    yaml_text = ov.spec_yaml(shapes, 0)
    assert yaml_text.count("\n  - [") == shapes.height and "never into data/raw" in yaml_text


def test_written_spec_is_a_collector_spec(ov, tmp_path):
    pytest.importorskip("yaml")
    from collector.sweep import load_spec

    out = tmp_path / "spec.yaml"
    assert ov.main(["--raw", str(RAW), "--write-spec", str(out)]) == 0
    spec = load_spec(out)
    assert len(spec["shapes"]) >= 120 and all(len(row) == 7 for row in spec["shapes"])


def test_score_fits_without_the_held_out_points(ov, fit):
    # hold out the kv_len 4096 line of MLA generation: those points become interior off-grid points
    held = (pl.col("op") == "mla_generation") & (pl.col("seq_len") == 4096)
    errors = ov.score(fit.filter(~held), fit.filter(held))
    assert set(errors["class"]) == {"interior"} and errors.height == fit.filter(held).height
    assert (errors["source"] != "measured").all()
    s = ov.summarize(errors)
    assert s["median_pct"][0] < 10.0 and {"bias_pct", "p90_pct"} <= set(s.columns)
    # the same rows left in the fit answer with their measurement
    same = ov.score(fit, fit.filter(held))
    assert same["class"].unique().to_list() == ["on-grid"] and same["abs_err_pct"].max() < 1e-6


def test_missing_paths_are_one_line_errors(ov, tmp_path, capsys):
    assert ov.main(["--raw", str(tmp_path / "nope"), "--measured", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
