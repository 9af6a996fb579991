#!/bin/bash
# Issue 16 item 3 on the device: decode-kernel configs (bf16, then FP8 subset), the fastest
# correct one written to $OUT/configs.json, then the MLA generation table re-measured with it.
# Usage: [PYTEST_S=90] bash benchmarks/collector_runs/decode_device.sh BF16_S FP8_S SWEEP_S [TAG] [FP8_ONLY]
set -u
BF16_S=$1; FP8_S=$2; SWEEP_S=$3; TAG=${4:-dec1}
FP8_ONLY=${5:-"bn64 w8 s2,fp8dot bn64 w8 s2,desc bn64 w8 s2,bn32 w8 s3,bh32 bn64 w4 s2,fp8dot bn64 w8 s3"}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/env.txt"
CFG=$OUT/configs.json
[ -n "${BASE_CFG:-}" ] && cp "$BASE_CFG" "$CFG"
if [ "$BF16_S" != 0 ]; then
  python3 benchmarks/decode_bench.py --kv bf16 --deadline "$BF16_S" --json "$OUT/bench_bf16.json" --write-config "$CFG" \
    > "$OUT/bench.log" 2>&1; grep -v "^  " "$OUT/bench.log" | tail -30
fi
if [ "$FP8_S" != 0 ]; then
  python3 benchmarks/decode_bench.py --kv fp8 --only "$FP8_ONLY" --deadline "$FP8_S" --json "$OUT/bench_fp8.json" ${MODULE:+--module} \
    --write-config "$CFG" >> "$OUT/bench.log" 2>&1; grep -A30 "^device" "$OUT/bench.log" | tail -14
fi
[ -f "$CFG" ] || cp collector/configs/h200.json "$CFG"
if [ "$SWEEP_S" != 0 ]; then
  python3 -m collector run --ops mla_generation --configs "$CFG" --out /tmp/raw --tag "$TAG" --no-repeats \
    --deadline "$SWEEP_S" --results "$OUT/sweep_$TAG.json" > "$OUT/sweep_$TAG.log" 2>&1
  grep -E "sweep|FAIL|deadline|Error" "$OUT/sweep_$TAG.log" | tail -6
  tar czf "$OUT/raw_$TAG.tgz" -C /tmp raw
fi
if [ "${PYTEST_S:-0}" != 0 ]; then
  timeout "$PYTEST_S" python3 -m pytest -q -p no:cacheprovider tests/collector/test_kernels.py tests/collector/test_gpu.py \
    -k "mla_decode or dense or checks" 2>&1 | tee "$OUT/pytest.txt" | tail -4
fi
ls -la "$OUT"
