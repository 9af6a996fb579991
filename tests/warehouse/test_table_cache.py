"""Delta tables kept per process (warehouse.table_cache through Store.table)."""

import shutil
import subprocess
import sys
import threading

import pytest

from warehouse import table_cache
from warehouse.tables import Store, StorageError

EVENT = {"event": "ingested", "sha256": "a" * 64, "path": "x.txt", "status": "ingested"}


def _event(n: int) -> dict:
    return {**EVENT, "sha256": f"{n:064d}"}


@pytest.fixture(autouse=True)
def _fresh_cache():
    table_cache.forget()
    yield
    table_cache.forget()


def test_one_open_table_per_uri_kept_at_the_latest_version(tmp_path):
    Store(tmp_path).create_tables()
    first = Store(tmp_path).table("ledger")
    assert Store(tmp_path).table("ledger") is first  # a new Store, the same opened table
    v = Store(tmp_path).append_events([_event(1)])
    # a commit by another process is seen too
    code = ("import sys; from warehouse.tables import Store; "
            "print(Store(sys.argv[1]).append_events([{'event': 'ingested', 'sha256': '2' * 64}]))")
    other = int(subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True,
                               text=True).stdout)
    assert other == v + 1
    got = Store(tmp_path).table("ledger")
    assert got is first and got.version() == other


def test_an_older_version_is_its_own_table_and_the_kept_one_stays_latest(tmp_path):
    store = Store(tmp_path)
    store.create_tables()
    v1 = store.append_events([_event(1)])
    v2 = store.append_events([_event(2)])
    old = store.table("ledger", v1)
    assert old.version() == v1 and len(old.to_pyarrow_table()) == 1
    assert store.table("ledger").version() == v2 and store.table("ledger") is not old
    assert len(store.table("ledger", v2).to_pyarrow_table()) == 2


def test_a_table_deleted_and_made_again_is_opened_afresh(tmp_path):
    store = Store(tmp_path)
    store.create_tables()
    for n in range(3):
        store.append_events([_event(n)])
    assert store.table("ledger").version() == 3
    shutil.rmtree(tmp_path / "ledger")
    with pytest.raises(StorageError):
        store.table("ledger")
    store.create_tables()
    assert store.table("ledger").version() == 0 and len(store.table("ledger").to_pyarrow_table()) == 0


def test_threads_do_not_share_a_table(tmp_path):
    Store(tmp_path).create_tables()
    here = Store(tmp_path).table("ledger")
    there = []
    t = threading.Thread(target=lambda: there.append(Store(tmp_path).table("ledger")))
    t.start()
    t.join()
    assert there[0] is not here and there[0].version() == here.version()


def test_a_snapshot_is_loaded_once_per_ledger_version(tmp_path):
    from warehouse.tables import load_snapshot

    store = Store(tmp_path)
    store.create_tables()
    v1 = store.append_events([_event(1)])
    first = load_snapshot(tmp_path)
    assert load_snapshot(tmp_path) is first and first.version == v1
    v2 = store.append_events([_event(2)])
    second = load_snapshot(tmp_path)
    assert second is not first and second.version == v2 and second.events.height == 2
    assert load_snapshot(tmp_path, as_of=v1) is first  # an older version: the one already loaded
    # the warehouse deleted and made again: the same version number is another snapshot
    shutil.rmtree(tmp_path)
    store = Store(tmp_path)
    store.create_tables()
    store.append_events([_event(7)])
    assert store.append_events([_event(8)]) == v2
    again = load_snapshot(tmp_path)
    assert again is not second and sorted(again.events["sha256"]) == [f"{7:064d}", f"{8:064d}"]
