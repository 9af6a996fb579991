#!/bin/bash
# Run 11, fourth call (works on an H100 or an H200): the fused generation prologue (kernels/prologue.py,
# configs "prologue": "fused", collector 0.4). A per-kernel profile of the MLA generation module at small
# shapes with the eager and the fused prologue side by side (module_profile.py --prologue both), then the
# MLA generation table as collector 0.4 (run 1's configs + the fused prologue, tag i16h), then the
# adapter's and the prologue's GPU tests, then (EAGER_S > 0) the same table with the eager prologue as
# collector 0.3 (tag i16g): the same-machine baseline.
# carry [".carry_fi16"], command: bash .carry_fi16/run4.sh      (env: BENCH_S PROF_S SWEEP_S TEST_S EAGER_S)
# BENCH_S > 0 first runs the decode bench (kernel GB/s against the card's copy).
# Default limits 120 + 150 + 120 + 120 s (+ ~30 s setup) stay under the device's 600 s per command.
set -u
. "$(dirname "$0")/device_env.sh"
if [ "${BENCH_S:-0}" -gt 0 ]; then  # the decode kernel alone (FlashInfer fa3 page 64 vs Triton)
  timeout $BENCH_S python3 benchmarks/collector_runs/run11/flashinfer_mla.py --json "$OUT/fi.json" --module \
    --backends fa3 --pages 64 --configs collector/configs/$CARD.json > "$OUT/bench.txt" 2>&1
  echo "bench rc $?"; grep -v '^ *$' "$OUT/bench.txt" | cut -c1-300 | tail -24
fi
# run 1's configs (h100.json + dense_impl flashinfer, fa3, page 64) with the fused prologue
CFG=/tmp/configs_i16h.json
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["prologue"] = "fused"; json.dump(c, open(sys.argv[2], "w"), indent=1)' \
  "$C/configs_run1.json" "$CFG" || exit 1
cp "$CFG" "$OUT/configs.json"
timeout ${PROF_S:-120} python3 benchmarks/collector_runs/run11/module_profile.py --configs "$C/configs_run1.json" \
  --prologue both --json "$OUT/profile.json" > "$OUT/profile.txt" 2>&1
echo "profile rc $?"; grep -E "^H=" "$OUT/profile.txt" | head -16
timeout $(( ${SWEEP_S:-120} + 30 )) python3 -m collector run --ops mla_generation --configs "$CFG" \
  --out /tmp/raw --tag i16h --no-repeats --deadline ${SWEEP_S:-120} --results /tmp/sweep_i16h.json > /tmp/sweep_i16h.log 2>&1
echo "sweep rc $?"; grep -E "sweep|FAIL|deadline|Error" /tmp/sweep_i16h.log | tail -5
tar czf "$OUT/raw_i16h.tgz" -C /tmp raw sweep_i16h.log sweep_i16h.json
timeout ${TEST_S:-120} python3 -m pytest -q -p no:cacheprovider tests/collector/test_fi_mla.py \
  tests/collector/test_prologue.py > "$OUT/pytest.txt" 2>&1
echo "pytest rc $?"; tail -6 "$OUT/pytest.txt"
if [ "${EAGER_S:-90}" -gt 0 ]; then
  timeout $(( ${EAGER_S:-90} + 30 )) python3 -m collector run --ops mla_generation --configs "$C/configs_run1.json" \
    --out /tmp/raw_eager --tag i16g --no-repeats --deadline ${EAGER_S:-90} --results /tmp/sweep_i16g.json \
    > /tmp/sweep_i16g.log 2>&1
  echo "eager sweep rc $?"; grep -E "sweep|FAIL|deadline|Error" /tmp/sweep_i16g.log | tail -5
  tar czf "$OUT/raw_i16g.tgz" -C /tmp raw_eager sweep_i16g.log sweep_i16g.json
fi
