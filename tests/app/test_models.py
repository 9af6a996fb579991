"""`perfwh support / estimate / compare` on the small fixture warehouse."""

from __future__ import annotations

import json

import pytest

from perfwh.cli import main
from tests.estimator.models.fixture import context_ms, generation_ms, model_home  # noqa: F401

V3, V32 = "deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-V3.2"

SUPPORT_V32 = """\
Model: deepseek-ai/DeepSeek-V3.2
Architecture: DeepseekV32ForCausalLM
Family: DEEPSEEK
DSA config: index_n_heads=64, index_head_dim=128, index_topk=2048, first_k_dense=3
Layers: 61 (MLA: 0, DSA: 61)
FFN: dense: 3, MoE: 58 (first_k_dense_replace=3, moe_layer_freq=1)
Attention: 128 heads, hidden 7168, q_lora_rank 1536, kv_lora_rank 512, qk_nope/rope 128/64, v_head 128
Config: bundled config

Warehouse data for DeepseekV32ForCausalLM on h200_sxm / trtllm:
table           architecture            version  gemm_type  kv_cache  points  batch span  isl span     kv_len span  prefix  heads
--------------  ----------------------  -------  ---------  --------  ------  ----------  -----------  -----------  ------  -----
dsa_context     DeepseekV32ForCausalLM  1.0      bfloat16   bfloat16      10  1..4        1024..16384  -            0       16
dsa_generation  DeepseekV32ForCausalLM  1.0      bfloat16   bfloat16      14  1..4        1            1024..65536  -       16
  spans are ranges, not the measured region (long sequences are often measured at small batch only): perfwh coverage --system h200_sxm --backend trtllm

Ops at tp 8 (16 heads/GPU; gemm bfloat16, kv cache bfloat16, fmha bfloat16):
ops                          layers  table           slice points  served from
---------------------------  ------  --------------  ------------  ----------------------------------------------------
context_dsa_layer_{0-60}         61  dsa_context               10  data 1.0; b=1 isl 4k: measured, isl 128k: sol
generation_dsa_layer_{0-60}      61  dsa_generation            14  data 1.0; b=1 kv 4k: measured, kv 128k: extrapolated
"""


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_support_golden(capsys, model_home):
    rc, out, err = run(capsys, "support", "--model-path", V32, "--system", "h200_sxm", "--backend", "trtllm",
                       "--home", str(model_home))
    assert rc == 0, err
    assert out == SUPPORT_V32


def test_support_draft_split_and_mla_model(capsys, model_home):
    rc, out, _ = run(capsys, "support", "--model-path", V32, "--dense-attention-layers", "3",
                     "--home", str(model_home))
    assert rc == 0
    assert "Layers: 61 (MLA: 3, DSA: 58)" in out
    assert "context_mla_layer_{0-2}" in out and "context_dsa_layer_{3-60}" in out
    rc, out, _ = run(capsys, "support", "--model-path", V3, "--home", str(model_home))
    assert rc == 0
    assert "Layers: 61 (MLA: 61, DSA: 0)" in out and "MLA config: kv_lora_rank=512" in out


def test_support_local_config(capsys, model_home, tmp_path):
    from estimator.models.hf_config import load_config_dict

    raw, _ = load_config_dict(V32)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    rc, out, _ = run(capsys, "support", "--model-path", str(tmp_path), "--home", str(model_home))
    assert rc == 0
    assert f"Config: {tmp_path / 'config.json'}" in out and "Layers: 61 (MLA: 0, DSA: 61)" in out
    assert "Note:" not in out
    (tmp_path / "config.json").write_text(json.dumps(dict(raw, v_head_dim=64)))
    rc, out, _ = run(capsys, "estimate", "--model-path", str(tmp_path), "--isl", "1024", "--osl", "1",
                     "--home", str(model_home))
    assert rc == 0
    assert ("Note: the estimator uses its spec of the architecture for these dims: "
            "v_head_dim 64 (spec of DeepseekV32ForCausalLM: 128)") in out


def test_estimate_text(capsys, model_home):
    rc, out, err = run(capsys, "estimate", "--model-path", V3, "--tp", "8", "--isl", "4096", "--osl", "1",
                       "--batch", "1", "--home", str(model_home))
    assert rc == 0, err
    assert f"Context (prefill pass, attention share of TTFT): {61 * context_ms('mla', 4096):,.1f} ms" in out
    assert f"first {61 * generation_ms('mla', 4096):.3f} ms" in out
    assert "Provenance, context (61 layer-estimates): measured 61" in out
    assert "Scope: attention block only" in out
    assert "0-2     mla        dense" in out and "3-60    mla        moe" in out


def test_estimate_json(capsys, model_home):
    rc, out, _ = run(capsys, "estimate", "--model-path", V32, "--isl", "3000", "--osl", "8", "--batch", "4",
                     "--home", str(model_home), "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["num_heads"] == 16 and doc["osl"] == 8 and len(doc["layers"]) == 61
    assert sum(doc["provenance"]["generation"].values()) == 61 * 8
    assert doc["context_ms"] == pytest.approx(sum(r["context_ms"] for r in doc["layers"]))


def test_estimate_layers_flag(capsys, model_home):
    rc, out, _ = run(capsys, "estimate", "--model-path", V32, "--isl", "1024", "--osl", "0",
                     "--home", str(model_home), "--layers")
    assert rc == 0
    assert "Generation: osl 0, no decode steps" in out
    assert "\n60      dsa" in out


def test_compare_crossover_plot_html(capsys, model_home, tmp_path):
    png, page = tmp_path / "cmp.png", tmp_path / "cmp.html"
    rc, out, err = run(capsys, "compare", "--model-path", V3, "--model-path", V32, "--home", str(model_home),
                       "--plot", str(png), "--html", str(page))
    assert rc == 0, err
    assert "Crossover (context): DeepSeek-V3.2 becomes cheaper than DeepSeek-V3 at ~4,0" in out
    assert "Crossover (generation): DeepSeek-V3.2 becomes cheaper than DeepSeek-V3 at ~27," in out
    # the 16k row is measured for both: speed-up = (1e-6 * 16384^2) / (0.004 * 16384) = 4.10x
    assert any(line.strip().startswith("16k") and line.rstrip().endswith("4.10x") for line in out.splitlines())
    assert " 1k " in out and "128k" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert "<img" in text and "data:image/png;base64," in text and "Crossover (context)" in text


def test_compare_json(capsys, model_home):
    rc, out, _ = run(capsys, "compare", "--model-path", V3, "--model-path", V32, "--home", str(model_home),
                     "--isl", "4096", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert {r["phase"] for r in doc["table"]} == {"context", "generation"} and len(doc["table"]) == 4
    assert [c["status"] for c in doc["crossovers"]] == ["crosses", "crosses"]


@pytest.mark.parametrize("argv, message", [
    (["support", "--model-path", "acme/Nope"], "unknown model 'acme/Nope'"),
    (["support", "--model-path", V32, "--system", "b300"], "unknown system 'b300'"),
    (["support", "--model-path", V32, "--backend", "onnx"], "unknown backend 'onnx'"),
    (["estimate", "--model-path", V32, "--tp", "3", "--isl", "1", "--osl", "1"], "tp_size 3 does not divide 128"),
    (["estimate", "--model-path", V32, "--isl", "0", "--osl", "1"], "isl must be an integer >= 1, got 0"),
    (["estimate", "--model-path", V32, "--isl", "10", "--osl", "-1"], "osl must be an integer >= 0, got -1"),
    (["estimate", "--model-path", V32, "--isl", "10", "--osl", "1", "--batch", "0"], "batch_size must be"),
    (["estimate", "--model-path", V32, "--isl", "10", "--osl", "1", "--gemm-type", "int4"], "unknown GEMMQuantMode"),
    (["estimate", "--model-path", V32, "--isl", "10", "--osl", "1", "--version", "9.9"], "unknown version '9.9'"),
    (["compare", "--model-path", V3, "--model-path", V3], "each --model-path may be given once"),
    (["compare", "--model-path", V3, "--isl", "0"], "--isl must be >= 1"),
])
def test_bad_input_exits_2(capsys, model_home, argv, message):
    rc, out, err = run(capsys, *argv, "--home", str(model_home))
    assert rc == 2
    assert message in err and err.count("\n") == 1


def test_support_names_ops_it_cannot_serve(capsys, model_home):
    rc, out, _ = run(capsys, "support", "--model-path", V32, "--backend", "vllm", "--home", str(model_home))
    assert rc == 1
    assert "context_dsa_layer_{0-60}         61  dsa_context               10  data 0.1;" in out
    assert "not served: no data or calibration for op 'dsa_generation'" in out
    rc, _, err = run(capsys, "estimate", "--model-path", V32, "--backend", "vllm", "--isl", "10", "--osl", "1",
                     "--home", str(model_home))
    assert rc == 2 and "no data or calibration for op 'dsa_generation'" in err


def test_missing_config_field_exits_2(capsys, model_home, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["DeepseekV32ForCausalLM"]}))
    rc, _, err = run(capsys, "support", "--model-path", str(tmp_path), "--home", str(model_home))
    assert rc == 2 and "lacks required field(s): num_hidden_layers" in err


def test_no_warehouse_exits_2(capsys, tmp_path):
    rc, _, err = run(capsys, "support", "--model-path", V32, "--home", str(tmp_path / "none"))
    assert rc == 2 and "no warehouse" in err


def test_estimate_flags_share_the_query_spelling(capsys, model_home):
    old = run(capsys, "estimate", "--model-path", V32, "--isl", "3000", "--osl", "2", "--batch", "4",
              "--fmha-dtype", "bfloat16", "--home", str(model_home), "--json")
    new = run(capsys, "estimate", "--model-path", V32, "--isl", "3000", "--osl", "2", "--batch-size", "4",
              "--attn-dtype", "bfloat16", "--home", str(model_home), "--json")
    assert old[0] == new[0] == 0 and json.loads(old[1]) == json.loads(new[1])
    assert json.loads(new[1])["batch_size"] == 4


def test_estimate_on_a_system_without_data_says_why_it_has_no_interval(capsys, model_home):
    """h100_sxm has no data here: h200_sxm answers it, and without a transfer_intervals table the totals
    carry no interval (they summed h200_sxm's native ones) and stderr says why, once."""
    rc, out, err = run(capsys, "estimate", "--model-path", V32, "--system", "h100_sxm", "--isl", "3000", "--osl",
                       "2", "--home", str(model_home))
    assert rc == 0, err
    assert "Context (prefill pass, attention share of TTFT):" in out and "80% in" not in out
    assert err.count("\n") == 1 and err.startswith("no 80% interval: h100_sxm is answered from h200_sxm's data "
                                                   "and the warehouse has no transfer_intervals table")
    rc, out, err = run(capsys, "estimate", "--model-path", V32, "--isl", "3000", "--osl", "2",
                       "--home", str(model_home))
    assert rc == 0 and err == ""  # native: no note (this small fixture has too few points for intervals)


def test_estimate_notes_only_the_ops_its_layers_use(capsys, model_home, tmp_path):
    """A transfer_intervals table with DeepSeek-V3.2's DSA rows gives its totals an interval; the note
    for the MLA ops the table lacks (which the model never calls) was printed anyway."""
    import shutil

    import polars as pl

    from estimator.lookup.transfer_intervals import SCHEMA

    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    rows = [dict(framework="*", op=op, relation="*", n=50, q_lo=-0.2, q_hi=0.2, expected_error_pct=10.0,
                 pairs="h200_sxm->h100_sxm", method="test") for op in ("dsa_context", "dsa_generation")]
    pl.DataFrame(rows, schema=SCHEMA).write_parquet(home / "derived" / "transfer_intervals.parquet")
    rc, out, err = run(capsys, "estimate", "--model-path", V32, "--system", "h100_sxm", "--isl", "3000", "--osl",
                       "2", "--home", str(home))
    assert rc == 0 and "80% in" in out and err == "", err
    rc, out, err = run(capsys, "estimate", "--model-path", V3, "--system", "h100_sxm", "--isl", "3000", "--osl",
                       "2", "--home", str(home))
    assert rc == 0 and "80% in" not in out
    assert err.count("\n") == 2 and "has no mla_context row" in err and "has no mla_generation row" in err


def test_estimate_json_and_python_carry_the_interval_note(capsys, model_home):
    """`perfwh query --json` and Estimate carried interval_note; `perfwh estimate --json` and
    ModelEstimate had NaN bounds with the reason on stderr only."""
    from estimator.models.model import get_model

    rc, out, err = run(capsys, "estimate", "--model-path", V32, "--system", "h100_sxm", "--isl", "3000", "--osl",
                       "2", "--home", str(model_home), "--json")
    got = json.loads(out)
    assert rc == 0 and got["context_low_ms"] is None
    assert got["interval_note"] == err.rstrip("\n")
    assert got["interval_note"].startswith("no 80% interval: h100_sxm is answered from h200_sxm's data")
    est = get_model(V32, system="h100_sxm").estimate(isl=3000, osl=2, batch_size=1, db=_db(model_home, "h100_sxm"))
    assert est.interval_note == got["interval_note"]
    native = get_model(V32).estimate(isl=3000, osl=2, batch_size=1, db=_db(model_home, "h200_sxm"))
    assert native.interval_note is None


def _db(home, system):
    from estimator.lookup.database import PerfDatabase

    return PerfDatabase(system, "trtllm", home=home)
