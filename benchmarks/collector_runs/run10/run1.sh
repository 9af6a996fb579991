#!/bin/bash
# (run from a copy of collector/, benchmarks/ and tests/ in /work/main/.gpu-decode: bash .gpu-decode/run10/run1.sh)
# device call 1: decode variants that compute the scores once per head group (gs, pp), against the chosen configs
cd "$(dirname "$0")/.."; export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python -c "import triton, torch; print('triton', triton.__version__, 'torch', torch.__version__)" | tee $OUT/versions.txt
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee -a $OUT/versions.txt
timeout 170 python benchmarks/decode_bench.py --kv bf16 --deadline 120 --full-check --json $OUT/bf16.json \
  --only "peel bn64 w8 s2,gs peel bn64 w8 s2,pp bn64 w8 s1,gs peel bn128 w8 s1" > $OUT/bf16.txt 2>&1
echo "bf16 rc $?"
timeout 170 python benchmarks/decode_bench.py --kv fp8 --deadline 120 --full-check --json $OUT/fp8.json \
  --only "f16 peel bn128 w8 s1,f16 gs peel bn64 w8 s2,f16 gs peel bn128 w8 s1,f16 pp bn64 w8 s1" > $OUT/fp8.txt 2>&1
echo "fp8 rc $?"
grep -E "copy|ms .*GB/s|FAILED|Error|best" $OUT/bf16.txt $OUT/fp8.txt | grep -v summary | cut -c1-220 | head -40
