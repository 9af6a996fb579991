#!/bin/bash
# Copy this worktree's collector code, the run-11/12 scripts, the prebuilt FlashMLA shim, the trimmed
# FlashMLA + CUTLASS sources (the device-side fallback build) and, when run 11's carry is there, its
# FlashInfer tree + tvm-ffi wheel into <session checkout>/.carry_fmla (ignored via .git/info/exclude):
# the device tool sends the session's checkout, not a helper's worktree.
#   sync.sh LIBFLASHMLA_SHIM_SO FLASHMLA_TREE [FI_CARRY]
# FLASHMLA_TREE: FlashMLA's checkout with the CUTLASS headers in csrc/cutlass (collector/README.md,
# "FlashMLA"); FI_CARRY (default /work/main/.carry_fi16): holds flashinfer.tgz and whl/*.whl.
set -e
SRC=$(cd "$(dirname "$0")/../../.." && pwd); DST=${DST:-/work/main/.carry_fmla}
SO=$(realpath "$1"); TREE=$(realpath "$2"); FI=${3:-/work/main/.carry_fi16}
case "$SO$TREE" in "$(realpath -m "$DST")"/*) echo "sync.sh: inputs lie inside $DST, which is rebuilt" >&2; exit 2;; esac
rm -rf "$DST"; mkdir -p "$DST/code/tests" "$DST/code/benchmarks/collector_runs" "$DST/lib"
cp -r "$SRC/collector" "$DST/code/"; cp -r "$SRC/tests/collector" "$DST/code/tests/"
cp "$SRC/tests/__init__.py" "$DST/code/tests/"  # without it tests/collector shadows the collector package
cp "$SRC"/benchmarks/*.py "$DST/code/benchmarks/"
cp -r "$SRC/benchmarks/collector_runs/run11" "$SRC/benchmarks/collector_runs/run12" "$DST/code/benchmarks/collector_runs/"
cp "$SRC/benchmarks/collector_runs/run12/flashmla.sh" "$DST/"
cp "$SO" "$DST/lib/libflashmla_shim.so"
# the sources the sm90 dense decode build reads (build.sh), no sm100 / sparse / prefill / torch binding
tar czf "$DST/flashmla_src.tgz" -C "$TREE" LICENSE csrc/params.h csrc/defines.h csrc/utils.h csrc/kerutils \
  csrc/sm90/decode/dense csrc/smxx/decode csrc/cutlass/LICENSE.txt csrc/cutlass/include csrc/cutlass/tools/util/include
{ echo "libflashmla_shim.so $(sha256sum "$SO" | cut -c1-16) built $(date -u -r "$SO" +%FT%TZ)"
  cat "$TREE/COMMITS.txt" 2>/dev/null; } > "$DST/BUILD.txt"
if [ -f "$FI/flashinfer.tgz" ]; then mkdir -p "$DST/fi"; cp "$FI/flashinfer.tgz" "$FI"/whl/*.whl "$DST/fi/"; fi
find "$DST" -name __pycache__ -prune -exec rm -rf {} +
grep -qx '/.carry_fmla/' /work/main/.git/info/exclude 2>/dev/null || echo '/.carry_fmla/' >> /work/main/.git/info/exclude
du -sh "$DST"
