"""Sweep spec expansion and raw-log writers (no torch needed)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

from collector import VERSION  # noqa: E402
from collector.config import OPS, system_of  # noqa: E402
from collector.logs import CSV_HEADER, RawLogWriter, done_keys, read_rows  # noqa: E402
from collector.sweep import Shape, expand, load_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_default_sweep_meets_issue_targets():
    shapes = expand(load_spec())
    assert {s.op for s in shapes} == {op for op in OPS if not op.endswith("_kernel")}  # kernels: kernels.yaml
    for op in {s.op for s in shapes}:
        sub = [s for s in shapes if s.op == op]
        assert len({s.key() for s in sub}) >= 500, op
        assert {s.num_heads for s in sub} == {16, 32, 64, 128}
        assert {s.gemm_type for s in sub} >= {"bfloat16", "fp8_block"}
        assert min(s.batch_size for s in sub) == 1 and max(s.batch_size for s in sub) == 256
        if OPS[op][3] == "context":
            assert min(s.isl for s in sub) == 128 and max(s.isl for s in sub) == 131072
            # long contexts (issue 16) at batch 1 only; everything else within 32k tokens
            assert {s.isl for s in sub if s.batch_size * s.isl > 32768} == {65536, 131072}
            assert {s.batch_size for s in sub if s.batch_size * s.isl > 32768} == {1}
        else:
            assert min(s.prefix for s in sub) == 1024 and max(s.prefix for s in sub) == 262144
            assert max(s.batch_size for s in sub if s.prefix == 262144) == 64  # b * kv_len <= 2^24
            assert {s.isl for s in sub} == {1}
    dsa = [s for s in shapes if s.op == "dsa_context"]
    long_prefix = [s for s in dsa if s.prefix > 4096]
    assert {s.prefix for s in long_prefix} == {16384, 65536}
    assert {s.batch_size for s in long_prefix} == {1} and max(s.isl for s in long_prefix) == 4096
    assert {s.prefix for s in shapes if s.op == "mla_context"} == {0}


def test_explicit_shapes_in_spec(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("shapes:\n  - [mla_generation, 16, bfloat16, fp8, 3, 1, 1536]\n"
                 "  - [dsa_context, 32, fp8_block, bfloat16, 6, 384, 0]\n"
                 "  - [mla_generation, 16, bfloat16, fp8, 3, 1, 1536]\n")
    shapes = expand(load_spec(p))
    assert sorted(s.key() for s in shapes) == sorted([
        ("mla_generation", 16, "bfloat16", "fp8", 3, 1, 1536), ("dsa_context", 32, "fp8_block", "bfloat16", 6, 384, 0)])
    assert [s.op for s in expand(load_spec(p), ["dsa_context"])] == ["dsa_context"]
    p.write_text("shapes:\n  - [mla_generation, 16, bfloat16]\n")
    with pytest.raises(ValueError, match="expected \\[op, heads"):
        expand(load_spec(p))
    p.write_text("shapes:\n  - [mla_decode, 16, bfloat16, fp8, 3, 1, 1536]\n")
    with pytest.raises(ValueError, match="mla_decode"):
        expand(load_spec(p))
    p.write_text("shapes:\n  - [mla_generation, 16, bfloat16, fp8, 3, 4, 1536]\n")
    with pytest.raises(ValueError, match="isl 1"):
        expand(load_spec(p))
    p.write_text("timing: {}\n")
    with pytest.raises(ValueError, match="'ops' and/or 'shapes'"):
        load_spec(p)


def test_sweep_is_ordered_by_cost_and_unique():
    shapes = expand(load_spec(), ["dsa_generation"])
    assert len(shapes) == len({s.key() for s in shapes})
    assert all(s.op == "dsa_generation" for s in shapes)


def test_bad_op_in_spec_fails_loudly(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("ops:\n  dsa_prefill: {}\n")
    with pytest.raises(ValueError, match="dsa_prefill"):
        load_spec(p)


def test_system_mapping():
    assert system_of("NVIDIA H200") == "h200_sxm"
    assert system_of("NVIDIA H100 80GB HBM3") == "h100_sxm"
    with pytest.raises(ValueError, match="A100"):
        system_of("NVIDIA A100-SXM4-80GB")


def test_writer_formats_and_resume(tmp_path):
    w = RawLogWriter(tmp_path, "h200_sxm", "NVIDIA H200", "run-x", {"torch": "t"})
    ctx = Shape("dsa_context", 128, "fp8_block", "bfloat16", 1, 16384, 128)
    gen = Shape("mla_generation", 16, "bfloat16", "fp8", 4, 1, 1024)
    w.write(ctx, 55.123456, [55.1, 55.2], 1980.0)
    w.write(gen, 0.1, [0.1, 0.11], None)
    d = tmp_path / "h200_sxm" / "perfwh" / VERSION
    lines = (d / "dsa_context_module_perf.txt").read_text().splitlines()
    assert lines[0] == CSV_HEADER
    assert lines[1] == (f"perfwh,{VERSION},NVIDIA H200,dsa_context_module,triton_sparse,deepseek-ai/DeepSeek-V3.2,"
                        "DeepseekV32ForCausalLM,bfloat16,bfloat16,fp8_block,128,1,16384,1,128,55.12346")
    row = json.loads((d / "mla_generation_module_perf.jsonl").read_text())
    assert row["schema"] == "perfwh.run/1" and row["op"] == "mla_generation"
    assert row["kv_len"] == 1024 and "prefix" not in row and row["isl"] == 1
    assert row["samples_ms"] == [0.1, 0.11] and row["gpu_clock_mhz"] is None
    assert done_keys(tmp_path, "h200_sxm") == {ctx.key(), gen.key()}
    assert len(read_rows(tmp_path, "h200_sxm")) == 2
    # a tagged run writes new files; resume reads all of them
    w2 = RawLogWriter(tmp_path, "h200_sxm", "NVIDIA H200", "run-y", {}, tag="long1")
    gen2 = Shape("mla_generation", 16, "bfloat16", "fp8", 4, 1, 262144)
    w2.write(gen2, 0.2, [0.2] * 5, None)
    assert (d / "mla_generation_module_perf.long1.jsonl").exists()
    assert (d / "mla_generation_module_perf.jsonl").read_text().count("\n") == 1
    assert done_keys(tmp_path, "h200_sxm") == {ctx.key(), gen.key(), gen2.key()}
    with pytest.raises(ValueError, match="file tag"):
        RawLogWriter(tmp_path, "h200_sxm", "NVIDIA H200", "run-z", {}, tag="a/b")


@pytest.mark.parametrize("text, message", [
    ("ops:\n  dsa_context:\n    num_heads: [16]\n", "op dsa_context: missing variants, batch_size, isl, max_tokens"),
    ("ops:\n  dsa_context:\n    num_heads: 16\n    variants: [[bfloat16, bfloat16]]\n    batch_size: [1]\n"
     "    isl: [128]\n    max_tokens: 1000\n", "num_heads must be a non-empty list, got 16"),
    ("ops:\n  dsa_context:\n    num_heads: [0]\n    variants: [[bfloat16, bfloat16]]\n    batch_size: [1]\n"
     "    isl: [128]\n    max_tokens: 1000\n", "num_heads must hold integers >= 1, got 0"),
    ("ops:\n  dsa_context:\n    num_heads: [16]\n    variants: [[bfloat16, nope]]\n    batch_size: [1]\n"
     "    isl: [128]\n    max_tokens: 1000\n", "variant ['bfloat16', 'nope']: gemm_type one of"),
    ("ops:\n  dsa_context:\n    num_heads: [16]\n    variants: [bfloat16]\n    batch_size: [1]\n"
     "    isl: [128]\n    max_tokens: 1000\n", "a variant is [gemm_type, kv_cache_dtype], got 'bfloat16'"),
    ("ops:\n  dsa_context:\n    num_heads: [16]\n    variants: [[bfloat16, bfloat16]]\n    batch_sizes: [1]\n"
     "    batch_size: [1]\n    isl: [128]\n    max_tokens: 1000\n", "unknown key(s) batch_sizes"),
    ("ops: [dsa_context]\n", "'ops' must map op names to their lists, got list"),
    ("ops:\n  dsa_context: null\n", "op dsa_context: expected a mapping of num_heads"),
    ("shapes:\n  - [dsa_context, 16.7, bfloat16, bfloat16, 1, 128, 0]\n", "num_heads must hold integers >= 1, got 16.7"),
    ("shapes:\n  - [dsa_context, x, bfloat16, bfloat16, 1, 128, 0]\n", "num_heads must hold integers >= 1, got 'x'"),
    ("shapes:\n  - [dsa_context, 16, bfloat16, bfloat16, 0, 128, 0]\n", "batch must hold integers >= 1, got 0"),
    ("ops:\n  dsa_context:\n    num_heads: [16\n", "not valid YAML"),
])
def test_a_malformed_spec_is_one_line_naming_the_key(tmp_path, text, message):
    """Each of these died in expand() with a KeyError / TypeError traceback, or (0 heads, 16.7 heads,
    an unknown dtype) was accepted and would have been sent to the GPU."""
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(ValueError) as info:
        load_spec(p)
    assert message in str(info.value) and str(info.value).startswith("sweep spec"), str(info.value)
    r = subprocess.run([sys.executable, "-m", "collector", "plan", "--spec", str(p)], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and message in r.stderr
    assert r.stderr.startswith("python -m collector plan: sweep spec") and r.stderr.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["plan", "--deadline", "0"], "argument --deadline: must be > 0 seconds, got '0'"),
    (["plan", "--deadline", "nan"], "argument --deadline: must be > 0 seconds, got 'nan'"),
    (["plan", "--shape-timeout", "-1"], "argument --shape-timeout: must be > 0 seconds, got '-1'"),
    (["plan", "--ops", "dsa_prefill"], "argument --ops: invalid choice: 'dsa_prefill'"),
])
def test_collector_arguments_that_would_stop_at_once_or_never_are_refused(argv, message):
    """--deadline nan never stopped, --deadline 0 stopped before the first shape after starting the GPU
    worker, and --ops with a typo planned 0 shapes."""
    r = subprocess.run([sys.executable, "-m", "collector", *argv], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 2 and message in r.stderr


def _collector(*argv):
    return subprocess.run([sys.executable, "-m", "collector", *argv], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def test_configs_results_and_summary_paths_are_one_line_errors(tmp_path):
    """--configs of a missing file / bad JSON / a list was a traceback; --results in a missing folder failed
    only when written, after the whole run; summary of a mistyped --out printed nothing and exited 0."""
    (tmp_path / "bad.json").write_text("{bad")
    (tmp_path / "list.json").write_text("[1, 2]")
    for argv, says in [
        (["--configs", str(tmp_path / "none.json")], "No such file or directory"),
        (["--configs", str(tmp_path / "bad.json")], "Expecting property name"),
        (["--configs", str(tmp_path / "list.json")], "expected a JSON object (an earlier --results), got list"),
        (["--results", str(tmp_path / "none" / "r.json")], f"folder {tmp_path / 'none'} does not exist"),
        (["--results", str(tmp_path)], "is a folder"),
    ]:
        r = _collector("plan", *argv)
        assert r.returncode == 2 and "Traceback" not in r.stderr and says in r.stderr, (argv, r.stderr)
        assert r.stderr.startswith("python -m collector plan: ") and r.stderr.count("\n") == 1
    (tmp_path / "a_file").write_text("x")
    r = _collector("run", "--out", str(tmp_path / "a_file"))
    assert r.returncode == 2 and r.stderr == (f"python -m collector run: --out {tmp_path / 'a_file'} is a file, "
                                              f"not the raw-log folder\n")
    r = _collector("summary", "--out", str(tmp_path / "typo"))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == f"python -m collector summary: no collector JSONL logs under {tmp_path / 'typo'} " \
                       f"(h200_sxm, h100_sxm, version {VERSION})\n"
