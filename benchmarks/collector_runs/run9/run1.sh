#!/bin/bash
# (run from a copy of collector/, benchmarks/ and tests/ in /work/main/.carry_decode: bash .carry_decode/runN.sh)
# device call 1: decode kernel variants (issue 16 item 3 follow-up)
cd "$(dirname "$0")"; export PYTHONPATH=$PWD
python -c "import triton, torch; print('triton', triton.__version__, 'torch', torch.__version__)" | tee $OUT/versions.txt
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee -a $OUT/versions.txt
timeout 130 python benchmarks/decode_bench.py --kv bf16 --deadline 90 --full-check --json $OUT/bf16.json \
  --only "bn64 w8 s2,peel bn64 w8 s2,desc peel bn64 w8 s2,peel bn32 w8 s3" > $OUT/bf16.txt 2>&1
echo "bf16 rc $?"
timeout 200 python benchmarks/decode_bench.py --kv fp8 --deadline 160 --full-check --json $OUT/fp8.json \
  --only "bn64 w8 s2,bn64 w8 s1,f16 bn64 w8 s2,f16 bn64 w8 s1,f16 peel bn64 w8 s2,f16 peel bn64 w8 s1,f16 peel bn32 w8 s3,f16 desc bn64 w8 s2,f16 desc peel bn64 w8 s2,f16 peel bn32 w8 s4" > $OUT/fp8.txt 2>&1
echo "fp8 rc $?"
timeout 50 python -m pytest -q -p no:cacheprovider tests/collector/test_kernels.py -k "mla_decode" > $OUT/pytest.txt 2>&1
echo "pytest rc $?"; tail -2 $OUT/pytest.txt
grep -E "copy|ms .*GB/s|best|FAILED|Error" $OUT/bf16.txt $OUT/fp8.txt | grep -v "^.*summary" | head -60
