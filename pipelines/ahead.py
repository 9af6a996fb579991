"""The accuracy report computed ahead, in a second process, while `perfwh materialize` builds derived
partitions (one core builds, the other cross-validates; estimator.accuracy.report says why that is
sound). The reports run adopts the result when its slice and inputs are the ones computed, else
computes the report itself: a worker that fails or guessed another slice costs time, never a
wrong report. Started only when the default slice's report is stale, on a home with a local folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from estimator.accuracy.report import is_current, report_inputs, report_slice
from warehouse.paths import WarehousePaths

ENV_AHEAD = "PERFWH_REPORT_AHEAD"  # "0": compute the accuracy report in the reports run only


@dataclass
class ReportAhead:
    """A running worker computing the report of `key`."""

    key: tuple[str, str, str]
    process: subprocess.Popen

    def wait(self) -> None:
        """Wait for the worker (what it left, if anything, is found by its inputs key: no exit status
        is trusted, it reads 0 where the process's children are reaped for it)."""
        self.process.wait()

    def stop(self) -> None:
        """End a worker still running (Ctrl-C, a failed run): its half-computed report is not written."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait()


def start_report_ahead(home, seed: int = 0) -> ReportAhead | None:
    """Start computing the default slice's accuracy report when the report on disk is stale
    (None when it is current, or the slice cannot be chosen: the reports run says why)."""
    if os.environ.get(ENV_AHEAD, "1") == "0" or not WarehousePaths.at(home).is_local:
        return None
    try:
        key = report_slice(home)
    except ValueError:
        return None
    if is_current(home, report_inputs(home, key, seed)):
        return None
    cmd = [sys.executable, "-m", "estimator.accuracy.report", str(home), *key, str(seed)]
    root = str(Path(__file__).resolve().parents[1])  # this checkout's packages, however the parent found them
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    # its errors surface where they belong: the reports run computes the report itself and fails there
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return ReportAhead(key, process)
