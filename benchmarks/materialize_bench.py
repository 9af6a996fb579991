"""Benchmark `perfwh materialize`: first run over a landing folder, then a re-run
with no new files. Wall time and peak memory (max RSS of the run's process tree,
from getrusage of the waited-for child).

    .venv/bin/python benchmarks/materialize_bench.py [--landing DIR] [--home DIR]

Default landing: ../shared/data/aiconfigurator (the issue's benchmark set).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LANDING = REPO.parent / "shared" / "data" / "aiconfigurator"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """(wall s, peak RSS MiB of the child, exit code, its output)."""
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        out = log.read().decode(errors="replace")
    return wall, usage.ru_maxrss / 1024, proc.returncode, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, default=DEFAULT_LANDING)
    parser.add_argument("--home", type=Path, default=None, help="default: a fresh temp folder")
    args = parser.parse_args()
    if not args.landing.is_dir():
        print(f"landing folder {args.landing} not found", file=sys.stderr)
        return 2
    home = args.home or Path(tempfile.mkdtemp(prefix="perfwh-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PERFWH_HOME", "PERFWH_LANDING")}
    cmd = [str(Path(sys.executable).parent / "perfwh"), "materialize", "--landing", str(args.landing), "--home", str(home)]
    print(f"landing {args.landing}; home {home}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    for label in ("first run", "re-run (no new files)"):
        wall, peak, rc, out = timed(cmd, env)
        print(f"--- {label}: {wall:.1f} s wall, peak RSS {peak:.0f} MiB, exit {rc}")
        print("\n".join("    " + line for line in out.strip().splitlines()[-12:]))
        if rc not in (0, 1):
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
