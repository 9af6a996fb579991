// extern "C" entry points over FlashMLA's sm90 dense (bf16) split-KV MLA decode, for ctypes.
//
// FlashMLA's own binding (csrc/api) is a torch C++ extension: it must be built against the exact torch
// (C++ ABI, headers) of the device. This shim takes raw device pointers, element strides and a
// cudaStream_t instead, so one .so (static cudart) serves any torch. It fills FlashMLA's params
// structs exactly as csrc/api/dense_decode.h does for one KV head (MLA) and calls the same three
// launchers: the tile-scheduler metadata kernel, the split-KV kernel and the combine kernel.
#include <climits>
#include <cmath>
#include <cuda_runtime_api.h>

#include "params.h"
#include "sm90/decode/dense/splitkv_mla.h"
#include "smxx/decode/get_decoding_sched_meta/get_decoding_sched_meta.h"
#include "smxx/decode/combine/combine.h"

#define FMLA_API extern "C" __attribute__((visibility("default")))

namespace {
constexpr int kBlockN = 64;          // FlashMLA's KV tile = page size (dense_decode.h)
constexpr int kFixedOverheadBlocks = 5;
constexpr int kDv = 512;
}

FMLA_API int fmla_abi_version() { return 2; }

FMLA_API int fmla_sched_meta_ints() { return DecodingSchedMetaSize / (int)sizeof(int); }

// Scheduler metadata for the lengths seqlens_k[b] (device int32): sched_meta [num_sm_parts, 8] int32,
// num_splits [b + 1] int32. Depends on the lengths only: once per decode step, as FlashMLA's
// get_mla_metadata.
FMLA_API int fmla_sched_meta(int b, int s_q, const int* seqlens_k, void* sched_meta, int* num_splits,
                             int num_sm_parts, void* stream) {
    GetDecodeSchedMetaParams p = {
        b, s_q, kBlockN, kFixedOverheadBlocks,
        -1, -1, nullptr, nullptr,
        const_cast<int*>(seqlens_k),
        (DecodingSchedMeta*)sched_meta, num_splits, num_sm_parts,
        (cudaStream_t)stream};
    smxx::decode::run_get_decoding_sched_meta_kernel(p);
    return (int)cudaGetLastError();
}

// One dense decode, s_q = 1, one KV head: out[t, h, :512] = softmax(q[t, h] . K^T * scale) . V over the
// seqlens_k[t] rows reached through block_table[t, :] (pages of 64 rows).
//   q:     bf16, row (head) stride q_row_stride, batch stride q_batch_stride, last dim (576) contiguous
//   kv:    bf16 pages, row stride k_row_stride (>= 576), page stride k_page_stride, num_pages pages
//   out:   bf16 [b, h_q, 512], batch stride o_batch_stride, head stride o_row_stride, last dim contiguous
//          (both kernels address it by these strides: the split-KV kernel's TMA store, the combine's
//          pointer arithmetic); lse: float [b, h_q]
//   lse_accum: float [b + num_sm_parts, h_q]; o_accum: float [b + num_sm_parts, h_q, 512]
FMLA_API int fmla_dense_decode(
    int b, int h_q, int d_qk, float softmax_scale,
    const void* q, long long q_batch_stride, long long q_row_stride,
    const void* kv, long long k_page_stride, long long k_row_stride, int num_pages,
    void* out, long long o_batch_stride, long long o_row_stride, float* lse,
    const int* block_table, long long block_table_stride, const int* seqlens_k,
    const void* sched_meta, const int* num_splits, int num_sm_parts,
    float* lse_accum, float* o_accum, void* stream) {
    if (d_qk != 576) return -1;  // the sm90 kernel is built for 576 (FLASH_ASSERT would exit)
    if (o_batch_stride > INT_MAX || o_row_stride * h_q > INT_MAX) return -1;  // CombineParams holds int strides
    const int s_q = 1, h_k = 1, q_seq_per_hk = h_q;
    DenseAttnDecodeParams p{};
    p.b = b;
    p.s_q = s_q;
    p.q_seq_per_hk = q_seq_per_hk;
    p.d = d_qk;
    p.d_v = kDv;
    p.h_q = h_q;
    p.h_k = h_k;
    p.num_blocks = num_pages;
    p.q_head_per_hk = h_q;
    p.is_causal = false;
    p.scale_softmax = softmax_scale;
    p.scale_softmax_log2 = float(softmax_scale * M_LOG2E);
    p.q_ptr = const_cast<void*>(q);
    p.k_ptr = const_cast<void*>(kv);
    p.o_ptr = out;
    p.softmax_lse_ptr = lse;
    p.q_batch_stride = q_batch_stride;
    p.k_batch_stride = k_page_stride;
    p.o_batch_stride = o_batch_stride;
    p.q_row_stride = q_row_stride;
    p.k_row_stride = k_row_stride;
    p.o_row_stride = o_row_stride;
    p.q_head_stride = q_batch_stride;  // one KV head: never stepped
    p.k_head_stride = k_row_stride;
    p.o_head_stride = o_batch_stride;  // one KV head: never stepped
    p.block_table = const_cast<int*>(block_table);
    p.block_table_batch_stride = block_table_stride;
    p.page_block_size = kBlockN;
    p.seqlens_k_ptr = const_cast<int*>(seqlens_k);
    p.tile_scheduler_metadata_ptr = (DecodingSchedMeta*)const_cast<void*>(sched_meta);
    p.num_sm_parts = num_sm_parts;
    p.num_splits_ptr = const_cast<int*>(num_splits);
    p.total_num_splits = b + num_sm_parts;
    p.softmax_lseaccum_ptr = lse_accum;
    p.oaccum_ptr = o_accum;
    p.stream = (cudaStream_t)stream;
    sm90::run_flash_splitkv_mla_kernel<cutlass::bfloat16_t>(p);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return (int)e;

    CombineParams c = {
        b, s_q, h_q, kDv,
        lse, out,
        h_k * q_seq_per_hk, h_q,
        (int)o_batch_stride, (int)o_row_stride * h_q, (int)o_row_stride,
        lse_accum, o_accum,
        h_k * q_seq_per_hk, h_q,
        h_q * s_q * kDv, h_q * kDv, kDv,
        p.tile_scheduler_metadata_ptr, p.num_splits_ptr, num_sm_parts,
        nullptr,
        (cudaStream_t)stream};
    smxx::decode::run_flash_mla_combine_kernel<cutlass::bfloat16_t>(c);
    return (int)cudaGetLastError();
}

// Number of SMs of the current device (cudaDeviceGetAttribute), or a negative cudaError_t.
FMLA_API int fmla_num_sms() {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return -1;
    cudaError_t e = cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return e == cudaSuccess ? n : -(int)e;
}
