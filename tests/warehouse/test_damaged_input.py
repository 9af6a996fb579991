"""Raw files that change while read, damaged or foreign content, paths that
cannot be followed: each is one clear per-file or per-row outcome, never a
crash, a silent skip or lost rows."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import HEADER, REPO, dsa_context_row, write_log
from warehouse import ingest, parts
from warehouse.ingest import ingest_paths
from warehouse.read import read_measurements, sql
from warehouse.readers import read_collector_csv


def ledger(home) -> list[dict]:
    return sql("select path, sha256, status, message from ingest_ledger order by path, status", home).to_dicts()


def quarantine(home) -> list[dict]:
    return sql("select source_line, reason from quarantine order by source_line", home).to_dicts()


def rows(n: int, latency=1.0) -> list[str]:
    return [dsa_context_row(batch=1 + i % 7, isl=128 * (1 + i), latency=latency) for i in range(n)]


# D1: the hash and the parse read the same bytes ---------------------------------


def test_rewrite_with_same_bytes_during_parse_loses_no_rows(home, raw_dir, monkeypatch):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", rows(400))
    content = f.read_bytes()
    monkeypatch.setitem(ingest.READERS, "csv", functools.partial(read_collector_csv, chunk_bytes=4000))
    real_read = parts.HashingReader.read
    calls = []

    def read_during_recopy(self, *args, **kw):
        calls.append(self.pos)
        if len(calls) != 3:
            return real_read(self, *args, **kw)
        f.write_bytes(content[:5000])  # a collector re-copies it: truncated and partly rewritten ...
        try:
            return real_read(self, *args, **kw)
        finally:
            f.write_bytes(content)  # ... then whole again, the same bytes

    monkeypatch.setattr(parts.HashingReader, "read", read_during_recopy)
    (result,) = ingest_paths([f], home).files
    assert result.status == "failed", result
    assert "changed while it was read" in result.message and str(f) in result.message
    assert read_measurements(home).height == 0  # nothing half-read was committed

    monkeypatch.undo()
    again = ingest_paths([f], home)
    assert [r.status for r in again.files] == ["ingested"]
    assert (again.rows_read, again.rows_accepted) == (400, 400)


def test_file_growing_while_read_is_not_half_ingested(home, raw_dir, monkeypatch):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", rows(50))
    real_read = parts.HashingReader.read

    def read_then_append(self, *args, **kw):
        out = real_read(self, *args, **kw)
        with open(f, "a") as fh:  # a collector appends a row meanwhile
            fh.write(dsa_context_row(batch=99) + "\n")
        return out

    monkeypatch.setattr(parts.HashingReader, "read", read_then_append)
    (result,) = ingest_paths([f], home).files
    assert result.status == "failed" and "changed while it was read" in result.message
    monkeypatch.undo()
    assert ingest_paths([f], home).rows_accepted == 51


def test_hash_read_in_blocks_is_the_files_sha256(home, raw_dir, monkeypatch):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", rows(300))
    monkeypatch.setitem(ingest.READERS, "csv", functools.partial(read_collector_csv, chunk_bytes=1000))
    (result,) = ingest_paths([f], home).files
    assert (result.status, result.rows_accepted) == ("ingested", 300)
    assert [r["sha256"] for r in ledger(home)] == [hashlib.sha256(f.read_bytes()).hexdigest()]
    assert read_measurements(home).get_column("source_line").to_list() == list(range(2, 302))


def test_new_file_is_read_once(home, raw_dir, monkeypatch):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", rows(200))
    monkeypatch.setitem(ingest.READERS, "csv", functools.partial(read_collector_csv, chunk_bytes=1500))
    read_bytes = []
    real_pread = parts.pread_exact

    def counting_pread(fd, n, offset, path=""):
        read_bytes.append(n)
        return real_pread(fd, n, offset, path)

    def no_second_pass(*args, **kw):
        raise AssertionError("a new file was hashed in a separate pass")

    monkeypatch.setattr(parts, "pread_exact", counting_pread)
    monkeypatch.setattr(ingest, "sha256_of", no_second_pass)
    assert [r.status for r in ingest_paths([f], home).files] == ["ingested"]
    assert sum(read_bytes) == f.stat().st_size and len(read_bytes) > 1


def test_file_changed_between_blocks_is_detected(home, raw_dir, monkeypatch):
    """Different bytes of the same size written between two blocks: the mixed read is not kept."""
    f = write_log(raw_dir / "dsa_context_module_perf.txt", rows(300, latency=1.0))
    changed = f.read_bytes().replace(b",1.0\n", b",2.0\n")
    monkeypatch.setitem(ingest.READERS, "csv", functools.partial(read_collector_csv, chunk_bytes=2000))
    real_read = parts.HashingReader.read

    def read_then_rewrite(self, *args, **kw):
        out = real_read(self, *args, **kw)
        if self.pos == 2000:  # after the first block
            f.write_bytes(changed)
        return out

    monkeypatch.setattr(parts.HashingReader, "read", read_then_rewrite)
    (result,) = ingest_paths([f], home).files
    assert result.status == "failed" and "changed while it was read" in result.message
    assert read_measurements(home).height == 0
    monkeypatch.undo()
    (again,) = ingest_paths([f], home).files
    assert (again.status, again.rows_accepted) == ("ingested", 300)
    assert read_measurements(home).get_column("latency_ms").unique().to_list() == [2.0]
    live = [r for r in ledger(home) if r["status"] == "ingested"]
    assert [r["sha256"] for r in live] == [hashlib.sha256(changed).hexdigest()]


def test_duplicate_new_path_writes_no_data_file(home, raw_dir):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", rows(20))
    ingest_paths([f], home)
    before = sorted(p.name for p in (Path(home) / "measurements").rglob("*.parquet"))
    g = raw_dir / "copy" / "dsa_context_module_perf.txt"
    g.parent.mkdir()
    shutil.copy(f, g)
    (result,) = ingest_paths([g], home).files
    assert result.status == "skipped-duplicate" and str(f) in result.message
    assert sorted(p.name for p in (Path(home) / "measurements").rglob("*.parquet")) == before


# D10: truncation while hashing is a per-file error, not SIGBUS ------------------

_TRUNCATE_WHILE_HASHING = """
import hashlib, sys, types
from warehouse import ingest, parts, readers
readers.CHUNK_BYTES = 1 << 20  # the victim is read (and hashed) in several steps
victim, other, home = sys.argv[1:4]

class Sha:
    def __init__(self):
        self.h, self.cut = hashlib.sha256(), False
    def update(self, data):
        if not self.cut:
            open(victim, "r+b").truncate(100)  # the file shrinks under the reader
            self.cut = True
        self.h.update(data)
    def hexdigest(self):
        return self.h.hexdigest()

calls = []

def sha256():  # the first file hashed is the victim
    calls.append(1)
    return Sha() if len(calls) == 1 else hashlib.sha256()

parts.hashlib = types.SimpleNamespace(sha256=sha256)
report = ingest.ingest_paths([victim, other], home)
for r in report.files:
    print(r.status, r.path, r.message, sep="|")
"""


def test_truncated_while_hashed_is_a_per_file_error(tmp_path, raw_dir):
    victim = write_log(raw_dir / "dsa_context_module_perf.txt", rows(3000))
    other = write_log(raw_dir / "z" / "dsa_context_module_perf.txt", rows(10))
    big = victim.read_bytes() * 30  # several MB: read and hashed in several steps
    victim.write_bytes(big)
    out = subprocess.run(
        [sys.executable, "-c", _TRUNCATE_WHILE_HASHING, str(victim), str(other), str(tmp_path / "wh")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    results = [line.split("|") for line in out.stdout.splitlines()]
    assert [(s, p) for s, p, _ in results] == [("failed", str(victim)), ("ingested", str(other))]
    assert "changed while it was read" in results[0][2] and str(victim) in results[0][2]


# D13: one bad line is one quarantined row; a foreign Parquet file is named --------

JSONL_ROW = {
    "schema": "perfwh.run/1", "run_id": "r1", "timestamp": "2026-11-26T00:00:00Z",
    "device": "NVIDIA H200", "framework": "perfwh", "version": "0.1", "op": "dsa_context",
    "kernel_source": "triton", "model": "deepseek-ai/DeepSeek-V3.2", "architecture": "DeepseekV32ForCausalLM",
    "attn_dtype": "bfloat16", "kv_cache_dtype": "bfloat16", "gemm_type": "bfloat16", "num_heads": 16,
    "batch_size": 1, "isl": 1024, "prefix": 0, "tp_size": 1, "latency_ms": 0.5,
}  # fmt: skip


def test_jsonl_deep_nesting_and_huge_integer_are_one_row_each(home, raw_dir):
    f = raw_dir / "dsa_context_module_perf.jsonl"
    lines = [json.dumps(JSONL_ROW), "[" * 100_000 + "]" * 100_000, '{"batch_size": ' + "7" * 5001 + "}", json.dumps(JSONL_ROW | {"batch_size": 2})]
    f.write_text("\n".join(lines) + "\n")
    report = ingest_paths([f], home)
    assert [r.status for r in report.files] == ["ingested"]
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (4, 2, 2)
    reasons = {q["source_line"]: q["reason"] for q in quarantine(home)}
    assert reasons[2] == "invalid JSON: nested too deeply"
    assert reasons[3].startswith("invalid JSON: Exceeds the limit (4300 digits)")


def test_parquet_of_another_schema_names_missing_columns(home, raw_dir):
    f = raw_dir / "dsa_context_module_perf.parquet"
    pl.DataFrame({"m": [1], "n": [2], "latency": [0.1]}).write_parquet(f)
    (result,) = ingest_paths([f], home).files
    assert result.status == "failed"
    assert "missing column(s) framework, version, kernel_source, mla_dtype, kv_cache_dtype, num_heads" in result.message
    assert "concat_horizontal" not in result.message


# Tables the warehouse does not model -------------------------------------------


def test_unmodelled_tables_are_ignored_in_the_ledger_not_quarantined(home, raw_dir):
    gemm = raw_dir / "gemm_perf.parquet"
    pl.DataFrame(
        {"framework": ["TRTLLM"] * 3, "version": ["1.0"] * 3, "device": ["NVIDIA H200"] * 3, "op_name": ["gemm"] * 3,
         "kernel_source": ["default"] * 3, "gemm_dtype": ["fp8"] * 3, "m": [1, 2, 4], "n": [8] * 3, "k": [8] * 3,
         "latency": [0.01, 0.02, 0.03]}
    ).write_parquet(gemm)  # fmt: skip
    write_log(raw_dir / "moe_perf.txt", ["TRTLLM,1.0,NVIDIA H200,moe,default,x,y,z,a,b,1,1,1,1,0,1.0"])
    dsa = write_log(raw_dir / "dsa_context_module_perf.txt", rows(5))
    report = ingest_paths([raw_dir], home)
    status = {Path(r.path).name: (r.status, r.message) for r in report.files}
    assert status["dsa_context_module_perf.txt"][0] == "ingested"
    assert status["gemm_perf.parquet"][0] == status["moe_perf.txt"][0] == "ignored"
    assert status["gemm_perf.parquet"][1].startswith("table gemm_perf is not modelled here (modelled: ")
    assert report.rows_quarantined == 0 and report.rows_read == 5
    entries = [e for e in ledger(home) if e["status"] == "ignored"]
    assert [Path(e["path"]).name for e in entries] == ["gemm_perf.parquet", "moe_perf.txt"]
    assert all("is not modelled here" in e["message"] for e in entries)
    ingest_paths([raw_dir], home)  # recorded once, not once per run
    assert len([e for e in ledger(home) if e["status"] == "ignored"]) == 2
    assert str(dsa.resolve()) in {e["path"] for e in ledger(home) if e["status"] == "ingested"}


# D14: every skipped path reported; undecodable bytes, double columns, UTF-16 --------


def test_links_and_unreadable_folders_are_reported_with_reason(home, tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    good = write_log(landing / "h200_sxm" / "dsa_context_module_perf.txt", rows(3))
    outside = write_log(tmp_path / "elsewhere" / "h200_sxm" / "mla_context_module_perf.txt", rows(2))
    (landing / "dangling.txt").symlink_to(tmp_path / "gone.txt")
    (landing / "loop_a.txt").symlink_to(landing / "loop_b.txt")
    (landing / "loop_b.txt").symlink_to(landing / "loop_a.txt")
    (landing / "out.txt").symlink_to(outside)
    (landing / "outdir").symlink_to(outside.parent)
    (landing / "inside.txt").symlink_to(good)  # the same file under a second name: read once
    locked = landing / "locked"
    write_log(locked / "h200_sxm" / "dsa_generation_module_perf.txt", rows(1))
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # as root, chmod 000 does not lock a folder
    report = ingest_paths([landing], home)
    got = {Path(r.path).name: (r.status, r.message) for r in report.files}
    assert got["dsa_context_module_perf.txt"][0] == "ingested" and report.rows_accepted == 3
    assert got["dangling.txt"] == ("skipped-path", f"dangling symlink (-> {tmp_path / 'gone.txt'})")
    assert got["loop_a.txt"][0] == got["loop_b.txt"][0] == "skipped-path"
    assert got["loop_a.txt"][1].startswith("symlink loop")
    assert got["out.txt"] == ("skipped-path", f"symlink to outside the folder (-> {outside})")
    assert got["outdir"] == ("skipped-path", f"symlink to outside the folder (-> {outside.parent})")
    assert got["locked"] == ("skipped-path", "unreadable folder (Permission denied)")
    assert len(report.files) == 7
    in_ledger = {Path(e["path"]).name: e["message"] for e in ledger(home) if e["status"] == "skipped-path"}
    assert in_ledger == {name: msg for name, (status, msg) in got.items() if status == "skipped-path"}


def test_windows_1252_bytes_are_quarantined_with_that_reason(home, raw_dir):
    lines = rows(200)
    body = ("\n".join([HEADER, *lines]) + "\n").encode()
    bad = dsa_context_row(batch=3).replace("default", "d\xe9faut").encode("cp1252")
    f = raw_dir / "dsa_context_module_perf.txt"
    f.write_bytes(body + bad + b"\n")
    report = ingest_paths([f], home)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (201, 200, 1)
    assert quarantine(home) == [{"source_line": 202, "reason": "not valid UTF-8 text (e.g. Windows-1252 bytes)"}]
    j = raw_dir / "dsa_context_module_perf.jsonl"
    j.write_bytes(json.dumps(JSONL_ROW).encode() + b"\n" + json.dumps(JSONL_ROW | {"kernel_source": "d\xe9faut"}, ensure_ascii=False).encode("cp1252") + b"\n")
    jr = ingest_paths([j], home)
    assert (jr.rows_accepted, jr.rows_quarantined) == (1, 1)


def test_header_naming_a_column_twice_is_an_error(home, raw_dir):
    header = HEADER + ",latency"
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [r + ",9.0" for r in rows(3)], header=header)
    report = ingest_paths([f], home)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (3, 0, 3)
    assert {q["reason"] for q in quarantine(home)} == {"header names column(s) latency more than once"}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-16-le"])
def test_utf16_is_a_file_level_error(home, raw_dir, encoding):
    f = raw_dir / "dsa_context_module_perf.txt"
    f.write_bytes(("\n".join([HEADER, *rows(3)]) + "\n").encode(encoding))
    (result,) = ingest_paths([f], home).files
    assert result.status == "failed" and "UTF-16" in result.message and str(f) in result.message
    assert sql("select count(*) from quarantine", home).item() == 0


# Issue 12: latencies outside 1 us .. 1 hour -------------------------------------


@pytest.mark.parametrize("n_rows", [5, 3000])  # a small block and a fast-path log
def test_latency_outside_physical_bounds_is_quarantined(home, raw_dir, n_rows):
    lines = rows(n_rows)
    lines[1] = dsa_context_row(batch=5, isl=7, latency=1e300)
    lines[2] = dsa_context_row(batch=5, isl=9, latency=0.0005)
    lines[3] = dsa_context_row(batch=5, isl=11, latency=0.001)  # exactly 1 us: kept
    f = write_log(raw_dir / "dsa_context_module_perf.txt", lines)
    report = ingest_paths([f], home)
    assert (report.rows_accepted, report.rows_quarantined) == (n_rows - 2, 2)
    assert quarantine(home) == [
        {"source_line": 3, "reason": "latency: 1e+300 ms outside [0.001, 3600000.0] ms (1 us to 1 hour per call)"},
        {"source_line": 4, "reason": "latency: 0.0005 ms outside [0.001, 3600000.0] ms (1 us to 1 hour per call)"},
    ]


# D15: disk full and a read-only home ------------------------------------------------


def _namespace_mount_works() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _namespace_mount_works(), reason="needs root and `unshare -m` to mount a small tmpfs")


def _perfwh_in_tmpfs(home: Path, raw: Path, mount_opts: str) -> subprocess.CompletedProcess:
    script = (
        f"mount -t tmpfs -o {mount_opts} tmpfs {home} && "
        f"{sys.executable} -m perfwh.cli ingest {raw} --home {home}; echo rc=$?; "
        f"find {home} -name '*.tmp' | sed 's/^/leftover: /'"
    )
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)


@needs_mount
def test_disk_full_is_one_line_and_leaves_no_tmp_files(tmp_path):
    raw = write_log(tmp_path / "raw" / "h200_sxm" / "dsa_context_module_perf.txt",
                    [dsa_context_row(batch=1 + i, isl=1 + i, latency=1 + i / 7) for i in range(20000)])  # fmt: skip
    home = tmp_path / "wh"
    home.mkdir()
    out = _perfwh_in_tmpfs(home, raw, "size=64k")
    assert "rc=1" in out.stdout or "rc=2" in out.stdout, out
    assert "Traceback" not in out.stderr, out.stderr
    assert "leftover:" not in out.stdout
    assert "No space left on device" in out.stderr
    assert all(len(line) < 400 for line in out.stderr.splitlines())


@needs_mount
def test_read_only_home_is_one_line(tmp_path):
    raw = write_log(tmp_path / "raw" / "h200_sxm" / "dsa_context_module_perf.txt", rows(3))
    home = tmp_path / "wh"
    home.mkdir()
    out = _perfwh_in_tmpfs(home, raw, "ro")
    assert "rc=2" in out.stdout, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Read-only file system" in lines[0] and str(home) in lines[0], out.stderr


def test_an_ignored_table_is_not_pending_again(home, raw_dir):
    from warehouse.landing import pending, scan_landing
    from warehouse.manifest import load_manifest
    from warehouse.paths import WarehousePaths

    write_log(raw_dir / "gemm_perf.txt", ["TRTLLM,1.0,NVIDIA H200,gemm,default,x,y,z,a,b,1,1,1,1,0,1.0"])
    root = raw_dir.parents[2]
    assert [f.key for f in pending(scan_landing(root), load_manifest(WarehousePaths.at(home)))] == [
        "h200_sxm/trtllm/1.0/gemm_perf.txt"
    ]
    ingest_paths([root], home)
    assert pending(scan_landing(root), load_manifest(WarehousePaths.at(home))) == []


def test_blank_system_falls_back_and_a_malformed_one_is_quarantined(home, raw_dir):
    """A JSONL `"system": ""` used to be stored as a row of system '' that no query reaches."""
    f = raw_dir / "dsa_context_module_perf.jsonl"
    lines = [JSONL_ROW | {"system": s, "isl": 1024 * (i + 1)} for i, s in enumerate(["", "  ", "H200_SXM", "h200 sxm/x"])]
    f.write_text("".join(json.dumps(r) + "\n" for r in lines))
    report = ingest_paths([f], home)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (4, 3, 1)
    assert sql("select distinct system from measurements", home).rows() == [("h200_sxm",)]
    assert quarantine(home) == [{"source_line": 4, "reason": "system: invalid name h200 sxm/x"}]


@pytest.mark.parametrize("name", ["dsa_context_module_perf.txt", "dsa_context_module_perf.jsonl"])
def test_bare_cr_line_ends_are_named_not_called_a_truncated_line(name, home, raw_dir):
    """A file saved with classic-Mac line ends is one line to the readers; its reason said
    'truncated last line' (CSV) or 'invalid JSON: Extra data' (JSONL)."""
    if name.endswith(".txt"):
        lines = [HEADER, *rows(3)]
    else:
        lines = [json.dumps(JSONL_ROW | {"isl": 1024 * (i + 1)}) for i in range(3)]
    f = raw_dir / name
    f.write_bytes(("\r".join(lines) + "\r").encode())
    report = ingest_paths([f], home)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (1, 0, 1)
    assert quarantine(home) == [{"source_line": 1, "reason": "lines end in a bare CR (classic Mac text), so the "
                                 "file is one line: convert it to LF or CRLF"}]
