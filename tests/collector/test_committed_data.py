"""The embedded raw logs in data/raw (the collector's own H200 runs)."""
import csv
import json
from pathlib import Path

import pytest

from collector.config import OPS
from collector.logs import CSV_HEADER

ROOT = Path(__file__).resolve().parents[2] / "data" / "raw"
DIRS = sorted(p for p in ROOT.glob("*/perfwh/*") if p.is_dir()) if ROOT.exists() else []
JSON_KEYS = {"schema", "run_id", "timestamp", "device", "system", "framework", "version", "op", "kernel_source",
             "model", "architecture", "attn_dtype", "kv_cache_dtype", "gemm_type", "num_heads", "batch_size",
             "isl", "tp_size", "latency_ms", "samples_ms", "gpu_clock_mhz", "env"}

pytestmark = pytest.mark.skipif(not DIRS, reason="no committed perfwh raw logs")


def test_size_budget():
    """The embedded data stay small enough to clone and ingest in seconds: 8 MiB (5 MiB until the H100 0.4
    MLA generation table, the production-speed decode and prologue, issue 16, had to sit beside 0.2; 6 MiB
    until the H200's own generation tables with them, 0.4 DSA and 0.5 MLA with FlashMLA, run 12)."""
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    assert total <= 8 * 1024 * 1024


def _pairs(d, stem):
    """Every (CSV, JSONL) pair of a table: <stem>.txt/.jsonl and each run's <stem>.<tag>.txt/.jsonl."""
    jls = sorted(p for p in [d / f"{stem}.jsonl", *d.glob(f"{stem}.*.jsonl")] if p.is_file())
    assert sorted(d.glob(f"{stem}*.txt")) == sorted(j.with_suffix(".txt") for j in jls)
    return [(j.with_suffix(".txt"), j) for j in jls]


def test_no_failures_committed():
    for d in DIRS:
        assert not (d / ".failures.jsonl").exists()


@pytest.mark.parametrize("op", sorted(OPS))
def test_tables(op):
    """Each committed table (a collector version measures a subset of the ops) is whole and consistent."""
    stem, op_name, family, phase = OPS[op]
    for d in DIRS:
        shapes = set()
        for txt, jl in _pairs(d, stem):
            shapes |= _check_pair(txt, jl, op, op_name, phase, d)
        assert not shapes or len(shapes) >= 200
    if op in ("dsa_context", "dsa_generation", "mla_context", "mla_generation"):
        assert any(_pairs(d, stem) for d in DIRS)  # the first data set has every module table


def _check_pair(txt, jl, op, op_name, phase, d):
    lines = txt.read_text().splitlines()
    assert lines[0] == CSV_HEADER
    rows = list(csv.DictReader(lines))
    js = [json.loads(x) for x in jl.read_text().splitlines()]
    assert len(rows) == len(js)
    shapes = set()
    for r, j in zip(rows, js):
        assert r["framework"] == "perfwh" and r["version"] == d.name == j["version"] and r["op_name"] == op_name
        assert JSON_KEYS <= set(j) and j["op"] == op and j["system"] == d.parts[-3]
        assert float(r["latency"]) == pytest.approx(j["latency_ms"], rel=1e-4, abs=1e-5)
        assert j["latency_ms"] > 0 and len(j["samples_ms"]) >= 5
        seq = j["prefix"] if phase == "context" else j["kv_len"]
        assert int(r["step"]) == seq
        shapes.add((r["num_heads"], r["gemm_type"], r["kv_cache_dtype"], r["batch_size"], r["isl"], r["step"]))
    return shapes
