# Sourced by run4.sh and run5.sh on the device (run1.sh keeps its own copy of it, as it ran):
# cd into the carried code, install the carried tvm-ffi wheel and FlashInfer tree into /tmp/site, record the
# card in $OUT/versions.txt and set CARD (h100 / h200, the collector configs to use).
C=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd); cd "$C/code" || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 FLASHINFER_WORKSPACE_BASE=/tmp/fiws
# a JIT fallback (AOT module not loadable) links against $CUDA_HOME/lib64: FlashInfer guesses it from nvcc's path
[ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda/lib64 ] && export CUDA_HOME=/usr/local/cuda
mkdir -p /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$C"/whl/*.whl \
  || echo "pip install rc $?"
tar xzf "$C/flashinfer.tgz" -C /tmp/site
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"
CARD=h100; grep -q H200 "$OUT/versions.txt" && CARD=h200
