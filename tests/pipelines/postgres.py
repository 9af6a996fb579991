"""A throwaway PostgreSQL server for tests: initdb in a tmp dir, loopback only, stopped after.

Uses the Debian server binaries (`apt-get install postgresql`; .ci/run installs
them). Without them the tests that need it skip, except under
PERFWH_REQUIRE_SERVICES=1 (set by .ci/run), where a missing server is a failure.
PostgreSQL refuses to run as root: as root the cluster belongs to the
`postgres` system user and its commands run through `runuser`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return Path(dirs[-1]) if dirs else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable(reason: str):
    if os.environ.get("PERFWH_REQUIRE_SERVICES") == "1":
        pytest.fail(f"PostgreSQL needed under PERFWH_REQUIRE_SERVICES=1: {reason}")
    pytest.skip(reason)


class PostgresServer:
    def __init__(self, root: Path):
        self.bindir = _bindir()
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.root, "postgres")
            os.chmod(self.root, 0o700)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        opts = f"-p {self.port} -h 127.0.0.1 -k {self.root}"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "dagster")
        return f"postgresql://postgres@127.0.0.1:{self.port}/dagster"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a fresh PostgreSQL database `dagster`, alive for the whole session.

    The cluster lives in its own folder under the system temp dir (pytest's tmp
    dirs are private to root, which the `postgres` user could not enter)."""
    root = Path(tempfile.mkdtemp(prefix="perfwh-pg-"))
    os.chmod(root, 0o755)  # the `postgres` user must enter it; the cluster inside is 0700
    server = PostgresServer(root / "cluster")
    if server.bindir is None:
        _unavailable("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    if server.as_root and shutil.which("runuser") is None:
        _unavailable("running as root without runuser: PostgreSQL cannot start")
    try:
        url = server.start()
    except subprocess.CalledProcessError as exc:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(f"PostgreSQL did not start: {exc.stderr.decode(errors='replace').strip()[-300:]}")
    try:
        yield url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
