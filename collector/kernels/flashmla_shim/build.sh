#!/bin/bash
# Build libflashmla_shim.so: FlashMLA's sm90 dense bf16 split-KV decode (+ its scheduler-metadata and
# combine kernels) behind shim.cu's extern "C" API, sm_90a only, static cudart, no torch.
#   build.sh FLASHMLA_CSRC OUT_DIR [JOBS]
# FLASHMLA_CSRC: FlashMLA's csrc/ with cutlass/include and cutlass/tools/util/include in csrc/cutlass
# (the commits are in collector/README.md). NVCC (default: nvcc on PATH) must be CUDA >= 12.3 (sm_90a);
# used with 13.0. Objects are kept in OUT_DIR/obj; one newer than its .cu is reused (delete obj/ after
# changing headers). JOBS > 1 compiles the four files at once (bf16.cu takes most of the time).
set -euo pipefail
S=$(realpath "$1"); OUT=$(realpath -m "$2"); JOBS=${3:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
NVCC=${NVCC:-nvcc}
mkdir -p "$OUT/obj"
FLAGS=(-O3 -std=c++20 -DNDEBUG -D_USE_MATH_DEFINES -DFLASH_MLA_DISABLE_FP16 -Wno-deprecated-declarations
  -U__CUDA_NO_HALF_OPERATORS__ -U__CUDA_NO_HALF_CONVERSIONS__ -U__CUDA_NO_HALF2_OPERATORS__
  -U__CUDA_NO_BFLOAT16_CONVERSIONS__ --expt-relaxed-constexpr --expt-extended-lambda --use_fast_math
  -gencode arch=compute_90a,code=sm_90a -Xcompiler -fPIC -Xcompiler -fvisibility=hidden
  -I"$S" -I"$S/kerutils/include" -I"$S/sm90" -I"$S/cutlass/include" -I"$S/cutlass/tools/util/include")
SRCS=("$S/sm90/decode/dense/instantiations/bf16.cu" "$S/smxx/decode/combine/combine.cu"
  "$S/smxx/decode/get_decoding_sched_meta/get_decoding_sched_meta.cu" "$HERE/shim.cu")
compile() {  # src -> obj, skipped when the object is newer than the source
  local o="$OUT/obj/$(basename "${1%.cu}").o"
  if [ "$o" -nt "$1" ]; then echo "up to date: $o"; return 0; fi
  echo "nvcc $(basename "$1")"; "$NVCC" "${FLAGS[@]}" -c "$1" -o "$o.tmp" && mv "$o.tmp" "$o"
}
if [ "$JOBS" -gt 1 ]; then
  pids=(); for s in "${SRCS[@]}"; do compile "$s" & pids+=($!); done
  rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done; [ $rc = 0 ] || exit 1
else
  for s in "${SRCS[@]}"; do compile "$s"; done
fi
OBJS=(); for s in "${SRCS[@]}"; do OBJS+=("$OUT/obj/$(basename "${s%.cu}").o"); done
"$NVCC" -shared -cudart static -gencode arch=compute_90a,code=sm_90a "${OBJS[@]}" -o "$OUT/libflashmla_shim.so"
echo "built $OUT/libflashmla_shim.so"
