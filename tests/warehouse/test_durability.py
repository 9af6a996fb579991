"""Crash safety and reader isolation: kill -9 mid-ingest, readers during ingest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import duckdb

from tests.conftest import REPO, dsa_context_row, write_log
from warehouse.ingest import ingest_paths
from warehouse.manifest import load_manifest
from warehouse.paths import WarehousePaths
from warehouse.read import read_measurements, sql

ROWS_PER_FILE = 20_000


def make_logs(root: Path, n_files: int) -> tuple[list[Path], int]:
    files = []
    for i in range(n_files):
        d = root / "h200_sxm" / "trtllm" / f"v{i}"
        lines = [dsa_context_row(batch=1 + j % 64, isl=1 + j, latency=0.5 + i + j * 1e-4) for j in range(ROWS_PER_FILE)]
        files.append(write_log(d / "dsa_context_module_perf.txt", lines))
    return files, n_files * ROWS_PER_FILE


def check_consistent(home: Path) -> int:
    """The committed state adds up: ledger counts = rows visible, every file named exists."""
    paths = WarehousePaths.at(home)
    manifest = load_manifest(paths)
    for rel in manifest.referenced():
        assert (paths.home / rel).exists(), rel
    visible = read_measurements(home).height
    assert visible == sum(e.rows_accepted for e in manifest.sources.values())
    if paths.duckdb.exists():
        n = sql("select count(*) from measurements", home).item()
        ledger = sql("select coalesce(sum(rows_accepted), 0) from ingest_ledger where status = 'ingested'", home).item()
        assert n == ledger
    return visible


def _kill_when_child_says(code: str, raw: Path, home: Path, word: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", code, str(raw), str(home)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == word
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def test_kill_9_mid_ingest_then_clean_rerun(tmp_path):
    raw = tmp_path / "raw"
    home = tmp_path / "wh"
    files, total = make_logs(raw, 8)
    # Batches of three files; a file's result reaches `progress` once its batch is committed.
    # The child stalls right after the first batch commits, so the kill lands mid-run (in the
    # second batch) on any machine speed (a timed kill missed on a fast CI host).
    code = (
        "import sys, time; from warehouse.ingest import ingest_paths\n"
        "def progress(n, total, path, result):\n"
        "    if result is not None and result.status == 'ingested' and n == 3:\n"
        "        print('committed', flush=True); time.sleep(120)\n"
        "ingest_paths([sys.argv[1]], sys.argv[2], progress=progress, batch_files=3)"
    )
    _kill_when_child_says(code, raw, home, "committed")
    assert check_consistent(home) == 3 * ROWS_PER_FILE
    report = ingest_paths([raw], home)
    assert report.rows_quarantined == 0
    assert check_consistent(home) == total
    assert sorted(r.status for r in report.files) == ["ingested"] * 5 + ["skipped-unchanged"] * 3
    again = ingest_paths([raw], home)
    assert {r.status for r in again.files} == {"skipped-unchanged"}


def test_kill_between_data_commits_and_ledger_commit_loses_the_batch_whole(tmp_path):
    """A batch is all or nothing: killed after its data commits but before its ledger commit,
    none of its rows is visible, clean-up drops its partitions, a rerun ingests it once."""
    from deltalake import DeltaTable

    from warehouse.ingest import remove_orphans
    from warehouse.tables import Store

    raw = tmp_path / "raw"
    home = tmp_path / "wh"
    files, total = make_logs(raw, 8)
    code = (
        "import sys, time; from warehouse import tables\n"
        "from warehouse.ingest import ingest_paths\n"
        "append, calls = tables.Store.append_events, []\n"
        "def stalled(self, events):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:  # the second batch: its data commits are done, its ledger commit not\n"
        "        print('data committed', flush=True); time.sleep(120)\n"
        "    return append(self, events)\n"
        "tables.Store.append_events = stalled\n"
        "ingest_paths([sys.argv[1]], sys.argv[2], batch_files=3)"
    )
    _kill_when_child_says(code, raw, home, "data committed")
    assert check_consistent(home) == 3 * ROWS_PER_FILE
    manifest = load_manifest(WarehousePaths.at(home))
    live = set(manifest.sources)
    assert len(live) == 3
    on_disk = set(Store.files(DeltaTable(str(home / "measurements"))).get_column("sha").to_list())
    assert len(on_disk - live) == 3  # the second batch's partitions: committed, referenced by no ledger event
    assert remove_orphans(Store(home), manifest, grace_s=0) == 3
    assert set(Store.files(DeltaTable(str(home / "measurements"))).get_column("sha").to_list()) == live
    assert check_consistent(home) == 3 * ROWS_PER_FILE
    report = ingest_paths([raw], home)
    assert sorted(r.status for r in report.files) == ["ingested"] * 5 + ["skipped-unchanged"] * 3
    assert check_consistent(home) == total
    m = read_measurements(home)
    assert m.select("source_file", "source_line").is_duplicated().sum() == 0


def test_readers_see_old_or_new_state_during_ingest(tmp_path):
    raw = tmp_path / "raw"
    home = tmp_path / "wh"
    files, total = make_logs(raw, 6)
    ingest_paths([files[0]], home)
    allowed = {ROWS_PER_FILE * k for k in range(1, 7)}
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                con = duckdb.connect(str(home / "perf.duckdb"), read_only=True)
                try:
                    seen.append(con.sql("select count(*) from measurements").fetchall()[0][0])
                finally:
                    con.close()
                seen.append(read_measurements(home).height)
            except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
                errors.append(exc)
                return

    t = threading.Thread(target=reader)
    t.start()
    try:
        for f in files[1:]:
            ingest_paths([f], home)
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    assert seen and set(seen) <= allowed
    assert read_measurements(home).height == total


def test_write_lock_serialises_writers(tmp_path):
    from warehouse.ingest import writer_lock

    paths = WarehousePaths.at(tmp_path / "wh")
    with writer_lock(paths):
        code = (
            "import sys; from warehouse.ingest import writer_lock; from warehouse.paths import WarehousePaths; "
            "ctx = writer_lock(WarehousePaths.at(sys.argv[1]), wait=False)\n"
            "try:\n    ctx.__enter__()\nexcept RuntimeError as e:\n    print('busy', e); sys.exit(3)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(paths.home)],
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            capture_output=True,
            text=True,
        )
    assert out.returncode == 3 and "busy" in out.stdout


_RACER = """
import sys, time
from pathlib import Path
import deltalake
from warehouse.ingest import ingest_paths

raw, home, me, other = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
write = deltalake.DeltaTable.create_write_transaction

def at_the_same_moment(self, actions, *args, **kwargs):
    if actions and "measurements" in self.table_uri:  # both loaded the table before either commits
        me.touch()
        while not other.exists():
            time.sleep(0.01)
    return write(self, actions, *args, **kwargs)

deltalake.DeltaTable.create_write_transaction = at_the_same_moment
ingest_paths([raw], home)
"""


def test_two_writers_ingesting_one_file_at_once_do_not_double_it(tmp_path):
    """Two `perfwh ingest` of one file on one home at once each committed a data file into its
    partition, and readers counted both: every row twice."""
    (raw,), total = make_logs(tmp_path / "raw", 1)
    home = tmp_path / "wh"
    ingest_paths([], home)  # the tables exist before the race (a fresh home races on creating them too)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    flags = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(raw), str(home), str(me), str(other)], env=env)
             for me, other in (flags, flags[::-1])]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    from warehouse.tables import Store

    assert Store.files(Store(home).table("measurements")).height == 2  # the race did happen
    assert check_consistent(home) == total
    assert sql("select count(*) from measurements", home).item() == total

    from warehouse.ingest import remove_orphans
    from warehouse.manifest import manifest_of
    from warehouse.tables import load_snapshot

    assert remove_orphans(Store(home), manifest_of(load_snapshot(home)), grace_s=0) == 1  # the loser's file goes
    assert Store.files(Store(home).table("measurements")).height == 1
    assert check_consistent(home) == total


_PAUSED_BEFORE_LEDGER = """
import sys, time
from pathlib import Path
from warehouse import tables
from warehouse.ingest import ingest_paths

raw, home, ready, go = sys.argv[1:5]
append = tables.Store.append_events

def paused(self, events):
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.01)
    return append(self, events)

tables.Store.append_events = paused
ingest_paths([raw], home)
"""


def test_two_writers_ingesting_a_paths_old_and_new_content_leave_one_live(tmp_path):
    """A writer paused before its ledger commit (content v1) while the file changed and another
    writer ingested v2: both contents stayed live, every row of the path counted twice, and
    later runs called the path unchanged."""
    raw = tmp_path / "raw" / "h200_sxm" / "trtllm" / "1.0" / "dsa_context_module_perf.txt"
    write_log(raw, [dsa_context_row(isl=1024 * (i + 1), latency=1.0) for i in range(10)])
    home = tmp_path / "wh"
    ingest_paths([], home)
    ready, go = tmp_path / "ready", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", _PAUSED_BEFORE_LEDGER, str(raw), str(home), str(ready), str(go)],
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
    while not ready.exists():
        assert first.poll() is None
        threading.Event().wait(0.02)
    write_log(raw, [dsa_context_row(isl=1024 * (i + 1), latency=2.0) for i in range(10)])
    assert ingest_paths([raw], home).rows_accepted == 10
    go.touch()
    assert first.wait(timeout=300) == 0
    assert check_consistent(home) == 10
    assert sql("select latency_ms, count(*) from measurements group by all", home).rows() == [(2.0, 10)]
    statuses = sql("select status, message from ingest_ledger order by status", home).rows()
    assert statuses[0][0] == "ingested" and statuses[1][0] == "superseded"
    assert statuses[1][1].endswith("(ingested at the same time)")
    assert [r.status for r in ingest_paths([raw], home).files] == ["skipped-unchanged"]
