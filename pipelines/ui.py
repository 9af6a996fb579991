"""`make ui`: the Dagster webserver and daemon for this code location, stoppable by a signal.

`dagster dev` does the same but, started without a terminal, ignores SIGTERM and
SIGINT for over a minute, and warns at start-up that it is superseded by `dg
dev` (which needs a dg project layout). This runs the two services it would
run (`dagster-webserver`, `dagster-daemon run`) in their own process group,
writes the instance config first (pipelines.instance), and on SIGTERM / SIGINT
stops both and exits.

    python -m pipelines.ui [--host 127.0.0.1] [--port 3000]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .instance import write_instance_config

STOP_GRACE_S = 10.0


def _commands(host: str, port: int, workspace: Path) -> list[list[str]]:
    bindir = Path(sys.executable).parent
    return [
        [str(bindir / "dagster-webserver"), "-h", host, "-p", str(port), "-w", str(workspace)],
        [str(bindir / "dagster-daemon"), "run", "-w", str(workspace)],
    ]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _create_storage() -> None:
    """Create and migrate the instance's storage here, once, before the two services start.

    Started together on a fresh DAGSTER_HOME, the webserver and the daemon both
    create the SQLite schema and race ("alembic_version has more than one head").
    """
    import dagster as dg

    dg.DagsterInstance.get().dispose()  # creating the instance creates runs.db, index.db, schedules.db


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to serve on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 3000),
                        help="port (default: $PORT, else 3000)")
    parser.add_argument("--workspace", type=Path, default=Path("workspace.yaml"), help="default: %(default)s")
    args = parser.parse_args(argv)
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        print("error: set $DAGSTER_HOME (the Makefile sets it to var/dagster)", file=sys.stderr)
        return 2
    if not args.workspace.is_file():
        print(f"error: no workspace file {args.workspace}", file=sys.stderr)
        return 2
    try:
        write_instance_config(home)
        _create_storage()
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    procs = [subprocess.Popen(cmd, start_new_session=True) for cmd in _commands(args.host, args.port, args.workspace)]
    print(f"Dagster UI on http://{args.host}:{args.port} (webserver pid {procs[0].pid}, daemon pid {procs[1].pid});"
          " stop with Ctrl-C or SIGTERM", flush=True)
    try:
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.2)
    finally:
        _stop(procs)
    if stopping:
        print("stopped", flush=True)
        return 0
    failed = next(p for p in procs if p.returncode not in (None, 0))
    print(f"error: {Path(failed.args[0]).name} exited with status {failed.returncode}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
