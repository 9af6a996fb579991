"""`perfwh coverage`: the measured region per slice, not its bounding box."""

from __future__ import annotations

import json

import pytest

from perfwh.cli import main
from tests.conftest import dsa_context_row, dsa_generation_row, write_log
from warehouse.coverage import contains, coverage, region_text
from warehouse.ingest import ingest_paths


def _triangle(raw_dir, home):
    rows = [dsa_context_row(batch=1, isl=s) for s in (1024, 2048, 4096)]
    rows += [dsa_context_row(batch=2, isl=s) for s in (1024, 2048)]
    rows += [dsa_context_row(batch=8, isl=1024)]
    write_log(raw_dir / "dsa_context_module_perf.txt", rows)
    write_log(raw_dir / "dsa_generation_module_perf.txt",
              [dsa_generation_row(batch=b, kv_len=k) for b in (1, 4) for k in (1024, 8192)])
    ingest_paths([raw_dir], home)


def test_region_is_the_triangle_not_the_box(raw_dir, home):
    _triangle(raw_dir, home)
    ctx = coverage(home, op="dsa_context")
    assert len(ctx) == 1
    s = ctx[0]
    assert (s["system"], s["framework"], s["version"], s["num_heads"], s["points"]) == ("h200_sxm", "trtllm", "1.0", 128, 6)
    assert [(r["batch_sizes"], r["seq_min"], r["seq_max"]) for r in s["region"]] == [
        ([1], 1024, 4096), ([2], 1024, 2048), ([8], 1024, 1024)]
    assert contains(s, 1, 4096) and contains(s, 2, 1500)
    assert not contains(s, 8, 4096)  # inside the bounding box, outside what was measured
    assert not contains(s, 4, 1024)  # batch 4 was never measured
    assert region_text(s) == "batch 1: isl 1024..4096 (3); batch 2: isl 1024..2048 (2); batch 8: isl 1024 (1)"
    gen = coverage(home, op="dsa_generation")[0]
    assert gen["seq"] == "kv_len"
    assert [(r["batch_sizes"], r["seq_min"], r["seq_max"]) for r in gen["region"]] == [([1, 4], 1024, 8192)]


def test_cli_text_and_json(raw_dir, home, capsys):
    _triangle(raw_dir, home)
    assert main(["coverage", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "h200_sxm / trtllm 1.0 / dsa_context" in out and "h200_sxm / trtllm 1.0 / dsa_generation" in out
    assert "batch 8: isl 1024 (1)" in out
    assert main(["coverage", "--home", str(home), "--op", "context_dsa", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["op"] for d in data] == ["dsa_context"]
    assert data[0]["region"][2] == {"batch_sizes": [8], "seq_min": 1024, "seq_max": 1024, "seq_values": 1}


def test_cli_no_match_and_no_warehouse(raw_dir, home, tmp_path, capsys):
    _triangle(raw_dir, home)
    assert main(["coverage", "--home", str(home), "--backend", "vllm"]) == 1
    assert "no data backend=vllm" in capsys.readouterr().err
    assert main(["coverage", "--home", str(home), "--backend", "vllm", "--json"]) == 1  # as the text form
    cap = capsys.readouterr()
    assert json.loads(cap.out) == [] and "no data backend=vllm" in cap.err
    assert main(["coverage", "--home", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no warehouse at" in err


def test_cli_no_match_lists_what_there_is_and_takes_backend_aliases(raw_dir, home, capsys):
    """--system H200_SXM said only 'no data system=H200_SXM'; --backend TensorRT-LLM (a spelling query
    takes) matched nothing."""
    _triangle(raw_dir, home)
    assert main(["coverage", "--home", str(home), "--system", "H200_SXM"]) == 1
    assert capsys.readouterr().err == "no data system=H200_SXM; the warehouse holds h200_sxm/trtllm 1.0\n"
    assert main(["coverage", "--home", str(home), "--backend", "TensorRT-LLM", "--op", "dsa_context"]) == 0
    assert "h200_sxm / trtllm 1.0 / dsa_context" in capsys.readouterr().out


def test_nvfp4_slice_is_marked_not_queryable(raw_dir, home, capsys):
    """nvfp4 GEMM slices were listed like any other, yet every query of them was refused by GEMMQuantMode."""
    write_log(raw_dir / "dsa_context_module_perf.txt",
              [dsa_context_row(batch=1, isl=s, gemm=g) for s in (1024, 2048) for g in ("bfloat16", "nvfp4")])
    ingest_paths([raw_dir], home)
    assert main(["coverage", "--home", str(home)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " gemm " in ln]
    assert len(lines) == 2
    bf16, fp4 = sorted(lines, key=lambda ln: "nvfp4" in ln)
    assert "not queryable" not in bf16
    assert fp4.endswith("(not queryable: gemm_type nvfp4 is not modelled (the SOL model has no FP4 byte width "
                        "or tensor peak, so an nvfp4 time cannot be calibrated or moved))")
    assert main(["coverage", "--home", str(home), "--json"]) == 0
    data = {d["gemm_type"]: d["not_queryable"] for d in json.loads(capsys.readouterr().out)}
    assert data["bfloat16"] is None and data["nvfp4"].startswith("gemm_type nvfp4 is not modelled")


def test_nvfp4_refusal_says_why():
    from estimator.common import GEMMQuantMode

    with pytest.raises(ValueError, match=r"unknown GEMMQuantMode 'nvfp4'; valid: .*\(nvfp4 is not modelled: "
                                         r"the SOL model has no FP4"):
        GEMMQuantMode.parse("nvfp4")
