#!/bin/bash
# (run from a copy of collector/, benchmarks/ and tests/ in /work/main/.gpu-decode: bash .gpu-decode/run10/run2.sh)
# device call (reduced, for a short budget): gs / pp against the chosen
# configs, float64 checks; the module b=64 kv32k H=128 when a new variant wins. No table re-measure.
cd "$(dirname "$0")/.."; export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python -c "import triton, torch; print('triton', triton.__version__, 'torch', torch.__version__)" | tee $OUT/versions.txt
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee -a $OUT/versions.txt
timeout 100 python benchmarks/decode_bench.py --kv bf16 --deadline 70 --full-check --json $OUT/bf16.json \
  --only "peel bn64 w8 s2,gs peel bn64 w8 s2,pp bn64 w8 s1" > $OUT/bench.txt 2>&1
echo "bf16 rc $?"
timeout 80 python benchmarks/decode_bench.py --kv fp8 --deadline 50 --full-check --json $OUT/fp8.json \
  --only "f16 peel bn128 w8 s1,f16 gs peel bn64 w8 s2" >> $OUT/bench.txt 2>&1
echo "fp8 rc $?"
grep -E "copy|ms .*GB/s|FAILED|Error|best" $OUT/bench.txt | cut -c1-200
CFG=$OUT/configs.json
python run10/pick.py collector/configs/h100.json $OUT/bf16.json $OUT/fp8.json $CFG > $OUT/pick.txt 2>&1
PICK=$?; cat $OUT/pick.txt; [ $PICK = 3 ] && { echo "no new variant won: no module re-measure"; exit 0; }
timeout 70 python run10/module.py $CFG 2>&1 | grep -E "module|Error" | tee $OUT/module.txt
