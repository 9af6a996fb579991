#!/bin/bash
# Copy this worktree's collector code, the run-11 scripts, the trimmed FlashInfer tarball and the tvm-ffi
# wheel into <session checkout>/.carry_fi16 (ignored via .git/info/exclude): the device tool sends the
# session's checkout, not a helper's worktree.   sync.sh FLASHINFER_TGZ TVM_FFI_WHEEL
set -e
SRC=$(cd "$(dirname "$0")/../../.." && pwd); DST=${DST:-/work/main/.carry_fi16}
TGZ=$(realpath "$1"); WHL=$(realpath "$2")
case "$TGZ$WHL" in "$(realpath -m "$DST")"/*) echo "sync.sh: inputs lie inside $DST, which is rebuilt; copy them out first" >&2; exit 2;; esac
rm -rf "$DST"; mkdir -p "$DST/code/tests" "$DST/code/benchmarks/collector_runs" "$DST/whl"
cp -r "$SRC/collector" "$DST/code/"; cp -r "$SRC/tests/collector" "$DST/code/tests/"
cp "$SRC/tests/__init__.py" "$DST/code/tests/"  # without it tests/collector shadows the collector package (run 1)
cp "$SRC/benchmarks/collector_runs/run11/device1/configs.json" "$DST/configs_run1.json"  # the configs run4.sh / run5.sh start from
cp "$SRC"/benchmarks/*.py "$DST/code/benchmarks/"
cp -r "$SRC/benchmarks/collector_runs/run11" "$SRC/benchmarks/collector_runs/run10" "$DST/code/benchmarks/collector_runs/"
cp "$SRC"/benchmarks/collector_runs/run11/run*.sh "$SRC"/benchmarks/collector_runs/run11/device_env.sh "$DST/"
cp "$TGZ" "$DST/flashinfer.tgz"; cp "$WHL" "$DST/whl/"
find "$DST" -name __pycache__ -prune -exec rm -rf {} +
du -sh "$DST"
