"""Batched commits: a run's files become live in one commit per table per batch, and a
file that fails or quarantines rows does not sink its batch-mates."""

from __future__ import annotations

from pathlib import Path

from deltalake import DeltaTable

from tests.conftest import HEADER, dsa_context_row, write_log
from warehouse.ingest import ingest_paths
from warehouse.read import read_measurements, sql

TABLES = ("measurements", "quarantine", "ledger")


def _rows(version: str, n: int, latency: float = 1.0) -> list[str]:
    return [dsa_context_row(isl=i + 1, latency=latency).replace("TRTLLM,1.0,", f"TRTLLM,{version},") for i in range(n)]


def versions(home: Path) -> dict[str, int]:
    """The latest Delta version of each table, read afresh from its log."""
    return {t: DeltaTable(str(home / t)).version() for t in TABLES}


def _slice(root: Path, name: str) -> Path:
    return root / name / "h200_sxm" / "trtllm" / "dsa_context_module_perf.txt"


def test_a_batch_is_one_commit_per_table_and_a_bad_file_does_not_sink_it(home, tmp_path):
    raw = tmp_path / "raw"
    write_log(_slice(raw, "a0"), _rows("1.0", 5))  # the tables exist before the measured run
    ingest_paths([raw / "a0"], home)
    before = versions(home)
    for i in range(1, 5):
        write_log(_slice(raw, f"a{i}"), _rows(f"1.{i}", 10 + i))
    dirty = _rows("2.0", 6)
    dirty[2] = dirty[2].rsplit(",", 1)[0] + ",-1.0"  # one row quarantined
    write_log(_slice(raw, "b_dirty"), dirty)
    utf16 = _slice(raw, "c_utf16")
    utf16.parent.mkdir(parents=True)
    utf16.write_bytes(("\n".join([HEADER, *_rows("3.0", 3)]) + "\n").encode("utf-16"))
    dup = _slice(raw, "d_copy")
    dup.parent.mkdir(parents=True)
    dup.write_bytes(_slice(raw, "a1").read_bytes())  # the same content as a batch-mate
    report = ingest_paths([raw], home)
    status = {Path(r.path).parent.parent.parent.name: r.status for r in report.files}
    assert status == {
        "a0": "skipped-unchanged", "a1": "ingested", "a2": "ingested", "a3": "ingested", "a4": "ingested",
        "b_dirty": "ingested", "c_utf16": "failed", "d_copy": "skipped-duplicate",
    }  # fmt: skip
    assert versions(home) == {t: v + 1 for t, v in before.items()}  # one commit each for the whole run
    expected = 5 + sum(10 + i for i in range(1, 5)) + 5
    assert read_measurements(home).height == expected
    assert sql("select count(*) from quarantine", home).item() == 1
    ledger = sql("select path, status from ingest_ledger", home)
    assert dict(ledger.iter_rows())[str(utf16)] == "failed"
    assert sql("select sum(rows_accepted) from ingest_ledger where status = 'ingested'", home).item() == expected


def test_batch_size_bounds_the_commits(home, tmp_path):
    raw = tmp_path / "raw"
    for i in range(7):
        write_log(_slice(raw, f"a{i}"), _rows(f"1.{i}", 4))
    seen = []
    report = ingest_paths([raw], home, batch_files=3,
                          progress=lambda n, total, path, result: seen.append((n, result and result.status)))
    assert report.count("ingested") == 7
    # ledger: the table's creation, then one commit per batch of at most three files (3 + 3 + 1)
    assert versions(home)["ledger"] == 3
    assert versions(home)["measurements"] == 3
    # every file reports its start and, once its batch is committed, its result
    assert [n for n, status in seen if status == "ingested"] == list(range(1, 8))
    assert [n for n, status in seen if status is None] == list(range(1, 8))
    assert read_measurements(home).height == 28

    few_rows = tmp_path / "raw2"
    for i in range(4):
        write_log(_slice(few_rows, f"b{i}"), _rows(f"2.{i}", 4))
    before = versions(home)["ledger"]
    ingest_paths([few_rows], home, batch_rows=8)  # two files of 4 rows fill a batch
    assert versions(home)["ledger"] == before + 2
    assert read_measurements(home).height == 28 + 16


def test_changed_file_and_a_new_copy_of_its_old_content_in_one_batch_keep_both(home, tmp_path):
    """P changes from X to Y and Q arrives holding X, in one batch: P's old partition is
    retired, but Q made X live again in the same commit, so X's rows stay (Q's)."""
    raw = tmp_path / "raw"
    p = write_log(_slice(raw, "a_p"), _rows("1.0", 3, latency=1.0))
    ingest_paths([raw], home)
    old = p.read_bytes()
    write_log(p, _rows("1.0", 5, latency=2.0))
    q = _slice(raw, "b_q")
    q.parent.mkdir(parents=True)
    q.write_bytes(old)
    report = ingest_paths([raw], home)
    assert [(r.path, r.status) for r in report.files] == [(str(p), "replaced"), (str(q), "ingested")]
    m = read_measurements(home)
    assert m.height == 8
    assert m.group_by("source_file").len().sort("source_file").rows() == [(str(p), 5), (str(q), 3)]
    # a later commit moves readers to newer data-table versions: X's partition must still be there
    write_log(_slice(raw, "c_later"), _rows("2.0", 2))
    again = ingest_paths([raw], home)
    assert sorted(r.status for r in again.files) == ["ingested"] + ["skipped-unchanged"] * 2
    m = read_measurements(home)
    assert m.group_by("source_file").len().sort("source_file").rows() == [
        (str(p), 5), (str(q), 3), (str(_slice(raw, "c_later")), 2)
    ]
