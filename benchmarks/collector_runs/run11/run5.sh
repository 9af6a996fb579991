#!/bin/bash
# Run 11, fifth call (an H100 or an H200): the prologue's GPU tests (FP8 module check compared as numbers,
# after call 2), the DSA generation table with the fused prologue as collector 0.4 (tag i16i: DSA and MLA
# generation then share one prologue), and on an H200 the decode bench (the >= 2.5 TB/s kernel target).
# carry [".carry_fi16"], command: bash .carry_fi16/run5.sh      (env: SWEEP_S TEST_S BENCH_S)
set -u
C=$(cd "$(dirname "$0")" && pwd); cd "$C/code" || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 FLASHINFER_WORKSPACE_BASE=/tmp/fiws
[ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda/lib64 ] && export CUDA_HOME=/usr/local/cuda
mkdir -p /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$C"/whl/*.whl \
  || echo "pip install rc $?"
tar xzf "$C/flashinfer.tgz" -C /tmp/site
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"
timeout ${TEST_S:-90} python3 -m pytest -q -p no:cacheprovider tests/collector/test_prologue.py \
  tests/collector/test_fi_mla.py > "$OUT/pytest.txt" 2>&1
echo "pytest rc $?"; tail -3 "$OUT/pytest.txt"
CFG=/tmp/configs_i16i.json
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["prologue"] = "fused"; json.dump(c, open(sys.argv[2], "w"), indent=1)' \
  "$C/configs_run1.json" "$CFG" || exit 1
cp "$CFG" "$OUT/configs.json"
timeout $(( ${SWEEP_S:-150} + 30 )) python3 -m collector run --ops dsa_generation --configs "$CFG" \
  --out /tmp/raw --tag i16i --no-repeats --deadline ${SWEEP_S:-150} --results /tmp/sweep_i16i.json > /tmp/sweep_i16i.log 2>&1
echo "sweep rc $?"; grep -E "sweep|FAIL|deadline|Error" /tmp/sweep_i16i.log | tail -5
tar czf "$OUT/raw_i16i.tgz" -C /tmp raw sweep_i16i.log sweep_i16i.json
if grep -q H200 "$OUT/versions.txt" && [ "${BENCH_S:-70}" -gt 0 ]; then
  timeout ${BENCH_S:-70} python3 benchmarks/collector_runs/run11/flashinfer_mla.py --json "$OUT/fi.json" --module \
    --backends fa3 --pages 64 --configs collector/configs/h200.json > "$OUT/bench.txt" 2>&1
  echo "bench rc $?"; grep -v '^ *$' "$OUT/bench.txt" | cut -c1-300 | tail -12
fi
