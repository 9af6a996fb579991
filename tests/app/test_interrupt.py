"""Ctrl-C in `perfwh materialize`: one line, exit 130, and nothing runs after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

DEMO = REPO / "data" / "raw"


def _interrupt_at(marker: str, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PERFWH_HOME": str(tmp_path / "wh"),
           "DAGSTER_HOME": str(tmp_path / "dagster")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "perfwh.cli", "materialize", "--landing", str(DEMO)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    before = []
    for line in proc.stderr:  # progress lines; stop at the phase to interrupt
        before.append(line)
        if marker in line:
            time.sleep(0.5)  # inside the Dagster run
            proc.send_signal(signal.SIGINT)
            break
    out, after = proc.communicate(timeout=120)
    if not proc.returncode and not any(marker in line for line in before):
        pytest.fail(f"never reached {marker!r}: {''.join(before)}")
    return proc.returncode, before, after, out


@pytest.mark.parametrize("marker", ["new or changed", "building perf_points"])
def test_ctrl_c_stops_with_one_line_and_exit_130(marker, tmp_path):
    rc, before, after, out = _interrupt_at(marker, tmp_path)
    assert rc == 130, (after, out)
    lines = [ln for ln in after.splitlines() if ln.strip()]
    # What follows the signal: at most the ingest's own table if it finished first, then the one line.
    assert lines and lines[-1].startswith("perfwh materialize: interrupted"), after
    assert "Traceback" not in after and "dagster" not in after.lower(), after
    assert "building perf_points" not in after  # the derived job never starts after Ctrl-C
    assert "checks:" not in out and "derived tables" not in out, out


class _RaisesInFinalizer:
    def __init__(self, exc):
        self.exc = exc

    def __del__(self):
        raise self.exc


def test_interrupt_swallowed_by_a_finalizer_still_stops(monkeypatch):
    """Dagster raises its interrupt wherever the signal lands; inside a finalizer Python only prints
    "Exception ignored". PhaseProgress records it and stops at the next phase line; any other
    ignored exception still goes to the hook that was there before."""
    import sys

    from perfwh.pipeline import PhaseProgress

    seen = []
    def hook(unraisable):
        seen.append(unraisable.exc_type)

    monkeypatch.setattr(sys, "unraisablehook", hook)
    with PhaseProgress() as progress:
        _RaisesInFinalizer(KeyboardInterrupt())  # collected at once: its __del__ raises, ignored
        assert progress.interrupted
        with pytest.raises(KeyboardInterrupt):
            progress("next phase ...")
    assert seen == []
    with PhaseProgress() as progress:
        _RaisesInFinalizer(ValueError("unrelated"))
        assert not progress.interrupted
    assert seen == [ValueError]
    assert sys.unraisablehook is hook  # restored on exit
