"""The accuracy report table: one slice's cross-validated error summary, written with the key of
its inputs (the slice's raw logs and the seed) so that it is recomputed only when they change.

The `accuracy_report` asset computes it after the derived partitions are built. Its numbers do not
depend on them (it reads the slice's perf points from the measurements), so `perfwh materialize`
computes it ahead, in a second process, while a partition builds (`python -m estimator.derived.accuracy_report`,
pipelines.ahead); the result waits in `derived/ahead/` under its inputs key and the asset adopts it
when its slice and inputs turn out the same, else computes the report itself.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import polars as pl

from .partition import INPUTS_KEY
from .store import DerivedStore
from warehouse.atomic import write_parquet_atomic
from warehouse.paths import WarehousePaths

ACCURACY_TABLE = "accuracy_report"
AHEAD_FOLDER = "ahead"


def report_slice(home, system: str = "", backend: str = "", version: str = "") -> tuple[str, str, str]:
    """(system, backend, version) to cross-validate, defaults filled from the built derived partitions'
    point counts (no pass over every measurement, no partition rebuilt)."""
    from estimator.accuracy.protocol import default_slice

    store = DerivedStore(home, progress=False, say=lambda line: None)
    return default_slice(home, system, backend, version, slices=store.slice_counts())


def report_inputs(home, key: tuple[str, str, str], seed: int) -> str:
    """The inputs key of the report of slice `key`: the slice's inputs hash as the warehouse holds it
    now (estimator.derived.store's freshness rule) and the seed."""
    return f"{DerivedStore(home, progress=False).inputs_of(key)}:{seed}"


def report_path(home) -> Path:
    return WarehousePaths.at(home).derived_table(ACCURACY_TABLE)


def is_current(home, inputs: str) -> bool:
    """The report on disk was computed from `inputs`."""
    target = report_path(home)
    return target.exists() and pl.read_parquet_metadata(target).get(INPUTS_KEY) == inputs


def ahead_path(home, key: tuple[str, str, str], inputs: str) -> Path:
    """Where a report computed ahead for (`key`, `inputs`) waits to be adopted."""
    digest = hashlib.sha256("|".join([*key, inputs]).encode()).hexdigest()[:20]
    return WarehousePaths.at(home).derived / AHEAD_FOLDER / f"{ACCURACY_TABLE}-{digest}.parquet"


def compute_report(home, key: tuple[str, str, str], seed: int) -> pl.DataFrame:
    """Cross-validated error summary of slice `key`, its perf points read from the measurements."""
    from warehouse.read import read_perf_points

    from estimator.accuracy.protocol import run_accuracy, summarize

    system, backend, version = key
    points = read_perf_points(home, system=system, framework=backend, version=version)
    return summarize(run_accuracy(points, seed=seed)).with_columns(
        pl.lit(system).alias("system"), pl.lit(backend).alias("framework"), pl.lit(version).alias("version")
    )


def write_report(home, summary: pl.DataFrame, inputs: str, target: Path | None = None) -> Path:
    WarehousePaths.at(home).ensure()
    return write_parquet_atomic(summary, target or report_path(home), metadata={INPUTS_KEY: inputs})


def adopt_ahead(home, key: tuple[str, str, str], inputs: str) -> bool:
    """Move a report computed ahead for (`key`, `inputs`) into place; False when there is none.
    Reports computed ahead for other inputs are dropped (their slice changed again, or was not chosen)."""
    staged = ahead_path(home, key, inputs)
    found = staged.exists()
    if found:
        os.replace(staged, report_path(home))
    for other in staged.parent.glob(f"{ACCURACY_TABLE}-*.parquet") if staged.parent.exists() else ():
        other.unlink(missing_ok=True)
    return found


def compute_ahead(home, key: tuple[str, str, str], seed: int) -> Path:
    """Compute the report of `key` for the warehouse as it is now and leave it to be adopted."""
    inputs = report_inputs(home, key, seed)
    return write_report(home, compute_report(home, key, seed), inputs, ahead_path(home, key, inputs))


def main(argv: list[str] | None = None) -> int:
    """`python -m estimator.derived.accuracy_report HOME`, then one line `SYSTEM BACKEND VERSION SEED` on stdin:
    compute_ahead of that slice (end of input: nothing to compute). The imports come first, so that a
    worker started early has them done when its slice arrives."""
    (home,) = sys.argv[1:] if argv is None else argv
    try:
        from warehouse.read import read_perf_points  # noqa: F401 - imported while the parent ingests

        from estimator.accuracy.protocol import run_accuracy  # noqa: F401

        words = sys.stdin.readline().split()
        if len(words) != 4:
            return 0
        *key, seed = words
        compute_ahead(home, tuple(key), int(seed))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
