"""`make ui` (python -m pipelines.ui) started without a terminal stops on SIGTERM, takes a
port, and prints no library warnings at start-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.pipelines import dagster_dev as dev

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_stops_ui_and_its_services(tmp_path):
    port = dev.free_port()
    log = tmp_path / "ui.log"
    with open(log, "wb") as out:
        # No new session, stdin closed: as from a script or a service manager.
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.ui", "--port", str(port)], cwd=dev.REPO,
            env=dev.dagster_env(tmp_path / "dh", {"PERFWH_HOME": str(tmp_path / "wh")}),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        dev.wait_loaded(f"http://127.0.0.1:{port}", log)
        services = _children(proc.pid)
        assert len(services) == 2
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - start < 25  # the grace period is 10 s; loaded CI machines are slow
        time.sleep(0.5)
        assert [p for p in services if _alive(p)] == []
    finally:
        dev.stop_group(proc, grace_s=1)
    text = log.read_text(errors="replace")
    for noise in ("SupersessionWarning", "DeprecationWarning", "Traceback"):
        assert noise not in text, text
    assert f"http://127.0.0.1:{port}" in text and "stopped" in text


def test_bad_workspace_is_a_one_line_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.ui", "--workspace", str(tmp_path / "nope.yaml")], cwd=dev.REPO,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "no workspace file" in out.stderr
