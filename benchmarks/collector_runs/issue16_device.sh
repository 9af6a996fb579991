#!/bin/bash
# Issue 16 items 3-5 on the device, in one call: decode-kernel configs (bf16, FP8 + the whole MLA
# generation module at b=64 kv_len 32k H=128), then sweeps with the chosen config, each with a deadline
# (s; 0 = skip), resuming whatever raw logs are already in RAW_IN (carried from an earlier call).
# Env: BENCH_BF16 BENCH_FP8 KERNEL_S GEN_S VAL_S PLAN_S PLAN_SPEC RAND_S RAND_SPEC RAW_IN CFG_IN TAG
# Logs go to /tmp/logs and everything comes back in one $OUT/all.tgz (the tool returns at most 8 files).
set -u
FINAL=${OUT:-/tmp/out}; mkdir -p "$FINAL"; OUT=/tmp/logs; mkdir -p $OUT; export PYTHONUNBUFFERED=1
RAW=/tmp/raw; VAL=/tmp/val; RAND=/tmp/rand; mkdir -p $RAW $VAL $RAND; TAG=${TAG:-i16a}
[ -n "${RAW_IN:-}" ] && [ -d "$RAW_IN/raw" ] && cp -r "$RAW_IN/raw/." $RAW/
[ -n "${RAW_IN:-}" ] && [ -d "$RAW_IN/val" ] && cp -r "$RAW_IN/val/." $VAL/
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/env.txt"
CFG=$OUT/configs.json
if [ -n "${CFG_IN:-}" ]; then cp "$CFG_IN" "$CFG"; fi
if [ "${BENCH_BF16:-0}" != 0 ]; then
  python3 benchmarks/decode_bench.py --kv bf16 --deadline "$BENCH_BF16" --full-check --json "$OUT/bench_bf16.json" \
    --write-config "$CFG" > "$OUT/bench.log" 2>&1; grep -v "^  " "$OUT/bench.log" | tail -22
fi
if [ "${BENCH_FP8:-0}" != 0 ]; then
  python3 benchmarks/decode_bench.py --kv fp8 --only "${FP8_ONLY:-bn64 w8 s2,fp8dot bn64 w8 s2,desc bn64 w8 s2,bn32 w8 s3}" \
    --deadline "$BENCH_FP8" ${MODULE:+--module} --json "$OUT/bench_fp8.json" --write-config "$CFG" >> "$OUT/bench.log" 2>&1
  grep -E "^fp8|^module|FP8 tensor" "$OUT/bench.log" | tail -12
fi
[ -f "$CFG" ] || cp collector/configs/h200.json "$CFG"
sweep() {  # name spec-args deadline
  local name=$1 dl=$2; shift 2
  python3 -m collector run "$@" --configs "$CFG" --tag "$TAG" --deadline "$dl" --results "$OUT/$name.json" \
    > "$OUT/$name.log" 2>&1
  echo "== $name"; grep -E "sweep done|FAIL|deadline:|spread" "$OUT/$name.log" | tail -5
  tar czf "$FINAL/all.tgz" -C /tmp raw val rand logs  # after every sweep: a later kill still returns the rows
}
[ "${KERNEL_S:-0}" != 0 ] && sweep kernel "$KERNEL_S" --spec collector/sweeps/kernels.yaml --out $RAW
[ "${GEN_S:-0}" != 0 ] && sweep gen "$GEN_S" --ops mla_generation dsa_generation --out $RAW
[ "${VAL_S:-0}" != 0 ] && sweep val "$VAL_S" --spec data/validation/sweep.yaml --ops mla_generation dsa_generation \
  --out $VAL --no-repeats
[ "${PLAN_S:-0}" != 0 ] && sweep plan "$PLAN_S" --spec "$PLAN_SPEC" --out $RAW --no-repeats
[ "${RAND_S:-0}" != 0 ] && sweep rand "$RAND_S" --spec "$RAND_SPEC" --out $RAND --no-repeats
tar czf "$FINAL/all.tgz" -C /tmp raw val rand logs
ls -la "$FINAL" $OUT
