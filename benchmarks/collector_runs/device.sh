#!/bin/bash
# Issue 16 device session: GPU tests, long-context sweep, off-grid validation points.
# Usage (repository root of a collector checkout, on the device machine):
#   bash benchmarks/collector_runs/device.sh TESTS_S VAL_S LONG_S TAG   (run in the order tests, long, val)
# Each phase gets a deadline in seconds (0 = skip); results are tarred into $OUT.
set -u
TESTS_S=$1; VAL_S=$2; LONG_S=$3; TAG=${4:-long1}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$OUT/env.txt"
python3 -c "import torch, triton, yaml; print('torch', torch.__version__, 'triton', triton.__version__)" 2>&1 | tee -a "$OUT/env.txt"
if [ "$TESTS_S" != 0 ]; then
  timeout "$TESTS_S" python3 -m pytest -q -p no:cacheprovider tests/collector/test_gpu.py tests/collector/test_kernels.py \
    tests/collector/test_fault_isolation.py 2>&1 | tee "$OUT/pytest.txt" | tail -25
fi
if [ "$LONG_S" != 0 ]; then
  python3 -m collector run --configs collector/configs/h200.json --tag "$TAG" --deadline "$LONG_S" \
    --results "$OUT/$TAG.json" > "$OUT/$TAG.log" 2>&1
  grep -E "sweep|FAIL|deadline|spread|Error" "$OUT/$TAG.log" | tail -8
fi
if [ "$VAL_S" != 0 ]; then
  python3 -m collector run --spec data/validation/sweep.yaml --out data/validation --configs collector/configs/h200.json \
    --no-repeats --tag val1 --deadline "$VAL_S" --results "$OUT/val.json" > "$OUT/val.log" 2>&1
  grep -E "sweep|FAIL|deadline|Error" "$OUT/val.log" | tail -8
fi
tar czf "$OUT/data.tgz" data/raw data/validation
ls -la "$OUT"
