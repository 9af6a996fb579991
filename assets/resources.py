"""Resources the assets need: the warehouse settings (home, landing, thresholds)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from warehouse.landing import LandingFile, check_home_outside, landing_source, scan_landing
from warehouse.landing_s3 import S3Landing, default_cache, is_s3
from warehouse.paths import resolve_home


class WarehouseSettings(dg.ConfigurableResource):
    """Where the warehouse and the raw logs live, and how strict the checks are."""

    home: str = Field(description="warehouse folder (Parquet store, perf.duckdb)")
    landing: str = Field(
        description="folder of raw logs, s3://bucket/prefix/ (AWS_* environment), or "
        "'aiconfigurator:SYSTEM[,SYSTEM]' for the published tables of the installed aiconfigurator-core"
    )
    quarantine_share_max: float = Field(
        default=0.01, description="warn when a file quarantines more than this share of its rows"
    )
    monotonic_tolerance: float = Field(
        default=0.05,
        description="warn when latency drops by more than this share as isl or kv_len grows",
    )
    spread_max: float = Field(
        default=0.25, description="warn when (max - min) / median of repeats exceeds this"
    )
    max_concurrent: int = Field(
        default=0, description="derived partitions built at once, each in its own process; 0: the machine's cores"
    )

    def workers(self) -> int:
        return self.max_concurrent if self.max_concurrent > 0 else (os.cpu_count() or 1)

    def home_path(self) -> Path:
        return resolve_home(self.home)

    def scan(self) -> tuple[Path, list[LandingFile]]:
        """The landing root and its raw logs with content hashes (an S3 landing is
        mirrored into the local cache first)."""
        if is_s3(self.landing):
            root = S3Landing.parse(self.landing).sync(default_cache())
            return root, scan_landing(root)
        root, files = landing_source(self.landing)
        if files is None:  # a folder, not the published tables
            check_home_outside(root, self.home_path())
        return root, scan_landing(root, files)

    def raw_log(self, key: str) -> LandingFile:
        """One landing file by partition key (fetched, for S3); FileNotFoundError when it is gone."""
        if is_s3(self.landing):
            landing = S3Landing.parse(self.landing)
            path = landing.fetch(key, default_cache())
            return scan_landing(landing.local_root(default_cache()), [path])[0]
        root, _ = landing_source(self.landing)
        path = root / key
        if not path.is_file():
            raise FileNotFoundError(f"raw log {key!r} is no longer in the landing folder {root}")
        return scan_landing(root, [path])[0]
