#!/bin/bash
# Run 11, third call (works on an H100 or an H200): the decode bench (FlashInfer fa3 page 64 vs Triton, bf16 and
# FP8, b=64 kv 32k H=128, and the module) with the card's own launch configs, then the MLA generation table as
# collector 0.3 under the per-dtype rule (tag i16g), a per-kernel profile of the module at small shapes
# (module_profile.py), then the adapter's GPU tests.
# carry [".carry_fi16"], command: bash .carry_fi16/run3.sh      (env: BENCH_S SWEEP_S)
set -u
. "$(dirname "$0")/device_env.sh"
timeout ${BENCH_S:-120} python3 benchmarks/collector_runs/run11/flashinfer_mla.py --json "$OUT/fi.json" --module \
  --backends fa3 --pages 64 --configs collector/configs/$CARD.json > "$OUT/bench.txt" 2>&1
echo "bench rc $?"; grep -v '^ *$' "$OUT/bench.txt" | cut -c1-300 | tail -30
timeout ${PROF_S:-80} python3 benchmarks/collector_runs/run11/module_profile.py --configs "$C/configs_run1.json" \
  --json "$OUT/profile.json" > "$OUT/profile.txt" 2>&1
echo "profile rc $?"; grep -E "^H=" "$OUT/profile.txt" | head -8
cp "$C/configs_run1.json" "$OUT/configs.json"
timeout $(( ${SWEEP_S:-150} + 30 )) python3 -m collector run --ops mla_generation --configs "$C/configs_run1.json" \
  --out /tmp/raw --tag i16g --no-repeats --deadline ${SWEEP_S:-150} --results /tmp/sweep_i16g.json > /tmp/sweep_i16g.log 2>&1
echo "sweep rc $?"; grep -E "sweep|FAIL|deadline|Error" /tmp/sweep_i16g.log | tail -5
tar czf "$OUT/raw_i16g.tgz" -C /tmp raw sweep_i16g.log sweep_i16g.json
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/collector/test_fi_mla.py > "$OUT/pytest.txt" 2>&1
echo "pytest rc $?"; tail -4 "$OUT/pytest.txt"
