"""What `perfwh materialize` needs to know before it imports Dagster: where the
landing folder is, which raw logs are new, and whether the derived tables were
built from the warehouse's current content (a small JSON file in the home)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from warehouse.atomic import write_text_atomic
from warehouse.derived import derived_tables
from warehouse.ingest import discover
from warehouse.landing import PUBLISHED_PREFIX, LandingFile, fingerprint, landing_source, pending, scan_landing
from warehouse.manifest import load_manifest
from warehouse.paths import WarehousePaths

REPO = Path(__file__).resolve().parents[1]
REPO_LANDING = REPO / "data" / "raw"
PUBLISHED_FALLBACK = PUBLISHED_PREFIX + "h200_sxm,h100_sxm"
ENV_LANDING = "PERFWH_LANDING"
STATE_FILE = "materialized.json"
DERIVED_TABLES = ("perf_points", "sol_calibration", "grids", "accuracy_report")


def default_landing() -> str:
    """The repo's data/raw when it holds raw logs, else the installed aiconfigurator tables."""
    if REPO_LANDING.is_dir() and discover([REPO_LANDING]):
        return str(REPO_LANDING)
    return PUBLISHED_FALLBACK


def resolve_landing(landing: str | None = None) -> str:
    """--landing, then $PERFWH_LANDING, then `default_landing()`; folders made absolute."""
    value = landing or os.environ.get(ENV_LANDING) or default_landing()
    return value if value.startswith(PUBLISHED_PREFIX) else str(Path(value).expanduser().resolve())


@dataclass(frozen=True)
class LandingState:
    files: list[LandingFile]
    pending: list[LandingFile]
    fingerprint: str  # of the warehouse's committed sources
    derived_fingerprint: str | None  # what the derived tables were last built from


def landing_state(home: Path, landing: str) -> LandingState:
    paths = WarehousePaths.at(home)
    root, only = landing_source(landing)
    files = scan_landing(root, only)
    manifest = load_manifest(paths)
    return LandingState(files, pending(files, manifest), fingerprint(manifest), read_derived_fingerprint(home))


def read_derived_fingerprint(home: Path) -> str | None:
    """The fingerprint recorded by the last complete derived build, if its tables still exist."""
    path = WarehousePaths.at(home).local / STATE_FILE  # an object home: its local cache
    if not path.exists() or not set(DERIVED_TABLES) <= set(derived_tables(home)):
        return None
    return json.loads(path.read_text()).get("fingerprint")


def write_derived_fingerprint(home: Path, value: str, run_id: str) -> None:
    path = WarehousePaths.at(home).local / STATE_FILE
    write_text_atomic(json.dumps({"fingerprint": value, "run_id": run_id}) + "\n", path)
