"""`perfwh plan`: off-grid candidates, greedy choice by expected error per GPU-second, the sweep spec."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from perfwh.cli import main
from perfwh.plan import candidates, plan, shape_cost_s, spec_keys, spec_yaml
from warehouse.ingest import ingest_paths
from warehouse.read import read_perf_points

REPO = Path(__file__).resolve().parents[2]
H100 = REPO / "data" / "raw" / "h100_sxm"
VALIDATION = REPO / "data" / "validation" / "sweep.yaml"


def _pts(rows):
    base = {"op": "dsa_generation", "kernel_source": "triton_sparse", "architecture": "a", "attn_dtype": "bfloat16",
            "gemm_type": "bfloat16", "kv_cache_dtype": "bfloat16", "num_heads": 64, "prefix": None, "isl": 1}
    return pl.DataFrame([{**base, "batch_size": b, "kv_len": k} for b, k in rows])


def test_candidates_are_off_grid_within_limits():
    pts = _pts([(b, k) for b in (1, 2, 4) for k in (1 << 22, 1 << 23)])
    c = candidates(pts)
    got = set(zip(c["batch_size"].to_list(), c["seq"].to_list()))
    # batch 3 between 2 and 4 (1.5 x 2; 1.5 x 1 = 1 and 1.5 x 4 = 6 are not between measured values);
    # kv 1.5 x 2^22 between and 1.5 x 2^23 past; b * kv_len <= 2^24
    assert got == {(3, 1 << 22), (1, 3 << 21), (2, 3 << 21), (1, 3 << 22)}
    ex = {("dsa_generation", 64, "bfloat16", "bfloat16", 3, 1, 1 << 22)}
    assert (3, 1 << 22) not in set(zip(*(candidates(pts, ex)[c].to_list() for c in ("batch_size", "seq"))))


def test_cost_model_follows_the_timing_loop():
    # 20 samples below 0.6 ms, 5 at 2.4 ms and above: (n + 5) replays after a flush each, plus set-up
    assert shape_cost_s([0.1])[0] == pytest.approx(0.05 + 25 * 0.22e-3)
    assert shape_cost_s([10.0])[0] == pytest.approx(0.05 + 10 * 10.12e-3)


@pytest.fixture(scope="module")
def h100(tmp_path_factory):
    if not H100.exists():
        pytest.skip("no committed H100 perfwh raw logs")
    home = tmp_path_factory.mktemp("plan_home")
    ingest_paths([H100], home)
    return home


def test_plan_respects_budget_exclusions_and_spreads(h100):
    from perfwh.plan import database_from_points

    pts = read_perf_points(h100, system="h100_sxm", framework="perfwh").filter(pl.col("version") == "0.2")
    db = database_from_points(pts, "h100_sxm")  # one version: 0.2 holds both generation ops
    exclude = spec_keys(VALIDATION)
    picks = plan(pts, db, budget_s=3.0, exclude=exclude)
    assert 0 < picks["cost_s"].sum() <= 3.0
    keys = spec_keys_of(picks)
    assert not keys & exclude
    measured = {(r["op"], r["num_heads"], r["gemm_type"], r["kv_cache_dtype"], r["batch_size"], 1, r["kv_len"])
                for r in pts.iter_rows(named=True)}
    assert not keys & measured
    assert (picks["expected_error_pct"] > 0).all()
    assert picks["batch_size"].to_numpy().max() <= 256
    assert ((picks["batch_size"] * picks["seq"]) <= 1 << 24).all()
    # the first picks go to different slices: a slice's second pick waits until its score halves
    first = picks.head(8).select("op", "num_heads", "gemm_type", "kv_cache_dtype")
    assert first.unique().height == 8
    # the op with the wider intervals gets more of the budget
    per_op = dict(picks.group_by("op").agg(pl.col("expected_error_pct").mean()).iter_rows())
    counts = dict(picks.group_by("op").len().iter_rows())
    wide = max(per_op, key=per_op.get)
    assert counts[wide] == max(counts.values())


def spec_keys_of(picks: pl.DataFrame) -> set[tuple]:
    import yaml

    spec = yaml.safe_load(spec_yaml(picks))
    return {tuple(r) for r in spec["shapes"]}


def test_cli_writes_a_collector_spec(h100, tmp_path, capsys):
    collector_sweep = pytest.importorskip("collector.sweep")
    out = tmp_path / "plan.yaml"
    rc = main(["plan", "--home", str(h100), "--system", "h100_sxm", "--budget-minutes", "0.05",
               "--exclude", str(VALIDATION), "--out", str(out)])
    assert rc == 0
    shapes = collector_sweep.expand(collector_sweep.load_spec(out))
    text = capsys.readouterr().out
    assert f"wrote {len(shapes)} shapes" in text and len(shapes) > 0
    assert {s.op for s in shapes} <= {"dsa_generation", "mla_generation"}
    assert not {s.key() for s in shapes} & spec_keys(VALIDATION)


def test_cli_refuses_an_empty_warehouse(tmp_path, capsys):
    rc = main(["plan", "--home", str(tmp_path / "none"), "--system", "h100_sxm", "--out", str(tmp_path / "p.yaml")])
    assert rc == 2 and "no warehouse" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--budget-minutes", "-5"], "--budget-minutes must be a number > 0, got -5"),
    (["--budget-minutes", "nan"], "--budget-minutes must be a number > 0, got nan"),
    (["--budget-minutes", "0"], "--budget-minutes must be a number > 0, got 0"),
    (["--max-shapes", "0"], "--max-shapes must be >= 1, got 0"),
    (["--version", "9.9"], "no perfwh 9.9 points for h100_sxm; versions: 0.2, 0.4"),
    (["--op", "mla_context"], "no perfwh 0.4 points for h100_sxm and op mla_context"),
    (["--exclude", "/nonexistent/spec.yaml"], "--exclude /nonexistent/spec.yaml: no such collector spec file"),
])
def test_cli_bad_input_is_one_line(h100, tmp_path, capsys, extra, message):
    out = tmp_path / "p.yaml"
    rc = main(["plan", "--home", str(h100), "--system", "h100_sxm", "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_refuses_a_folder_as_out(h100, tmp_path, capsys):
    rc = main(["plan", "--home", str(h100), "--system", "h100_sxm", "--out", str(tmp_path)])
    assert rc == 2 and f"--out {tmp_path} is a folder" in capsys.readouterr().err


def test_cli_names_the_systems_and_backends_with_points(h100, tmp_path, capsys):
    """--system H100_SXM said only 'no perfwh points for H100_SXM in the warehouse'; --backend PERFWH (an
    alias spelling query takes) found nothing."""
    out = tmp_path / "p.yaml"
    rc = main(["plan", "--home", str(h100), "--system", "H100_SXM", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().endswith("no perfwh points for H100_SXM in the warehouse; system/backend with "
                                            "points: h100_sxm/perfwh")
    rc = main(["plan", "--home", str(h100), "--system", "h100_sxm", "--backend", "PERFWH", "--max-shapes", "1",
               "--out", str(out)])
    assert rc == 0 and out.exists()


def test_cli_refuses_to_write_over_an_exclude_spec(h100, tmp_path, capsys):
    """`--exclude V.yaml --out V.yaml` overwrote the held-out validation spec with the plan."""
    spec = tmp_path / "held_out.yaml"
    spec.write_text(VALIDATION.read_text())
    rc = main(["plan", "--home", str(h100), "--system", "h100_sxm", "--exclude", str(spec), "--out", str(spec)])
    assert rc == 2 and "is also an --exclude spec: it would be overwritten" in capsys.readouterr().err
    assert spec.read_text() == VALIDATION.read_text()
