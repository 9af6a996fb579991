#!/bin/bash
# Run 12, one device call (issue 16, an H100 or an H200): DeepSeek's FlashMLA dense bf16 decode through the
# collector's C shim (collector/kernels/flashmla.py), prebuilt on the CPU machine for sm_90a, next to
# FlashInfer fa3 page 64 and the 2 GiB copy (flashmla_bench.py), then the adapter's tests.
# If the prebuilt library fails its smoke check (a child process: FlashMLA's host code exits on a CUDA
# error), the shim and the carried FlashMLA + CUTLASS sources are compiled here with /usr/local/cuda's nvcc
# (the four files at once, BUILD_S limit) and that library is used.
# Prepared by run12/sync.sh into <session checkout>/.carry_fmla; run: carry [".carry_fmla"],
# command: bash .carry_fmla/flashmla.sh      (env: BUILD_S BENCH_S TEST_S PAGES FORCE_BUILD=1, MODULE= skips
# the generation-module comparison)
set -u
C=$(cd "$(dirname "$0")" && pwd); cd "$C/code" || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 FLASHINFER_WORKSPACE_BASE=/tmp/fiws
[ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda/lib64 ] && export CUDA_HOME=/usr/local/cuda
[ -d /usr/local/cuda/bin ] && export PATH=$PATH:/usr/local/cuda/bin
if [ -f "$C/fi/flashinfer.tgz" ]; then  # FlashInfer 0.7.4 + tvm-ffi as run 11 carried them (the comparison)
  mkdir -p /tmp/site
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$C"/fi/*.whl \
    || echo "pip install rc $?"
  tar xzf "$C/fi/flashinfer.tgz" -C /tmp/site
fi
{ nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader; which nvcc
  nvcc --version | tail -1; cat "$C/BUILD.txt"
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } \
  > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"
B=benchmarks/collector_runs/run12/flashmla_bench.py
export FLASHMLA_SHIM=$C/lib/libflashmla_shim.so
ok=0
if [ "${FORCE_BUILD:-0}" != 1 ]; then
  timeout 90 python3 $B --smoke > "$OUT/smoke.txt" 2>&1 && ok=1
  echo "prebuilt smoke ok=$ok"; tail -3 "$OUT/smoke.txt"
fi
if [ $ok = 0 ]; then  # fallback: build on the device
  rm -rf /tmp/fmla_src /tmp/fmla_build; mkdir -p /tmp/fmla_src
  tar xzf "$C/flashmla_src.tgz" -C /tmp/fmla_src
  t0=$(date +%s)
  NVCC=/usr/local/cuda/bin/nvcc timeout ${BUILD_S:-300} bash collector/kernels/flashmla_shim/build.sh \
    /tmp/fmla_src/csrc /tmp/fmla_build 16 > "$OUT/build.txt" 2>&1
  echo "device build rc $? in $(( $(date +%s) - t0 )) s"; tail -5 "$OUT/build.txt"
  export FLASHMLA_SHIM=/tmp/fmla_build/libflashmla_shim.so
  cp "$FLASHMLA_SHIM" "$OUT/" 2>/dev/null
  timeout 90 python3 $B --smoke > "$OUT/smoke_built.txt" 2>&1 && ok=1
  echo "device-built smoke ok=$ok"; tail -3 "$OUT/smoke_built.txt"
fi
if [ $ok = 1 ]; then
  timeout ${BENCH_S:-200} python3 $B --json "$OUT/fmla.json" --pages "${PAGES-64}" ${MODULE---module} > "$OUT/bench.txt" 2>&1
  echo "bench rc $?"
  grep -v '^ *$' "$OUT/bench.txt" | cut -c1-300 | tail -20
fi
timeout ${TEST_S:-60} python3 -m pytest -q -p no:cacheprovider tests/collector/test_flashmla.py > "$OUT/pytest.txt" 2>&1
echo "pytest rc $?"; tail -3 "$OUT/pytest.txt"
