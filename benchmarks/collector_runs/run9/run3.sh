#!/bin/bash
# (run from a copy of collector/, benchmarks/ and tests/ in /work/main/.carry_decode: bash .carry_decode/runN.sh)
# device call 3: launch configs for < 64 heads (H=32 b=128 kv 8192), whole-problem check of the H=128 FP8 config,
# MLA generation table with the final configs, GPU kernel tests
cd "$(dirname "$0")"; export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
CFG=$OUT/configs.json; cp collector/configs/h100.json $CFG
S="--heads 32 --batch 128 --kv-len 8192"
timeout 80 python benchmarks/decode_bench.py --kv bf16 $S --deadline 55 --json $OUT/h32_bf16.json \
  --only "bn64 w8 s2,peel bn64 w8 s2,bn64 w4 s2,peel bn64 w4 s2" > $OUT/bench.log 2>&1; echo "bf16 rc $?"
timeout 100 python benchmarks/decode_bench.py --kv fp8 $S --deadline 75 --json $OUT/h32_fp8.json \
  --only "bn64 w8 s2,bn64 w8 s1,f16 bn64 w8 s2,f16 bn64 w8 s1,f16 peel bn64 w8 s1,f16 peel bn128 w8 s1,f16 peel bn64 w4 s2" >> $OUT/bench.log 2>&1; echo "fp8 rc $?"
python benchmarks/collector_runs/pick_small_h.py $CFG $OUT/h32_bf16.json $OUT/h32_fp8.json 2>&1 | tee -a $OUT/bench.log
timeout 60 python benchmarks/decode_bench.py --kv fp8 --deadline 40 --full-check --json $OUT/h128_fp8.json \
  --only "f16 peel bn128 w8 s1" >> $OUT/bench.log 2>&1; echo "fp8 h128 rc $?"
grep -vE "^  " $OUT/bench.log | grep -E "ms |small_h|float64" | cut -c1-170
timeout 150 python -m collector run --ops mla_generation --configs $CFG --out /tmp/raw --tag i16d --no-repeats \
  --deadline 130 --results $OUT/sweep_i16d.json > $OUT/sweep_i16d.log 2>&1; echo "sweep rc $?"
grep -E "sweep|FAIL|deadline|Error" $OUT/sweep_i16d.log | tail -4
tar czf $OUT/raw_i16d.tgz -C /tmp raw
timeout 50 python -m pytest -q -p no:cacheprovider tests/collector/test_kernels.py -k "mla_decode" > $OUT/pytest.txt 2>&1
echo "pytest rc $?"; tail -2 $OUT/pytest.txt
