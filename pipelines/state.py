"""What `perfwh materialize` needs to know before it imports Dagster: where the
landing folder is, which raw logs are new, and which derived partitions are
stale (estimator.derived.store's one freshness rule: the inputs hash in each
partition's Parquet footer; there is no fingerprint file of its own)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from estimator.derived.store import DerivedStore
from warehouse.ingest import discover
from warehouse.landing import PUBLISHED_PREFIX, LandingFile, fingerprint, landing_source, pending, scan_landing
from warehouse.manifest import load_manifest
from warehouse.paths import WarehousePaths
from warehouse.tables import Store

REPO = Path(__file__).resolve().parents[1]
REPO_LANDING = REPO / "data" / "raw"
PUBLISHED_FALLBACK = PUBLISHED_PREFIX + "h200_sxm,h100_sxm"
ENV_LANDING = "PERFWH_LANDING"


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
    stale_partitions: list[tuple[str, str, str]]  # derived partitions whose inputs changed


def landing_state(home: Path, landing: str) -> LandingState:
    paths = WarehousePaths.at(home)
    root, only = landing_source(landing)
    files = scan_landing(root, only)
    manifest = load_manifest(paths)
    return LandingState(files, pending(files, manifest), fingerprint(manifest), stale_partitions(home))


def stale_partitions(home: Path) -> list[tuple[str, str, str]]:
    """(system, framework, version) partitions to rebuild; none when the warehouse is empty."""
    store = DerivedStore(home)
    if Store(store.paths.home).exists() and load_manifest(store.paths).sources:  # local folder or s3://
        return store.stale()
    return []
