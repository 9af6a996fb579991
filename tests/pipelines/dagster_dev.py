"""Drive the Dagster UI (`make ui`) and headless Chromium from tests and the docs screenshot script.

Every process is started in its own session and stopped by signalling its
process group, so nothing outlives the caller.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipelines.instance import write_instance_config

REPO = Path(__file__).resolve().parents[2]
LOCATION = "perf_warehouse"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str | None:
    return next((p for name in CHROMIUM_NAMES if (p := shutil.which(name))), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `grace_s`."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers (daemon, code server) of the group
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def dagster_env(dagster_home: Path, extra: dict[str, str]) -> dict[str, str]:
    dagster_home.mkdir(parents=True, exist_ok=True)
    write_instance_config(dagster_home, environ={})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERFWH_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(dagster_home), **extra)
    return env


@contextmanager
def dagster_dev(dagster_home: Path, env_extra: dict[str, str], log: Path) -> Iterator[str]:
    """Start the UI (`python -m pipelines.ui`, what `make ui` runs) on a free port; yields its
    base URL; stops the whole group on exit."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.ui", "--port", str(port)],
            cwd=REPO, env=dagster_env(dagster_home, env_extra), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_group(proc)


def graphql(base: str, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"{base}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        doc = json.load(resp)
    if doc.get("errors"):
        raise RuntimeError(f"GraphQL errors: {doc['errors']}")
    return doc["data"]


LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
ASSET_NODES = """{ assetNodes { assetKey { path } groupName
  assetChecksOrError { ... on AssetChecks { checks { name } } } } }"""
RUNS = """query Runs($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) {
  ... on Runs { results { runId status jobName tags { key value } } } } }"""


def wait_loaded(base: str, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            entries = graphql(base, LOCATIONS, timeout=5)["workspaceOrError"]["locationEntries"]
            last = entries
            if any(e["name"] == LOCATION and e["loadStatus"] == "LOADED" for e in entries):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError, KeyError) as exc:
            last = exc
        time.sleep(1)
    raise TimeoutError(f"code location {LOCATION} not loaded after {timeout_s} s ({last}); log:\n{log.read_text()[-3000:]}")


def wait_run(base: str, tag: tuple[str, str], timeout_s: float = 180) -> dict:
    """The first run with `tag` to reach a final status; TimeoutError when none does."""
    deadline = time.monotonic() + timeout_s
    runs: list = []
    while time.monotonic() < deadline:
        runs = graphql(base, RUNS, {"tags": [{"key": tag[0], "value": tag[1]}]})["runsOrError"]["results"]
        done = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
        if done:
            return done[0]
        time.sleep(2)
    raise TimeoutError(f"no finished run tagged {tag} after {timeout_s} s (runs: {runs})")


def chromium_flags(profile: Path, width: int, height: int, budget_ms: int) -> list[str]:
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}",
    ]  # fmt: skip


def _chromium_run(args: list[str], tmp: Path, timeout_s: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(tmp), XDG_CONFIG_HOME=str(tmp / "xdg"), XDG_CACHE_HOME=str(tmp / "xdg"))
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        stop_group(proc, grace_s=2)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def screenshot(url: str, out: Path, tmp: Path, width: int = 1400, height: int = 900, budget_ms: int = 30000) -> Path:
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found")
    args = [exe, *chromium_flags(tmp / "profile-shot", width, height, budget_ms), f"--screenshot={out}", url]
    done = _chromium_run(args, tmp, timeout_s=budget_ms / 1000 + 90)
    if not out.exists():
        raise RuntimeError(f"chromium wrote no screenshot (rc {done.returncode}): {done.stderr.decode()[-2000:]}")
    return out


def dump_dom(url: str, tmp: Path, budget_ms: int = 30000) -> str:
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found")
    args = [exe, *chromium_flags(tmp / "profile-dom", 1400, 900, budget_ms), "--dump-dom", url]
    return _chromium_run(args, tmp, timeout_s=budget_ms / 1000 + 90).stdout.decode(errors="replace")
