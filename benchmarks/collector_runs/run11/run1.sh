#!/bin/bash
# Run 11, one device call (issue 16 item 3): FlashInfer's MLA paged decode (modules prebuilt for sm_90a on the
# CPU machine, carried as AOT artifacts) vs the collector's Triton decode kernel, bf16 and FP8 caches,
# b=64 kv_len 32768 H=128, and the whole MLA generation module with either decode (flashinfer_mla.py); if
# FlashInfer passes the float64 checks with both caches and clearly wins (pick.py), the MLA generation table
# with it (collector 0.3, tag i16f, deadline SWEEP_S); then the adapter's tests.
# Prepared by run11/sync.sh into <session checkout>/.carry_fi16; run: carry [".carry_fi16"],
# command: bash .carry_fi16/run1.sh      (env: BENCH_S SWEEP_S BACKENDS PAGES)
set -u
C=$(cd "$(dirname "$0")" && pwd); cd "$C/code" || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 FLASHINFER_WORKSPACE_BASE=/tmp/fiws
# a JIT fallback (AOT module not loadable) links against $CUDA_HOME/lib64: FlashInfer guesses it from nvcc's path
[ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda/lib64 ] && export CUDA_HOME=/usr/local/cuda
mkdir -p /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$C"/whl/*.whl \
  || echo "pip install rc $?"
tar xzf "$C/flashinfer.tgz" -C /tmp/site
{ nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader; which nvcc
  nvcc --version | tail -1
  python3 -c "import torch, triton, flashinfer, tvm_ffi; print('torch', torch.__version__, 'triton', triton.__version__,
  'flashinfer', flashinfer.__version__, 'tvm_ffi', tvm_ffi.__version__)"; } > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"
timeout ${BENCH_S:-250} python3 benchmarks/collector_runs/run11/flashinfer_mla.py --json "$OUT/fi.json" --module \
  --backends "${BACKENDS:-fa3}" --pages "${PAGES:-1,64}" > "$OUT/bench.txt" 2>&1
echo "bench rc $?"
grep -v '^ *$' "$OUT/bench.txt" | cut -c1-300 | tail -40
CFG=/tmp/fi_configs.json
if python3 benchmarks/collector_runs/run11/pick.py collector/configs/h100.json "$OUT/fi.json" $CFG; then
  cp $CFG "$OUT/configs.json"
  timeout $(( ${SWEEP_S:-130} + 30 )) python3 -m collector run --ops mla_generation --configs $CFG --out /tmp/raw \
    --tag i16f --no-repeats --deadline ${SWEEP_S:-130} --results /tmp/sweep_i16f.json > /tmp/sweep_i16f.log 2>&1
  echo "sweep rc $?"; grep -E "sweep|FAIL|deadline|Error" /tmp/sweep_i16f.log | tail -5
  tar czf "$OUT/raw_i16f.tgz" -C /tmp raw sweep_i16f.log sweep_i16f.json
fi
timeout 50 python3 -m pytest -q -p no:cacheprovider tests/collector/test_fi_mla.py > "$OUT/pytest.txt" 2>&1
echo "pytest rc $?"; tail -4 "$OUT/pytest.txt"
ls /tmp/fiws/.cache/flashinfer/*/*/cached_ops 2>/dev/null | head  # anything JIT-built there (AOT missing)
