"""The accuracy report computed ahead, in a second process, while `perfwh materialize` builds derived
partitions (one core builds, the other cross-validates; estimator.derived.accuracy_report says why that is
sound). The reports run adopts the result when its slice and inputs are the ones computed, else
computes the report itself: a worker that fails or guessed another slice costs time, never a
wrong report. Told a slice only when the default slice's report is stale, on a home with a local folder.

The worker's imports (scipy, polars, the estimator: ~1 s of CPU) would compete with the partition
build, so when a new raw log's path names the report's slice the worker is started before the ingest
(`warm`) and imports while the parent ingests; it then waits for its slice on stdin, and exits at
end of input (parent done, or nothing to compute).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from estimator.derived.accuracy_report import is_current, report_inputs, report_path, report_slice
from warehouse.paths import WarehousePaths

ENV_AHEAD = "PERFWH_REPORT_AHEAD"  # "0": compute the accuracy report in the reports run only
SLICE_COLUMNS = ("system", "framework", "version")


def _spawn(home) -> subprocess.Popen:
    root = str(Path(__file__).resolve().parents[1])  # this checkout's packages, however the parent found them
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    # its errors surface where they belong: the reports run computes the report itself and fails there
    return subprocess.Popen([sys.executable, "-m", "estimator.derived.accuracy_report", str(home)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, text=True)


@dataclass
class ReportAhead:
    """The worker of one `perfwh materialize` (none started until `warm` or `start`)."""

    home: Path
    seed: int = 0
    process: subprocess.Popen | None = None
    key: tuple[str, str, str] | None = None  # the slice it computes, once told

    def warm(self) -> None:
        """Start the worker now, to import while the parent ingests."""
        if self.process is None:
            self.process = _spawn(self.home)

    def start(self) -> bool:
        """Compute the default slice's report ahead when the report on disk is stale (False: it is
        current, or no slice can be chosen yet: the reports run says why)."""
        try:
            key = report_slice(self.home)
        except ValueError:
            key = None
        if key is None or is_current(self.home, report_inputs(self.home, key, self.seed)):
            self.stop()
            return False
        self.warm()
        self.process.stdin.write(" ".join([*key, str(self.seed)]) + "\n")
        self.process.stdin.close()
        self.key = key
        return True

    def wait(self) -> None:
        """Wait for the worker told a slice (what it left is found by its inputs key: no exit status is
        trusted, it reads 0 where the process's children are reaped for it)."""
        if self.key is not None:
            self.process.wait()

    def stop(self) -> None:
        """End the worker (Ctrl-C, a failed run, nothing to compute): a half-computed report is not written."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait()
        if self.process is not None and self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()


def report_ahead(home, pending_keys: list[str]) -> ReportAhead | None:
    """The worker of `perfwh materialize` on `home` (None: off, or an object home), warmed when a
    pending raw log's landing path names the slice of the report on disk."""
    if os.environ.get(ENV_AHEAD, "1") == "0" or not WarehousePaths.at(home).is_local:
        return None
    ahead = ReportAhead(Path(home))
    target = report_path(home)
    if target.exists():
        row = pl.read_parquet(target, columns=list(SLICE_COLUMNS), n_rows=1).rows()
        if row and any(set(row[0]) <= set(key.split("/")) for key in pending_keys):
            ahead.warm()
    return ahead
