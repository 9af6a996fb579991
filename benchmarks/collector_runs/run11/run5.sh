#!/bin/bash
# Run 11, fifth call (an H100 or an H200): the prologue's GPU tests (FP8 module check compared as numbers,
# after call 2), the DSA generation table with the fused prologue as collector 0.4 (tag i16i: DSA and MLA
# generation then share one prologue), and on an H200 the decode bench (the >= 2.5 TB/s kernel target).
# carry [".carry_fi16"], command: bash .carry_fi16/run5.sh      (env: SWEEP_S TEST_S BENCH_S)
set -u
. "$(dirname "$0")/device_env.sh"
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
if [ "$CARD" = h200 ] && [ "${BENCH_S:-70}" -gt 0 ]; then
  timeout ${BENCH_S:-70} python3 benchmarks/collector_runs/run11/flashinfer_mla.py --json "$OUT/fi.json" --module \
    --backends fa3 --pages 64 --configs collector/configs/h200.json > "$OUT/bench.txt" 2>&1
  echo "bench rc $?"; grep -v '^ *$' "$OUT/bench.txt" | cut -c1-300 | tail -12
fi
