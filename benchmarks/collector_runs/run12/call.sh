#!/bin/bash
# Run 12, one device call of at most ~570 s (issue 16): first the FlashMLA bench (flashmla.sh: smoke, kernel
# beside FlashInfer fa3 page 64, module), then, only if FlashMLA passed its float64 checks and beat FlashInfer,
# the MLA generation table with it as collector 0.5 (run 1's configs + fused prologue + dense_impl flashmla,
# tag i16j), then with the time left run 11's run5.sh (the DSA generation table as 0.4, tag i16i).
# carry [".carry_fmla", ".carry_fi16"]; command: bash .carry_fmla/code/benchmarks/collector_runs/run12/call.sh
# Outputs: $OUT/raw_i16j.tgz, $OUT/raw_i16i.tgz and $OUT/results.tgz (fmla/ from flashmla.sh, run5/ from run5.sh,
# configs_i16j.json): the device tool returns at most 8 files (run 12's first call lost run5's).
set -u
S=$(date +%s); O=$OUT; R=$(cd "$(dirname "$0")/../../../.." && pwd)  # R = .carry_fmla
left() { echo $(( ${LIMIT_S:-570} - ($(date +%s) - S) )); }
mkdir -p "$O/fmla" "$O/run5"
OUT=$O/fmla BENCH_S=${BENCH_S:-150} TEST_S=40 BUILD_S=220 bash "$R/flashmla.sh"
echo "fmla done at $(( $(date +%s) - S )) s"
SO=$R/lib/libflashmla_shim.so; [ -f "$O/fmla/libflashmla_shim.so" ] && SO=/tmp/fmla_build/libflashmla_shim.so
GO=$(python3 - "$O/fmla/fmla.json" <<'EOF'
import json, sys
try:
    rows = {r["kernel"]: r for r in json.load(open(sys.argv[1]))["rows"]}
except Exception:
    print(0); sys.exit()
fm, fi = rows.get("flashmla (q one buffer)", {}), rows.get("flashinfer fa3 page 64", {})
print(int(bool(fm.get("pass")) and ("ms" not in fi or fm["ms"] < fi["ms"])))
EOF
)
echo "flashmla sweep go=$GO"
if [ "$GO" = 1 ] && [ "$(left)" -gt 150 ]; then
  cd "$R/code" || exit 1
  export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 FLASHMLA_SHIM=$SO
  python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c.update(prologue="fused", dense_impl="flashmla"); json.dump(c, open(sys.argv[2], "w"), indent=1)' \
    "$R/../.carry_fi16/configs_run1.json" "$O/configs_i16j.json" || exit 1
  D=$(( $(left) - 250 )); [ $D -gt 110 ] && D=110; [ $D -lt 60 ] && D=60
  timeout $(( D + 30 )) python3 -m collector run --ops mla_generation --configs "$O/configs_i16j.json" \
    --out /tmp/raw_j --tag i16j --no-repeats --deadline $D --results /tmp/sweep_i16j.json > /tmp/sweep_i16j.log 2>&1
  echo "flashmla sweep rc $? (deadline $D s)"; grep -E "sweep|FAIL|deadline|Error" /tmp/sweep_i16j.log | tail -5
  tar czf "$O/raw_i16j.tgz" -C /tmp raw_j sweep_i16j.log sweep_i16j.json
  cd - > /dev/null
fi
L=$(left); echo "left for run5: $L s"
if [ "$L" -gt 150 ]; then
  SW=$(( L - 130 )); [ $SW -gt 150 ] && SW=150
  OUT=$O/run5 SWEEP_S=$SW TEST_S=40 BENCH_S=40 bash "$R/../.carry_fi16/run5.sh"
fi
# the device tool returns at most 8 files: the raw tables as they are, everything else in one tarball
[ -f "$O/run5/raw_i16i.tgz" ] && mv "$O/run5/raw_i16i.tgz" "$O/"
tar czf "$O/results.tgz" -C "$O" fmla run5 $(cd "$O" && ls configs_*.json 2>/dev/null) && rm -rf "$O/fmla" "$O/run5"
ls "$O"
echo "total $(( $(date +%s) - S )) s"
