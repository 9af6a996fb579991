"""Fault isolation (CPU): shapes run in a worker process that is restarted after
a device error, a crash or a hang; each failure is recorded (run log and
.failures.jsonl) and the sweep goes on. Fake measurers, no GPU."""
import hashlib
import json

import pytest

pytest.importorskip("yaml")

from collector import VERSION  # noqa: E402
from collector.logs import FAILURES, read_failures, read_rows, shape_from_json  # noqa: E402
from collector.runner import sweep  # noqa: E402
from collector.sweep import Shape  # noqa: E402
from collector.worker import Failure, Worker  # noqa: E402

FAKE = "tests.collector.fake_measurer:FaultyMeasurer"
SHAPES = [Shape("mla_generation", 16, "bfloat16", "bfloat16", b, 1, 1024) for b in (1, 2, 3, 4, 5, 6)]


def _spec(tmp_path):
    p = tmp_path / "spec.yaml"
    lines = ["shapes:"] + [f"  - [{s.op}, {s.num_heads}, {s.gemm_type}, {s.kv_cache_dtype}, {s.batch_size}, "
                           f"{s.isl}, {s.prefix}]" for s in SHAPES]
    p.write_text("\n".join(lines) + "\n")
    return p


def _run(tmp_path, faults=None, **kw):
    logs = []
    res = sweep(_spec(tmp_path), tmp_path / "out", measurer=FAKE, measurer_kwargs={"faults": faults or {}},
                repeats=False, log=lambda *a: logs.append(" ".join(map(str, a))), **kw)
    return res, logs


def test_device_error_and_crash_do_not_poison_later_shapes(tmp_path):
    faults = {SHAPES[1].label(): "device", SHAPES[3].label(): "abort"}
    res, logs = _run(tmp_path, faults)
    out = tmp_path / "out"
    rows = read_rows(out, "h200_sxm")
    measured = {shape_from_json(r).key() for r in rows}
    # every shape but the two faulty ones was measured, including those right after each fault
    assert measured == {s.key() for i, s in enumerate(SHAPES) if i not in (1, 3)}
    assert all(r["latency_ms"] > 0 for r in rows)
    assert res["measured"] == 4 and res["worker_starts"] == 3
    fails = read_failures(out, "h200_sxm")
    assert [(f["batch_size"], f["failure_kind"]) for f in fails] == [(2, "device"), (4, "died")]
    assert "illegal memory access" in fails[0]["error"]
    assert "SIGABRT" in fails[1]["error"]
    assert all(f["status"] == "failed" and "latency_ms" not in f and f["op"] == "mla_generation" for f in fails)
    fail_lines = [x for x in logs if "FAIL" in x]
    assert len(fail_lines) == 2 and SHAPES[1].label() in fail_lines[0] and "restarted" in fail_lines[0]
    assert (out / "h200_sxm" / "perfwh" / VERSION / FAILURES).exists()


def test_failures_file_is_not_a_raw_log_for_the_warehouse(tmp_path):
    pytest.importorskip("polars")
    from warehouse.ingest import discover
    _run(tmp_path, {SHAPES[0].label(): "device"})
    found = {p.name for p in discover([tmp_path / "out"])}
    assert FAILURES not in found and any(n.endswith(".jsonl") for n in found)


def test_hang_is_killed_and_the_sweep_goes_on(tmp_path):
    res, logs = _run(tmp_path, {SHAPES[0].label(): "hang"}, shape_timeout_s=3)
    fails = read_failures(tmp_path / "out", "h200_sxm")
    assert [f["failure_kind"] for f in fails] == ["timeout"]
    assert res["measured"] == 5 and res["worker_starts"] == 2


def test_plain_exception_keeps_the_worker(tmp_path):
    res, _ = _run(tmp_path, {SHAPES[2].label(): "error"})
    fails = read_failures(tmp_path / "out", "h200_sxm")
    assert [f["failure_kind"] for f in fails] == ["error"] and "bad shape" in fails[0]["error"]
    assert res["measured"] == 5 and res["worker_starts"] == 1


def test_resume_retries_failed_shapes_in_new_files(tmp_path):
    _run(tmp_path, {SHAPES[1].label(): "device"}, tag="first")
    d = tmp_path / "out" / "h200_sxm" / "perfwh" / VERSION
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()}
    res, _ = _run(tmp_path, tag="second")
    assert res["measured"] == 1 and not res["failed"]  # only the failed shape was left
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()}
    assert {k: after[k] for k in before} == before  # earlier files untouched
    new = sorted(set(after) - set(before))
    assert new == ["mla_generation_module_perf.second.jsonl", "mla_generation_module_perf.second.txt"]
    row = json.loads((d / new[0]).read_text())
    assert row["batch_size"] == 2
    assert len(read_rows(tmp_path / "out", "h200_sxm")) == 6


def test_a_row_in_the_csv_but_not_the_jsonl_is_not_kept_twice(tmp_path):
    """Killed after a row's CSV line and before its JSONL line: the resume measures the shape again and
    the CSV mirror keeps one line per JSONL row, in the same order."""
    from collector.logs import RawLogWriter

    w = RawLogWriter(tmp_path, "h200_sxm", "NVIDIA H200", "r1", {})
    w.write(SHAPES[0], 1.0, [1.0], None)
    csv_p, js_p = w.paths(SHAPES[0].op)
    with open(csv_p, "a") as f:  # the killed run's CSV line, no JSONL line
        f.write(w.csv_row(SHAPES[1], 9.0) + "\n")
    RawLogWriter(tmp_path, "h200_sxm", "NVIDIA H200", "r2", {}).write(SHAPES[1], 2.0, [2.0], None)
    csv_rows = csv_p.read_text().splitlines()[1:]
    assert [r.rsplit(",", 1)[1] for r in csv_rows] == ["1.00000", "2.00000"]
    assert [json.loads(x)["latency_ms"] for x in js_p.read_text().splitlines()] == [1.0, 2.0]


def test_worker_start_failure_is_one_clear_error():
    w = Worker(FAKE, {"fail_start": True}, start_timeout_s=60)
    with pytest.raises(RuntimeError, match="failed to start: ValueError: no GPU here"):
        w.start()


def test_worker_measure_returns_failure_objects():
    w = Worker(FAKE, {"faults": {SHAPES[0].label(): "device"}}, start_timeout_s=60)
    try:
        f = w.measure(SHAPES[0].asdict())
        assert isinstance(f, Failure) and f.kind == "device" and f.restarted
        ok = w.measure(SHAPES[1].asdict())  # a fresh worker
        assert ok["median_ms"] == pytest.approx(0.02 + 1024e-6) and w.starts == 2
    finally:
        w.close()


def test_resume_after_a_row_torn_mid_write_measures_it_again(tmp_path):
    """A run killed mid-write leaves a JSONL line without its end: the resume died on json.loads (after
    starting the GPU worker), and an appended row would have been glued to the torn line."""
    _run(tmp_path, tag=None)
    d = tmp_path / "out" / "h200_sxm" / "perfwh" / VERSION
    log = d / "mla_generation_module_perf.jsonl"
    lines = log.read_text().splitlines()
    torn = json.loads(lines[-1])
    log.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])  # the last row cut mid-line
    res, logs = _run(tmp_path, tag=None)
    assert res["measured"] == 1 and not res["failed"]
    assert any(f"1 unreadable line(s) in the raw logs" in line and f"{log}:6" in line for line in logs)
    text = log.read_text().splitlines()
    assert len(text) == 7 and text[5] == lines[-1][:40]  # the torn line kept, the new row on its own line
    assert json.loads(text[6])["batch_size"] == torn["batch_size"]
    assert len(read_rows(tmp_path / "out", "h200_sxm")) == 6
    # the CSV mirror got the torn row before the kill: it is dropped, so the re-measured shape is there once
    csv_rows = (d / "mla_generation_module_perf.txt").read_text().splitlines()[1:]
    assert len(csv_rows) == 6 and len({r.rsplit(",", 1)[0] for r in csv_rows}) == 6
