"""MLA dense decode through FlashInfer's paged MLA kernel (``BatchMLAPagedAttentionWrapper``).

A production kernel next to the project's Triton one (``mla_decode.py``): FlashInfer's "fa3" backend is
a Hopper kernel with the softmax overlapped with asynchronous wgmma, which Triton 3.6 does not produce
(collector README, decode run 10). The collector's latent cache is one [N, 576] tensor (512 latent +
64 rope per row) and each request reads the contiguous rows start[t] .. start[t] + length[t]; FlashInfer
reads pages of ``page`` rows through a CSR page table. So the cache is *viewed* as pages (no copy:
ckv = [N / page, page, 512], kpe = [N / page, page, 64], both strided views of the same rows) and the
page table lists each request's pages; with ``page`` = 1 any start works, a larger page needs
page-aligned starts.

The metadata and views are plain torch (tested on the CPU); ``flashinfer`` is imported only when a
plan is made (``FlashInferMLA``), so the collector runs without it. FlashInfer JIT-compiles the kernel
with nvcc on first use (``FLASHINFER_WORKSPACE_BASE`` holds the cache; prebuilt modules there load
without nvcc).
"""
from __future__ import annotations

import warnings

import torch

from .. import FLASHINFER_KV_DTYPES

D_LAT, D_PE = 512, 64
WORKSPACE_BYTES = 128 << 20  # FlashInfer's suggested float workspace (split-kv partials)


def paged_views(kv: torch.Tensor, page: int, d_lat: int = D_LAT) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, d_lat + d_pe] rows -> (ckv [N/page, page, d_lat], kpe [N/page, page, d_pe]) views, no copy."""
    n, d = kv.shape
    if n % page:
        raise ValueError(f"cache rows {n} are not a multiple of page {page}")
    if kv.stride(1) != 1 or kv.stride(0) != d:
        raise ValueError("kv must be a contiguous [N, d] tensor")
    pages = kv.view(n // page, page, d)
    return pages[..., :d_lat], pages[..., d_lat:]


def paged_requests(start: torch.Tensor, length: torch.Tensor, page: int) -> tuple[torch.Tensor, ...]:
    """(start, length, pages) int64 on the CPU for requests reading rows start[t] .. start[t] + length[t] - 1
    of a cache read in pages of ``page`` rows (FlashInfer's CSR table here, FlashMLA's block table)."""
    start = start.to(torch.int64).cpu()
    length = length.to(torch.int64).cpu()
    if (start % page).any():
        raise ValueError(f"request starts must be multiples of page {page}")
    if (length < 1).any():
        raise ValueError("every request needs at least one cache row")
    return start, length, (length + page - 1) // page


def csr_metadata(start: torch.Tensor, length: torch.Tensor, page: int) -> tuple[torch.Tensor, ...]:
    """(qo_indptr, kv_indptr, kv_indices, kv_len) int32 for one query per request over its rows.

    Request t reads rows start[t] .. start[t] + length[t] - 1, i.e. pages start[t] / page ..
    ceil((start[t] + length[t]) / page) - 1 (the last one partly, by kv_len)."""
    start, length, n_pages = paged_requests(start, length, page)
    kv_indptr = torch.zeros(len(start) + 1, dtype=torch.int64)
    kv_indptr[1:] = torch.cumsum(n_pages, 0)
    first = torch.repeat_interleave(start // page, n_pages)
    within = torch.arange(int(kv_indptr[-1])) - torch.repeat_interleave(kv_indptr[:-1], n_pages)
    kv_indices = first + within
    qo_indptr = torch.arange(len(start) + 1, dtype=torch.int64)
    i32 = torch.int32
    return qo_indptr.to(i32), kv_indptr.to(i32), kv_indices.to(i32), length.to(i32)


def available() -> str | None:
    """None if flashinfer imports, else why not (the collector then keeps its own kernel)."""
    try:
        import flashinfer.mla  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure means the backend is not there
        return f"{type(e).__name__}: {e}"
    return None


class FlashInferMLA:
    """One plan (batch, lengths, heads, dtypes) of FlashInfer's MLA decode; ``run`` is graph-capturable.

    ``plan`` copies metadata and runs FlashInfer's scheduler on the host (not capturable): make it once
    per shape, outside the timed region, as a serving engine does once per decode step."""

    def __init__(self, device, backend: str = "fa3", page: int = 1, workspace: torch.Tensor | None = None):
        import tvm_ffi
        from flashinfer.mla import BatchMLAPagedAttentionWrapper, MLAPlanMetadata
        # FlashInfer launches on TVM-FFI's current stream: tie it to torch's (the timing stream, a graph
        # capture), which TVM-FFI does by itself only where torch exposes its DLPack exchange API
        self._on_torch_stream = tvm_ffi.use_torch_stream
        self.page = page
        self.backend = backend
        self._meta_cls = MLAPlanMetadata
        ws = workspace if workspace is not None else torch.empty(WORKSPACE_BYTES, dtype=torch.uint8,
                                                                  device=device)
        self.wrapper = BatchMLAPagedAttentionWrapper(ws, backend=backend)
        self.kv_dtype = None

    def plan(self, start: torch.Tensor, length: torch.Tensor, heads: int, kv_dtype: torch.dtype,
             sm_scale: float, q_dtype: torch.dtype = torch.bfloat16) -> "FlashInferMLA":
        qo, kv_ptr, kv_idx, kv_len = csr_metadata(start, length, self.page)
        fp8 = kv_dtype == torch.float8_e4m3fn
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.wrapper.plan(metadata=self._meta_cls.csr(qo, kv_ptr, kv_idx, kv_len), num_heads=heads,
                              head_dim_ckv=D_LAT, head_dim_kpe=D_PE, page_size=self.page, causal=False,
                              sm_scale=sm_scale, q_data_type=q_dtype, kv_data_type=kv_dtype,
                              query_layout="split", kv_cache_layout="split",
                              scale_mode="kv-per-tensor" if fp8 else "default")
        self.kv_dtype = kv_dtype
        return self

    def run(self, q_lat: torch.Tensor, q_pe: torch.Tensor, kv: torch.Tensor, out: torch.Tensor,
            kv_scale: float = 1.0) -> torch.Tensor:
        """out[t] = softmax(q[t] . K^T * sm_scale) . V over the planned rows of kv (scaled by kv_scale)."""
        ckv, kpe = paged_views(kv, self.page, q_lat.shape[-1])
        scales = {}
        if self.kv_dtype == torch.float8_e4m3fn:
            scales = dict(ckv_scale=kv_scale, kpe_scale=kv_scale)
        elif kv_scale != 1.0:
            raise ValueError("a kv_scale other than 1 needs the FP8 cache")
        with self._on_torch_stream():
            return self.wrapper.run(query=(q_lat, q_pe), kv_cache=(ckv, kpe), out=out, **scales)


# Decode backend of the collector (mla_attn.DENSE_IMPL = "flashinfer"): FlashInfer backend and page size.
# page 1 takes any request start (the module's rows per request, kv_len + 1, are rarely page-aligned).
CONFIG = {"backend": "fa3", "page": 1, "kv_dtypes": list(FLASHINFER_KV_DTYPES)}


def serves(kv_dtype: str) -> bool:
    """Whether the FlashInfer decode takes a cache of this dtype ("bfloat16", "fp8"); the others go
    to the Triton decode (``mla_decode.py``)."""
    return kv_dtype in CONFIG.get("kv_dtypes", FLASHINFER_KV_DTYPES)


def decode(q_lat: torch.Tensor, q_pe: torch.Tensor, kv: torch.Tensor, *, out: torch.Tensor,
           start: torch.Tensor, length: torch.Tensor, sm_scale: float, kv_scale: float = 1.0,
           workspace: dict | None = None) -> torch.Tensor:
    """``mla_attn.mla_attention``'s dense mode through FlashInfer, the plan kept in ``workspace``.

    The first call of a shape plans (host sync: the timing's eager warm-up does it); later calls,
    CUDA-graph capture included, only launch. The key holds the metadata tensors' addresses, so a
    caller that changes lengths in place must use a fresh workspace."""
    ws = workspace if workspace is not None else {}
    key = ("fi_mla", CONFIG["backend"], CONFIG["page"], start.data_ptr(), length.data_ptr(), start.numel(),
           q_lat.shape[1], kv.dtype, q_lat.dtype, sm_scale)
    plan = ws.get(key)
    if plan is None:
        page = CONFIG["page"]
        if page > 1 and (bool((start.cpu() % page).any()) or kv.shape[0] % page):
            page = 1  # unaligned requests: one row per page
        buf = ws.get("fi_mla_workspace")
        if buf is None:
            buf = ws["fi_mla_workspace"] = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=q_lat.device)
        plan = ws[key] = FlashInferMLA(q_lat.device, CONFIG["backend"], page, buf).plan(
            start, length, q_lat.shape[1], kv.dtype, sm_scale, q_lat.dtype)
    return plan.run(q_lat, q_pe, kv, out, kv_scale)
