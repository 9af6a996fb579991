"""Delta tables this process has opened, kept for reuse (`warehouse.tables.Store.table`).

Opening a Delta table replays its transaction log (a listing and the JSON commits
since the last checkpoint); an ingest run opens the same three tables several
times per raw log, and a sensor tick or a fleet of small runs in one process does
that hundreds of times. A kept table is brought to the latest version with
`update_incremental` (only the commits since), which is what a fresh open would
have read.

One entry per (table URI, process, thread): a DeltaTable is mutable (loading a
version moves it), so no two threads share one, and a forked child never reuses
its parent's. A local table deleted and made again under the same path is
recognised by its first commit file (inode and change time) and opened afresh.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from deltalake import DeltaTable

_KEPT: dict[tuple, tuple[object, DeltaTable]] = {}
_LOCK = threading.Lock()
FIRST_COMMIT = "_delta_log/" + "0" * 20 + ".json"


def identity(uri: str, local: bool) -> object:
    """What must be unchanged for a kept table to still be this URI's table (None: do not keep)."""
    if not local:
        return "object store"
    try:
        st = (Path(uri) / FIRST_COMMIT).stat()
    except OSError:  # no first commit file (log cleanup, or not a table): open afresh each time
        return None
    return (st.st_ino, st.st_ctime_ns)


def _key(uri: str) -> tuple:
    return (uri, os.getpid(), threading.get_ident())


def latest(uri: str, local: bool) -> DeltaTable | None:
    """The kept table of `uri` at its latest version, or None (then open it and `keep` it)."""
    with _LOCK:
        kept = _KEPT.get(_key(uri))
    if kept is None:
        return None
    ident, dt = kept
    if ident is None or ident != identity(uri, local):
        forget(uri)
        return None
    try:
        dt.update_incremental()
    except Exception:  # noqa: BLE001 - a table that cannot be brought up to date is opened afresh
        forget(uri)
        return None
    return dt


def keep(uri: str, local: bool, dt: DeltaTable) -> DeltaTable:
    """Keep `dt` (opened at the latest version) for the next `latest(uri)` of this thread."""
    ident = identity(uri, local)
    if ident is not None:
        with _LOCK:
            _KEPT[_key(uri)] = (ident, dt)
    return dt


def forget(uri: str | None = None) -> None:
    """Drop the kept table of `uri` in this thread (None: every kept table of every thread)."""
    with _LOCK:
        if uri is None:
            _KEPT.clear()
        else:
            _KEPT.pop(_key(uri), None)
