#!/bin/bash
# (run from a copy of collector/, benchmarks/ and tests/ in /work/main/.carry_decode: bash .carry_decode/runN.sh)
# device call 2: candidates -> configs.json, module b=64 kv32k, MLA generation table with the chosen config
cd "$(dirname "$0")"; export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
CFG=$OUT/configs.json; cp collector/configs/h100.json $CFG
timeout 100 python benchmarks/decode_bench.py --kv bf16 --deadline 70 --json $OUT/bf16.json --write-config $CFG \
  --only "peel bn64 w8 s2,peel bn64 w8 s1,peel bn128 w8 s1" > $OUT/bench.log 2>&1; echo "bf16 rc $?"
timeout 170 python benchmarks/decode_bench.py --kv fp8 --deadline 70 --json $OUT/fp8.json --write-config $CFG --module \
  --only "f16 peel bn64 w8 s1,f16 desc peel bn64 w8 s2,f16 peel bn128 w8 s1" >> $OUT/bench.log 2>&1; echo "fp8 rc $?"
grep -vE "^  " $OUT/bench.log | grep -E "ms|wrote|module" | cut -c1-200
timeout 170 python -m collector run --ops mla_generation --configs $CFG --out /tmp/raw --tag i16c --no-repeats \
  --deadline 140 --results $OUT/sweep_i16c.json > $OUT/sweep_i16c.log 2>&1; echo "sweep rc $?"
grep -E "sweep|FAIL|deadline|Error|shapes" $OUT/sweep_i16c.log | tail -6
tar czf $OUT/raw_i16c.tgz -C /tmp raw; ls -la $OUT
