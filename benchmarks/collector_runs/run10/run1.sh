#!/bin/bash
# (run from a copy of collector/, benchmarks/ and tests/ in /work/main/.gpu-decode: bash .gpu-decode/run10/run1.sh)
# device call 1: decode variants that compute the scores once per head group (gs, pp) against the chosen configs;
# the fastest correct -> configs.json; the module b=64 kv32k H=128; the MLA generation table (tag i16e)
cd "$(dirname "$0")/.."; export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python -c "import triton, torch; print('triton', triton.__version__, 'torch', torch.__version__)" | tee $OUT/versions.txt
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee -a $OUT/versions.txt
timeout 110 python benchmarks/decode_bench.py --kv bf16 --deadline 75 --full-check --json $OUT/bf16.json \
  --only "peel bn64 w8 s2,gs peel bn64 w8 s2,pp bn64 w8 s1" > $OUT/bench.txt 2>&1
echo "bf16 rc $?"
timeout 110 python benchmarks/decode_bench.py --kv fp8 --deadline 75 --full-check --json $OUT/fp8.json \
  --only "f16 peel bn128 w8 s1,f16 gs peel bn64 w8 s2" >> $OUT/bench.txt 2>&1
echo "fp8 rc $?"
grep -E "copy|ms .*GB/s|FAILED|Error|best" $OUT/bench.txt | cut -c1-200
CFG=$OUT/configs.json
python run10/pick.py collector/configs/h100.json $OUT/bf16.json $OUT/fp8.json $CFG > $OUT/pick.txt 2>&1
PICK=$?; cat $OUT/pick.txt; [ $PICK = 3 ] && { echo "no new variant won: no module / table re-measure"; exit 0; }
timeout 90 python run10/module.py $CFG 2>&1 | grep -E "module|Error" | tee $OUT/module.txt
timeout 150 python -m collector run --ops mla_generation --configs $CFG --out /tmp/raw --tag i16e --no-repeats \
  --deadline 125 --results $OUT/sweep_i16e.json > $OUT/sweep_i16e.log 2>&1; echo "sweep rc $?"
grep -E "sweep|FAIL|deadline|Error" $OUT/sweep_i16e.log | tail -4
tar czf $OUT/raw_i16e.tgz -C /tmp raw
