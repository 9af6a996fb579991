#!/bin/bash
# Run 11, second call: the MLA generation table as collector 0.3 with FlashInfer decoding the bf16 cache only
# (the FP8 cache keeps the Triton decode: FLASHINFER_KV_DTYPES, after run1's FP8 result), tag i16g, with
# run1's picked configs (configs_run1.json: h100.json + dense_impl flashinfer, fa3, page 64); then the
# adapter's GPU tests. carry [".carry_fi16"], command: bash .carry_fi16/run2.sh   (env: SWEEP_S)
set -u
C=$(cd "$(dirname "$0")" && pwd); cd "$C/code" || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 FLASHINFER_WORKSPACE_BASE=/tmp/fiws
[ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda/lib64 ] && export CUDA_HOME=/usr/local/cuda
mkdir -p /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$C"/whl/*.whl \
  || echo "pip install rc $?"
tar xzf "$C/flashinfer.tgz" -C /tmp/site
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader > "$OUT/versions.txt" 2>&1
cp "$C/configs_run1.json" "$OUT/configs.json"
timeout $(( ${SWEEP_S:-150} + 30 )) python3 -m collector run --ops mla_generation --configs "$C/configs_run1.json" \
  --out /tmp/raw --tag i16g --no-repeats --deadline ${SWEEP_S:-150} --results /tmp/sweep_i16g.json > /tmp/sweep_i16g.log 2>&1
echo "sweep rc $?"; grep -E "sweep|FAIL|deadline|Error" /tmp/sweep_i16g.log | tail -5
tar czf "$OUT/raw_i16g.tgz" -C /tmp raw sweep_i16g.log sweep_i16g.json
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/collector/test_fi_mla.py > "$OUT/pytest.txt" 2>&1
echo "pytest rc $?"; tail -4 "$OUT/pytest.txt"
