"""Ingest: formats, quarantine reasons, accounting, idempotency, replacement."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from tests.conftest import HEADER, dsa_context_row, dsa_generation_row, write_log
from warehouse.ingest import ingest_paths
from warehouse.read import read_measurements, read_perf_points, sql


def quarantine(home) -> list[dict]:
    return sql("select source_line, reason, raw from quarantine order by source_line", home).to_dicts()


def test_clean_csv_becomes_canonical_rows(home, raw_dir):
    f = write_log(
        raw_dir / "dsa_context_module_perf.txt",
        [dsa_context_row(batch=2, isl=4096, step=128, latency=1.25)],
    )
    report = ingest_paths([f], home)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (1, 1, 0)
    row = read_measurements(home).row(0, named=True)
    assert row["system"] == "h200_sxm"
    assert row["framework"] == "trtllm"
    assert row["op"] == "dsa_context"
    assert (row["batch_size"], row["isl"], row["prefix"], row["kv_len"]) == (2, 4096, 128, None)
    assert row["latency_ms"] == 1.25
    assert row["source_line"] == 2
    assert row["source_file"] == str(f.resolve())
    assert len(row["source_sha256"]) == 64


def test_generation_step_is_kv_len(home, raw_dir):
    f = write_log(raw_dir / "dsa_generation_module_perf.txt", [dsa_generation_row(batch=8, kv_len=4096)])
    ingest_paths([f], home)
    row = read_measurements(home).row(0, named=True)
    assert (row["op"], row["isl"], row["kv_len"], row["prefix"]) == ("dsa_generation", 1, 4096, None)


def test_kernel_table_maps_to_kernel_op(home, raw_dir):
    header = "framework,version,device,op_name,kernel_source,mla_dtype,kv_cache_dtype,num_heads,batch_size,isl,tp_size,step,latency"
    f = write_log(
        raw_dir / "context_mla_perf.txt",
        ["TRTLLM,1.0,NVIDIA H200,mla_context,default,bfloat16,bfloat16,128,1,16,1,0,0.016"],
        header=header,
    )
    ingest_paths([f], home)
    row = read_measurements(home).row(0, named=True)
    assert row["op"] == "mla_context_kernel"
    assert row["gemm_type"] is None and row["model"] is None


@pytest.mark.parametrize(
    "bad_value, reason",
    [
        ("abc", "latency: not a number (abc)"),
        ("-1.5", "latency: non-positive (-1.5)"),
        ("0", "latency: non-positive (0.0)"),
        ("nan", "latency: NaN"),
        ("inf", "latency: infinite"),
    ],
)
def test_bad_latency_is_quarantined_with_reason(home, raw_dir, bad_value, reason):
    f = write_log(
        raw_dir / "dsa_context_module_perf.txt",
        [dsa_context_row(latency=1.0), dsa_context_row(latency=bad_value), dsa_context_row(latency=2.0)],
    )
    report = ingest_paths([f], home)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (3, 2, 1)
    q = quarantine(home)
    assert q[0]["source_line"] == 3
    assert q[0]["reason"] == reason
    assert q[0]["raw"] == dsa_context_row(latency=bad_value)


@pytest.mark.parametrize(
    "line, fragment",
    [
        (dsa_context_row(batch="x"), "batch_size: not an integer (x)"),
        (dsa_context_row(batch=0), "batch_size: 0 outside"),
        (dsa_context_row(gemm="int3"), "gemm_type: unknown dtype int3"),
        (dsa_context_row(kv="fp4"), "kv_cache_dtype: unknown dtype fp4"),
        (dsa_context_row().replace("dsa_context_module", "frobnicate"), "unknown op frobnicate"),
        (dsa_context_row().replace("NVIDIA H200", "Acme X1"), None),  # folder gives the system
        ("TRTLLM,1.0,NVIDIA H200,dsa_context_module", "wrong field count: 4 fields, header has 16"),
        (dsa_context_row() + ",extra", "wrong field count: 17 fields"),
        (dsa_context_row().replace("deepseek-ai/DeepSeek-V3.2,", ","), "model: empty"),
    ],
)
def test_each_rule_has_a_reason(home, raw_dir, line, fragment):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [line])
    report = ingest_paths([f], home)
    assert report.rows_read == 1
    if fragment is None:
        assert report.rows_accepted == 1
        return
    assert report.rows_quarantined == 1
    assert fragment in quarantine(home)[0]["reason"]


def test_generation_row_with_isl_other_than_one(home, raw_dir):
    f = write_log(raw_dir / "dsa_generation_module_perf.txt", [dsa_generation_row(isl=4)])
    report = ingest_paths([f], home)
    assert report.rows_quarantined == 1
    assert quarantine(home)[0]["reason"] == "generation row with isl=4 (must be 1)"


def test_unknown_system_without_folder_hint(home, tmp_path):
    f = write_log(tmp_path / "logs" / "dsa_context_module_perf.txt", [dsa_context_row().replace("NVIDIA H200", "Acme X1")])
    report = ingest_paths([f], home)
    assert report.rows_quarantined == 1
    assert quarantine(home)[0]["reason"] == "unknown system for device Acme X1"


def test_missing_key_column_quarantines_every_row(home, raw_dir):
    header = HEADER.replace(",num_heads", "")
    line = dsa_context_row().replace(",128,1,1024,", ",1,1024,")
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [line, line], header=header)
    report = ingest_paths([f], home)
    assert report.rows_quarantined == 2
    assert "missing column(s): num_heads" in quarantine(home)[0]["reason"]


def test_one_row_lists_all_its_problems(home, raw_dir):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(batch="b", latency="nan")])
    ingest_paths([f], home)
    reason = quarantine(home)[0]["reason"]
    assert "batch_size: not an integer (b)" in reason and "latency: NaN" in reason


def test_real_world_damage(home, raw_dir):
    """BOM, CRLF, blanks, repeated header, reordered + extra columns, truncated tail."""
    other = "latency,power,step,tp_size,isl,batch_size,num_heads,gemm_type,kv_cache_dtype,mla_dtype,architecture,model,kernel_source,op_name,device,version,framework,power_limit"
    reordered = ",".join(reversed(dsa_context_row(isl=2048, latency=3.5).split(",")))
    reordered = reordered.replace("3.5,", "3.5,412.0,", 1) + ",700"
    body = "\r\n".join(
        [
            HEADER,
            dsa_context_row(isl=1024, latency=1.5),
            "",
            "   ",
            HEADER,
            dsa_context_row(isl=4096, latency=4.5),
            other,
            reordered,
            dsa_context_row(isl=8192, latency=8.0)[:-3],  # killed mid-write: no newline
        ]
    )
    f = raw_dir / "dsa_context_module_perf.txt"
    f.write_bytes(b"\xef\xbb\xbf" + body.encode())
    report = ingest_paths([f], home)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (4, 3, 1)
    got = read_measurements(home).sort("isl").select("isl", "latency_ms").rows()
    assert got == [(1024, 1.5), (2048, 3.5), (4096, 4.5)]
    q = quarantine(home)
    assert q[0]["source_line"] == 9
    assert "truncated last line" in q[0]["reason"]


def test_rows_before_any_header(home, raw_dir):
    f = raw_dir / "dsa_context_module_perf.txt"
    f.write_text(dsa_context_row() + "\n" + HEADER + "\n" + dsa_context_row() + "\n")
    report = ingest_paths([f], home)
    assert (report.rows_accepted, report.rows_quarantined) == (1, 1)
    assert quarantine(home)[0]["reason"] == "no header line before this row"


def _validated(chunks, path):
    from warehouse.ingest import validate_chunk
    from warehouse.validate import context_for

    goods, bads = zip(*(validate_chunk(c, context_for(path)) for c in chunks))
    return pl.concat(goods).sort("source_line"), pl.concat(bads).sort("source_line")


def test_chunked_reading_matches_single_block(raw_dir):
    from warehouse.readers import read_collector_csv

    lines = [dsa_context_row(isl=i + 1, latency=0.1 + i) for i in range(500)]
    lines.insert(250, HEADER)
    lines.insert(100, "")
    lines.insert(400, dsa_context_row(latency="bad"))
    f = write_log(raw_dir / "dsa_context_module_perf.txt", lines)
    whole = list(read_collector_csv(f))
    parts = list(read_collector_csv(f, chunk_bytes=1000))
    assert len(parts) > 10
    for a, b in zip(_validated(whole, f), _validated(parts, f)):
        assert a.equals(b)
    assert sum(c.header_lines for c in parts) == 2 and sum(c.blank_lines for c in parts) == 1
    good, bad = _validated(parts, f)
    assert good.height == 500 and bad.rows() == [(402, dsa_context_row(latency="bad"), "latency: not a number (bad)")]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_fast_and_line_paths_agree(raw_dir, monkeypatch, newline):
    """The polars fast path and the line-by-line path give identical results."""
    from warehouse import readers

    lines = [dsa_context_row(batch=1 + i % 7, isl=16 * (i + 1), latency=0.5 + i / 7) for i in range(300)]
    lines[17] = dsa_context_row(latency="-2")
    f = write_log(raw_dir / "dsa_context_module_perf.txt", lines, newline=newline)
    fast = list(readers.read_collector_csv(f))
    assert fast[0].block is not None  # the fast path took it
    monkeypatch.setattr(readers, "_parse_block_fast", lambda *a: None)
    slow = list(readers.read_collector_csv(f))
    assert slow[0].block is None
    for a, b in zip(_validated(fast, f), _validated(slow, f)):
        assert a.equals(b)


def test_jsonl_run_log(home, raw_dir):
    rec = {
        "schema": "perfwh.run/1", "run_id": "r1", "timestamp": "2026-11-26T00:00:00Z",
        "device": "NVIDIA H100 80GB HBM3", "system": "h100_sxm", "framework": "perfwh", "version": "0.1",
        "op": "mla_generation", "kernel_source": "torch", "model": "deepseek-ai/DeepSeek-V3",
        "architecture": "DeepseekV3ForCausalLM", "attn_dtype": "bfloat16", "kv_cache_dtype": "fp8",
        "gemm_type": "fp8_block", "num_heads": 16, "batch_size": 64, "isl": 1, "kv_len": 8192,
        "tp_size": 1, "latency_ms": 0.42, "samples_ms": [0.41, 0.42, 0.43], "gpu_clock_mhz": 1980.0,
    }  # fmt: skip
    bad = dict(rec, latency_ms=float("nan"))
    lines = [json.dumps(rec), "{not json", json.dumps({k: v for k, v in rec.items() if k != "num_heads"}), json.dumps(bad)]
    f = raw_dir / "mla_generation_module_perf.jsonl"
    f.write_text("\n".join(lines) + "\n")
    report = ingest_paths([f], home)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (4, 1, 3)
    row = read_measurements(home).row(0, named=True)
    assert (row["system"], row["op"], row["kv_len"], row["run_id"], row["gpu_clock_mhz"]) == (
        "h100_sxm", "mla_generation", 8192, "r1", 1980.0,
    )  # fmt: skip
    reasons = [q["reason"] for q in quarantine(home)]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1].startswith("missing key(s): num_heads")
    assert math.isnan(bad["latency_ms"]) and "latency: NaN" in reasons[2]


def test_parquet_table(home, tmp_path):
    d = tmp_path / "h100_sxm" / "mla" / "trtllm" / "1.0"
    d.mkdir(parents=True)
    frame = pl.DataFrame(
        {
            "framework": ["TRTLLM"] * 2, "version": ["1.0"] * 2, "device": ["NVIDIA H100 80GB HBM3"] * 2,
            "op_name": ["mla_generation_module"] * 2, "kernel_source": ["default"] * 2,
            "model": ["deepseek-ai/DeepSeek-V3"] * 2, "architecture": ["DeepseekV3ForCausalLM"] * 2,
            "mla_dtype": ["bfloat16"] * 2, "kv_cache_dtype": ["bfloat16"] * 2, "gemm_type": ["bfloat16"] * 2,
            "num_heads": [128, 128], "batch_size": [1, 2], "isl": [1, 1], "tp_size": [1, 1],
            "step": [1024, 1024], "latency": [0.13, -1.0],
        }
    )  # fmt: skip
    frame.write_parquet(d / "mla_generation_module_perf.parquet")
    report = ingest_paths([tmp_path / "h100_sxm"], home)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (2, 1, 1)
    row = read_measurements(home).row(0, named=True)
    assert (row["system"], row["op"], row["kv_len"], row["latency_ms"]) == ("h100_sxm", "mla_generation", 1024, 0.13)


def test_reingest_unchanged_is_a_noop(home, raw_dir):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(isl=i + 1) for i in range(10)])
    first = ingest_paths([raw_dir], home)
    second = ingest_paths([raw_dir], home)
    assert [r.status for r in first.files] == ["ingested"]
    assert [r.status for r in second.files] == ["skipped-unchanged"]
    assert second.manifest_version == first.manifest_version
    assert read_measurements(home).height == 10


def test_changed_file_replaces_its_rows(home, raw_dir):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(isl=i + 1) for i in range(10)])
    ingest_paths([f], home)
    write_log(f, [dsa_context_row(isl=i + 1, latency=2.0) for i in range(12)])
    report = ingest_paths([f], home)
    assert [r.status for r in report.files] == ["replaced"]
    m = read_measurements(home)
    assert m.height == 12 and m["latency_ms"].unique().to_list() == [2.0]
    ledger = sql("select status, rows_read from ingest_ledger order by ingested_at", home).rows()
    assert ledger == [("superseded", 10), ("ingested", 12)]


def test_same_content_elsewhere_is_not_counted_twice(home, raw_dir, tmp_path):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row()])
    copy = tmp_path / "copy" / "h200_sxm" / "dsa_context_module_perf.txt"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(f.read_bytes())
    report = ingest_paths([f, copy], home)
    assert sorted(r.status for r in report.files) == ["ingested", "skipped-duplicate"]
    assert read_measurements(home).height == 1


def test_perf_points_aggregate_repeats(home, raw_dir):
    lines = [dsa_context_row(latency=v) for v in (1.0, 1.2, 1.1, 3.0)] + [dsa_context_row(isl=2048, latency=5.0)]
    write_log(raw_dir / "dsa_context_module_perf.txt", lines)
    ingest_paths([raw_dir], home)
    pts = read_perf_points(home).sort("isl")
    assert pts.height == 2
    first = pts.row(0, named=True)
    assert first["n"] == 4
    assert first["latency_ms"] == pytest.approx(1.15)  # median of 1.0, 1.1, 1.2, 3.0
    assert first["latency_min_ms"] == 1.0 and first["latency_max_ms"] == 3.0
    assert first["spread_rel"] == pytest.approx(2.0 / 1.15)
    via_sql = sql("select n, latency_ms from perf_points order by isl", home).rows()
    assert via_sql == [(4, pytest.approx(1.15)), (1, 5.0)]
    assert pts["spread_rel"][1] is None  # one sample: no spread, not 0.0
    assert sql("select spread_rel from perf_points order by isl", home)["spread_rel"].to_list() == [
        pytest.approx(2.0 / 1.15), None]


def test_unknown_extension_and_missing_path_fail_loudly(home, tmp_path):
    (tmp_path / "notes.md").write_text("hi")
    with pytest.raises(ValueError, match="unknown raw-log format"):
        ingest_paths([tmp_path / "notes.md"], home)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        ingest_paths([tmp_path / "absent"], home)


def test_force_takes_one_path_or_a_relative_one(home, raw_dir, monkeypatch):
    """`force` was matched as given against the resolved paths discovery yields, and a lone string was
    iterated: force="x.txt" or force=["x.txt"] from the file's folder re-ingested nothing, silently."""
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(isl=s) for s in (1024, 2048)])
    ingest_paths([f], home)
    monkeypatch.chdir(raw_dir)
    for force in (f.name, [f.name], [f]):
        assert [r.status for r in ingest_paths([f], home, force=force).files] == ["ingested"]
    assert [r.status for r in ingest_paths([f], home).files] == ["skipped-unchanged"]
    assert sql("select count(*) from measurements", home).item() == 2


def test_one_path_as_a_string_is_one_path_not_its_characters(home, raw_dir, monkeypatch):
    """ingest_paths("some/file") iterated the string, one character at a time: 'no such file or
    folder: s' at best, and for "/data/x.txt" its first character "/" walked the whole root."""
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(isl=s) for s in (1024, 2048)])
    monkeypatch.chdir(raw_dir)  # a bare name: the old behaviour fails fast instead of walking "/"
    for one in ("dsa_context_module_perf.txt", f):
        assert [r.path for r in ingest_paths(one, home).files] == [str(f)]
    assert sql("select count(*) from measurements", home).item() == 2


def test_shared_data_ingests_without_quarantine(home, shared_data):
    report = ingest_paths([shared_data], home)
    assert report.rows_quarantined == 0
    assert report.rows_accepted == report.rows_read > 140_000
    ops = {r[0] for r in sql("select distinct op from measurements", home).rows()}
    assert ops == {
        "dsa_context", "dsa_generation", "mla_context", "mla_generation",
        "mla_context_kernel", "mla_generation_kernel",
    }  # fmt: skip
    again = ingest_paths([shared_data], home)
    assert {r.status for r in again.files} == {"skipped-unchanged"}


def test_csv_mirror_of_a_jsonl_run_log_is_reported_not_counted_twice(home, raw_dir):
    rec = {
        "run_id": "r1", "device": "NVIDIA H200", "framework": "perfwh", "version": "0.1", "op": "dsa_context",
        "kernel_source": "triton", "model": "deepseek-ai/DeepSeek-V3.2", "architecture": "DeepseekV32ForCausalLM",
        "attn_dtype": "bfloat16", "kv_cache_dtype": "bfloat16", "gemm_type": "bfloat16", "num_heads": 128,
        "batch_size": 1, "isl": 1024, "prefix": 0, "tp_size": 1, "latency_ms": 1.0,
    }  # fmt: skip
    (raw_dir / "dsa_context_module_perf.jsonl").write_text(json.dumps(rec) + "\n")
    csv = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row()])
    report = ingest_paths([raw_dir], home)
    assert sorted(r.status for r in report.files) == ["ingested", "skipped-mirror"]
    assert read_measurements(home).height == 1
    alone = ingest_paths([csv], home)  # named on its own, its JSONL twin is in: still a mirror
    assert [r.status for r in alone.files] == ["skipped-mirror"]
    assert read_measurements(home).height == 1


def test_invalid_utf8_line_is_quarantined_not_fatal(home, raw_dir):
    f = raw_dir / "dsa_context_module_perf.txt"
    f.write_bytes((HEADER + "\n" + dsa_context_row() + "\n").encode() + b"TRTLLM,\xff\xfe,broken\n")
    report = ingest_paths([f], home)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (2, 1, 1)
    assert quarantine(home)[0]["reason"] == "not valid UTF-8 text (e.g. Windows-1252 bytes)"
