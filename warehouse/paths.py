"""Where the warehouse lives on disk.

Layout under the home folder:
    measurements/   Delta table, partitioned by source_sha256 (warehouse/tables.py)
    quarantine/     Delta table, partitioned by source_sha256
    ledger/         Delta table: append-only ingest events, the commit point
    derived/<table>.parquet          (perf_points, grids, sol_calibration, ...)
    perf.duckdb                      (views only; Parquet is the source of truth)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "PERFWH_HOME"
DEFAULT_HOME = Path("~/.local/share/perfwh").expanduser()


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """--home, then $PERFWH_HOME, then ~/.local/share/perfwh; always absolute.

    A pinned snapshot (warehouse.read.snapshot) stands for its own home.
    """
    if isinstance(getattr(home, "home", None), Path) and hasattr(home, "version"):
        home = home.home
    if home is None or str(home) == "":
        home = os.environ.get(ENV_HOME) or DEFAULT_HOME
    return Path(home).expanduser().resolve()


@dataclass(frozen=True)
class WarehousePaths:
    home: Path

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
    def derived(self) -> Path:
        return self.home / "derived"

    @property
    def duckdb(self) -> Path:
        return self.home / "perf.duckdb"

    @property
    def lock(self) -> Path:
        return self.home / ".ingest.lock"

    def derived_table(self, name: str) -> Path:
        return self.derived / f"{name}.parquet"

    def ensure(self) -> "WarehousePaths":
        for d in (self.home, self.measurements, self.quarantine, self.derived):
            d.mkdir(parents=True, exist_ok=True)
        return self
