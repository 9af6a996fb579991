#!/bin/bash
# Copy this worktree's collector code (and raw logs to resume, if given) into <session checkout>/.carry_collector
# (ignored via .git/info/exclude), since the device tool sends the session's checkout, not a helper's worktree.
# On the device: cp -r .carry_collector/code/. . first.
set -e
SRC=$(cd "$(dirname "$0")/../.." && pwd); DST=${DST:-/work/main/.carry_collector}
rm -rf "$DST"; mkdir -p "$DST/code/tests" "$DST/code/data"
cp -r "$SRC/collector" "$SRC/benchmarks" "$DST/code/"; cp -r "$SRC/tests/collector" "$DST/code/tests/"
cp -r "$SRC/data/validation" "$DST/code/data/"
find "$DST" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$DST"/code/benchmarks/collector_runs/run*/
for d in "$@"; do cp -r "$d" "$DST/"; done
du -sh "$DST"
