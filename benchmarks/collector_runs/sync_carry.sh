#!/bin/bash
# Copy this worktree's collector code into <session checkout>/.carry_decode (ignored via
# .git/info/exclude), since the device tool sends the session's checkout, not a helper's worktree.
set -e
SRC=$(cd "$(dirname "$0")/../.." && pwd); DST=${1:-/work/main/.carry_decode}
rm -rf "$DST"; mkdir -p "$DST/tests"
cp -r "$SRC/collector" "$SRC/benchmarks" "$DST/"; cp -r "$SRC/tests/collector" "$DST/tests/"; touch "$DST/tests/__init__.py"
find "$DST" -name __pycache__ -prune -exec rm -rf {} +
rm -f "$DST"/benchmarks/collector_runs/run7/*.tgz
du -sh "$DST"
