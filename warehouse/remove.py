"""Take a raw log's rows back out of the warehouse.

`remove_sources` retires live sources (named by path or content sha256) with
one ledger commit: a `removed` event per source. Readers keep only the
partitions of live sources, so that commit alone takes the rows out of every
view; the partitions are then emptied (data commits no reader depends on), and
their files deleted by vacuum after the retention period. The ledger keeps the
history: `ingest_ledger` shows the source as `removed`, and `perfwh sql
--as-of` an earlier version still sees its rows.

A removed file that is still on disk comes back if it is ingested again
(`perfwh ingest PATH`, or `materialize` / the sensor while it sits in the
landing folder): removal is of rows, not a ban on content.

`retire_deleted` applies the landing folder's policy for raw logs deleted
from it (`PERFWH_ON_DELETE`): `keep` (the default: the warehouse keeps what
it measured; deleting a log frees disk space only) or `retire` (the rows of a
log deleted from the landing folder leave with it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .ingest import _event, _Ledger
from .manifest import SourceEntry, manifest_of
from .paths import WarehousePaths
from .tables import Store, load_snapshot
from .views import refresh_views

ON_DELETE_ENV = "PERFWH_ON_DELETE"
ON_DELETE = ("keep", "retire")
_SHA = re.compile(r"^[0-9a-f]{8,64}$")


@dataclass(frozen=True)
class Removed:
    path: str
    sha256: str
    rows_accepted: int
    rows_quarantined: int


def _match(sources: dict[str, SourceEntry], target: str) -> list[SourceEntry]:
    """Live sources named by `target`: a path (as given or resolved), or a sha256 (or a unique prefix of 8+)."""
    as_path = str(Path(target).expanduser().resolve())
    hits = [e for e in sources.values() if e.path in (target, as_path)]
    if not hits and _SHA.match(target.lower()):
        hits = [e for sha, e in sources.items() if sha.startswith(target.lower())]
        if len(hits) > 1:
            raise ValueError(f"sha256 prefix {target} names {len(hits)} sources: give more digits")
    return hits


def remove_sources(targets: list[str], home=None, *, why: str = "removed by perfwh remove") -> list[Removed]:
    """Retire the live sources named by `targets` in one ledger commit; ValueError naming any not found."""
    paths = WarehousePaths.at(home)
    store = Store(paths.home)
    if not store.exists():
        raise FileNotFoundError(f"no warehouse at {paths.home}: nothing to remove")
    manifest = manifest_of(load_snapshot(paths.home))
    chosen: dict[str, SourceEntry] = {}
    missing = []
    for target in targets:
        hits = _match(manifest.sources, target)
        if not hits:
            missing.append(target)
        chosen.update({e.sha256: e for e in hits})
    if missing:
        raise ValueError(f"not a live source in {paths.home}: {', '.join(missing)} "
                         "(perfwh sql \"select path, sha256, status from ingest_ledger\" lists them)")
    return _retire(store, manifest, list(chosen.values()), why)


def _retire(store: Store, manifest, entries: list[SourceEntry], why: str) -> list[Removed]:
    if not entries:
        return []
    _Ledger(store, manifest).commit([_event(e, "removed", message=why) for e in entries], entries)
    refresh_views(store.home)
    return [Removed(e.path, e.sha256, e.rows_accepted, e.rows_quarantined) for e in entries]


def on_delete_policy(value: str | None = None) -> str:
    policy = (value or os.environ.get(ON_DELETE_ENV) or "keep").strip().lower()
    if policy not in ON_DELETE:
        raise ValueError(f"{ON_DELETE_ENV}={policy!r}: valid: {', '.join(ON_DELETE)}")
    return policy


def retire_deleted(landing: Path, home=None, policy: str | None = None) -> list[Removed]:
    """Under policy `retire`, retire live sources whose file under `landing` no longer exists."""
    if on_delete_policy(policy) != "retire":
        return []
    paths = WarehousePaths.at(home)
    store = Store(paths.home)
    if not store.exists():
        return []
    manifest = manifest_of(load_snapshot(paths.home))
    root = Path(landing).resolve()
    gone = [e for e in manifest.sources.values()
            if Path(e.path).is_relative_to(root) and not Path(e.path).exists()]
    return _retire(store, manifest, gone, f"deleted from the landing folder {root} ({ON_DELETE_ENV}=retire)")
