"""The published tables' points for the accuracy benchmarks: one slice of a warehouse given with
--home, or of a scratch warehouse ingested from the shared data folder (--shared) when none is.

Imported as `benchmarks.shared_points` by the scripts beside it, which put the repository on sys.path."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--home and --shared, as every script that reads the published tables takes them."""
    p.add_argument("--home", type=Path, default=None, help="an existing warehouse (default: ingest --shared)")
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data" / "aiconfigurator")


def missing(args) -> str | None:
    """The one-line reason to skip when there is neither a warehouse nor the shared data, else None."""
    if args.home is None and not args.shared.is_dir():
        return f"skipped: no --home and no shared data at {args.shared}"
    return None


def slice_points(args, *, system: str, framework: str, version: str) -> pl.DataFrame:
    """The perf points of (system, framework, version) from --home, or from a scratch warehouse of
    --shared (removed afterwards; the frame is read into memory)."""
    from warehouse.read import read_perf_points

    if args.home is not None:
        return read_perf_points(args.home, system=system, framework=framework, version=version)
    from warehouse.ingest import ingest_paths

    with tempfile.TemporaryDirectory(prefix="perfwh-bench-") as tmp:
        home = Path(tmp) / "wh"
        ingest_paths([args.shared], home)
        return read_perf_points(home, system=system, framework=framework, version=version)
