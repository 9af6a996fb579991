"""Where the warehouse lives on disk.

Layout under the home folder:
    measurements/   Delta table, partitioned by source_sha256 (warehouse/tables.py)
    quarantine/     Delta table, partitioned by source_sha256
    ledger/         Delta table: append-only ingest events, the commit point
    derived/<table>.parquet          (perf_points, grids, sol_calibration, ...)
    perf.duckdb                      (views only; Parquet is the source of truth)

A home may also be `s3://bucket/prefix` (warehouse/location.py): the three
Delta tables live there; derived tables sit in a local cache folder and there
is no perf.duckdb (SQL goes through `perfwh sql`, over Arrow datasets).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .location import ObjectHome, cache_dir, is_object_url

ENV_HOME = "PERFWH_HOME"
DEFAULT_HOME = Path("~/.local/share/perfwh").expanduser()


def resolve_home(home: str | os.PathLike | None = None) -> Path | ObjectHome:
    """--home, then $PERFWH_HOME, then ~/.local/share/perfwh; always absolute.

    `s3://bucket/prefix` gives an ObjectHome. A pinned snapshot
    (warehouse.read.snapshot) stands for its own home.
    """
    if isinstance(getattr(home, "home", None), (Path, ObjectHome)) and hasattr(home, "version"):
        home = home.home
    if home is not None and not isinstance(home, (str, os.PathLike, ObjectHome)):
        raise TypeError(f"home must be a folder path, got {type(home).__name__} {home!r}")
    if home is not None and not str(home).strip():  # an unset variable would silently mean the default home
        raise ValueError(f"home {str(home)!r} is empty: give a folder, or None for $PERFWH_HOME / the default")
    if home is None:
        home = os.environ.get(ENV_HOME) or DEFAULT_HOME
    if isinstance(home, ObjectHome):
        return home
    if is_object_url(str(home)):
        return ObjectHome(str(home))
    return Path(home).expanduser().resolve()


@dataclass(frozen=True)
class WarehousePaths:
    home: Path | ObjectHome

    @classmethod
    def at(cls, home: str | os.PathLike | None = None) -> "WarehousePaths":
        return cls(resolve_home(home))

    @property
    def measurements(self) -> Path:
        return self.home / "measurements"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def ledger(self) -> Path:
        return self.home / "ledger.parquet"

    @property
    def is_local(self) -> bool:
        return not isinstance(self.home, ObjectHome)

    @property
    def local(self) -> Path:
        """This home's folder on the local disk: the home itself, or an object home's cache."""
        return self.home if self.is_local else cache_dir(self.home)

    @property
    def derived(self) -> Path:
        return self.local / "derived"

    @property
    def duckdb(self) -> Path:
        return self.local / "perf.duckdb"

    @property
    def lock(self) -> Path:
        return self.local / ".ingest.lock"

    def derived_table(self, name: str) -> Path:
        return self.derived / f"{name}.parquet"

    def ensure(self) -> "WarehousePaths":
        local = (self.home, self.measurements, self.quarantine) if self.is_local else ()
        for d in (*local, self.derived):
            d.mkdir(parents=True, exist_ok=True)
        return self
