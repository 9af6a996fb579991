"""A local S3-compatible server for tests: moto's server mode on 127.0.0.1 at a free port.

The server runs in its own process: delta-rs holds the GIL through some of its
S3 calls (table history), so a server thread in the test process would stall
behind the very request it has to answer. The fixture sets the standard AWS
environment (AWS_ENDPOINT_URL, fake credentials, region) for the test, as a
deployment would, so the code under test needs no test-only switches. Tests
skip when moto[server] is not installed, except under
PERFWH_REQUIRE_SERVICES=1 (set by .ci/run), where that is a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable(reason: str):
    if os.environ.get("PERFWH_REQUIRE_SERVICES") == "1":
        pytest.fail(f"local S3 server needed under PERFWH_REQUIRE_SERVICES=1: {reason}")
    pytest.skip(reason)


class ServerFailed(RuntimeError):
    pass


@contextmanager
def moto_server():
    """A moto S3 server process on 127.0.0.1 at a free port; yields its URL (also for benchmarks)."""
    import moto.server  # noqa: F401  (ImportError: not installed)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()  # the server logs every request: a pipe would fill and stall it
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    err = log.read().decode(errors="replace")[-300:]
                    raise ServerFailed(f"moto server did not start on {url}: {err or 'timeout'}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def s3_server():
    try:
        server = moto_server()
        url = server.__enter__()
    except (ImportError, ServerFailed) as exc:
        _unavailable(str(exc) if isinstance(exc, ServerFailed) else f"moto[server] not installed ({exc})")
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """AWS environment pointing at the local server; yields a boto3 client."""
    import boto3

    for name, value in {
        "AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    return boto3.client("s3")
