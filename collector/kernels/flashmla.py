"""MLA dense decode through DeepSeek's FlashMLA (sm90 dense bf16 split-KV kernel), loaded with ctypes.

Why: at 128 heads the b=64, kv_len 32k decode is tensor-core bound (issue 16's 2.5 TB/s = ~600 TFLOP/s
bf16); FlashMLA's Hopper kernel reaches ~660 TFLOP/s there, FlashInfer's fa3 ~540 (run 11). FlashMLA's own
binding is a torch C++ extension tied to one torch build; ``flashmla_shim/shim.cu`` exposes its
launchers as plain C over raw pointers instead, built once into ``libflashmla_shim.so`` (static cudart,
sm_90a; ``flashmla_shim/build.sh``, collector README "FlashMLA"). The library path comes from the
``lib`` argument or ``$FLASHMLA_SHIM``.

The collector's latent cache is one [N, 576] tensor (512 latent + 64 rope per row) and request t reads
rows start[t] .. start[t] + length[t]; FlashMLA reads pages of 64 rows through a block table. The cache
is handed over as pages by its strides (no copy), so starts must be multiples of 64. The block table and
lengths are plain torch (tested on the CPU); the library is loaded only when a plan is made.
"""
from __future__ import annotations

import ctypes
import os

import torch

from .fi_mla import paged_requests

D_LAT, D_PE, D_ROW = 512, 64, 576
PAGE = 64  # FlashMLA's only page size (its KV tile)
ENV_LIB = "FLASHMLA_SHIM"
SCHED_META_INTS = 8  # sizeof(DecodingSchedMeta) / 4; checked against the library at load
ABI = 2  # shim.cu's fmla_abi_version (2: out by its strides)


def block_table(start: torch.Tensor, length: torch.Tensor, page: int = PAGE) -> tuple[torch.Tensor, torch.Tensor]:
    """(block_table [b, max pages] int32, seqlens [b] int32) for request t reading rows
    start[t] .. start[t] + length[t] - 1: its pages are start[t] / page + j, j < ceil(length[t] / page).
    Entries past a request's pages are 0 (a valid page, never read)."""
    start, length, n_pages = paged_requests(start, length, page)
    width = int(n_pages.max())
    j = torch.arange(width)
    table = torch.where(j < n_pages[:, None], start[:, None] // page + j, 0)
    return table.to(torch.int32), length.to(torch.int32)


def num_sm_parts(n_sm: int, heads: int, s_q: int = 1, h_k: int = 1) -> int:
    """FlashMLA's split of the SMs among requests (csrc/api/dense_decode.h): one CTA covers 64 query rows
    of one KV head, so n_sm / (h_k * ceil(s_q * heads / h_k / 64)) CTAs per row block, at least 1."""
    return max(n_sm // h_k // -(-(s_q * heads // h_k) // 64), 1)


def paged_strides(kv: torch.Tensor, page: int = PAGE) -> tuple[int, int, int]:
    """(page stride, row stride, pages) in elements of the [N, 576] cache read as [N / page, page, 576]."""
    n, d = kv.shape
    if d != D_ROW or kv.stride(1) != 1:
        raise ValueError(f"kv must be [N, {D_ROW}] with contiguous rows, got {tuple(kv.shape)}")
    if n % page:
        raise ValueError(f"cache rows {n} are not a multiple of page {page}")
    if not _tma_ok(kv, kv.stride(0)):
        raise ValueError("kv rows must start on 16-byte boundaries (FlashMLA reads them by TMA)")
    return page * kv.stride(0), kv.stride(0), n // page


def out_strides_ok(out: torch.Tensor) -> bool:
    """Whether FlashMLA can write out [b, H, 512] in place: last dim contiguous, the other strides whole
    16-byte units (its TMA store) and within the combine kernel's int strides."""
    sb, sh, sd = out.stride()
    return (sd == 1 and _tma_ok(out, sb, sh) and max(sb, sh * out.shape[1]) < 2 ** 31)


def _tma_ok(t: torch.Tensor, *strides: int) -> bool:
    """A TMA descriptor's needs: base address and strides (bytes) multiples of 16."""
    es = t.element_size()
    return t.data_ptr() % 16 == 0 and all(st * es % 16 == 0 for st in strides)


def query_rows(q_lat: torch.Tensor, q_pe: torch.Tensor, buf: torch.Tensor | None) -> torch.Tensor:
    """q as one [b, H, 576] tensor (FlashMLA reads 576 contiguous elements per head): q_lat itself when
    q_pe already follows it in memory (views of one [b, H, 576] buffer), else the two copied into buf."""
    b, h, _ = q_lat.shape
    es = q_lat.element_size()
    if (q_pe.data_ptr() == q_lat.data_ptr() + D_LAT * es and q_lat.stride() == q_pe.stride()
            and q_lat.stride(2) == 1 and q_lat.stride(1) >= D_ROW and _tma_ok(q_lat, *q_lat.stride()[:2])):
        return torch.as_strided(q_lat, (b, h, D_ROW), q_lat.stride())
    if buf is None or buf.shape != (b, h, D_ROW):
        buf = torch.empty((b, h, D_ROW), dtype=q_lat.dtype, device=q_lat.device)
    buf[..., :D_LAT].copy_(q_lat)
    buf[..., D_LAT:].copy_(q_pe)
    return buf


_LIBS: dict[str, ctypes.CDLL] = {}


def lib_path(path: str | None = None) -> str:
    p = path or os.environ.get(ENV_LIB)
    if not p:
        raise RuntimeError(f"no FlashMLA shim: pass lib= or set ${ENV_LIB} to libflashmla_shim.so")
    return p


def load(path: str | None = None) -> ctypes.CDLL:
    """The shim library (cached per path), argument types declared."""
    p = os.path.realpath(lib_path(path))
    lib = _LIBS.get(p)
    if lib is not None:
        return lib
    lib = ctypes.CDLL(p)
    i, f, vp, ll = ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_longlong
    lib.fmla_abi_version.restype = i
    lib.fmla_sched_meta_ints.restype = i
    lib.fmla_num_sms.restype = i
    lib.fmla_sched_meta.argtypes = [i, i, vp, vp, vp, i, vp]
    lib.fmla_sched_meta.restype = i
    lib.fmla_dense_decode.argtypes = [i, i, i, f, vp, ll, ll, vp, ll, ll, i, vp, ll, ll, vp, vp, ll, vp, vp, vp,
                                      i, vp, vp, vp]
    lib.fmla_dense_decode.restype = i
    if lib.fmla_abi_version() != ABI or lib.fmla_sched_meta_ints() != SCHED_META_INTS:
        raise RuntimeError(f"{p}: unexpected shim (abi {lib.fmla_abi_version()}, "
                           f"sched meta {lib.fmla_sched_meta_ints()} ints)")
    _LIBS[p] = lib
    return lib


def available(path: str | None = None) -> str | None:
    """None if the shim loads, else why not."""
    try:
        load(path)
    except Exception as e:  # noqa: BLE001 - any load failure means the backend is not there
        return f"{type(e).__name__}: {e}"
    return None


class FlashMLA:
    """One plan (batch, lengths, heads) of FlashMLA's dense decode; ``run`` is graph-capturable.

    ``plan`` builds the block table and runs FlashMLA's scheduler-metadata kernel (it depends on the
    lengths only: once per decode step in a serving engine, shared by every layer), outside the timed
    region; ``run`` launches the split-KV kernel and the combine, writing out through its strides (the
    generation module's out is a transposed view), plus a q copy when q_lat / q_pe are not one buffer."""

    def __init__(self, device, lib: str | None = None):
        self.lib = load(lib)
        self.device = torch.device(device)
        n = self.lib.fmla_num_sms()
        self.n_sm = n if n > 0 else torch.cuda.get_device_properties(self.device).multi_processor_count
        self.heads = None
        self._q = None

    def plan(self, start: torch.Tensor, length: torch.Tensor, heads: int, sm_scale: float) -> "FlashMLA":
        table, lens = block_table(start, length)
        dev = self.device
        b = len(lens)
        self.b, self.heads, self.sm_scale = b, heads, float(sm_scale)
        self.parts = num_sm_parts(self.n_sm, heads)
        self.table, self.lens = table.to(dev), lens.to(dev)
        self.max_row = int((start.to(torch.int64).cpu() + length.to(torch.int64).cpu()).max())
        self.sched = torch.empty((self.parts, SCHED_META_INTS), dtype=torch.int32, device=dev)
        self.splits = torch.empty(b + 1, dtype=torch.int32, device=dev)
        self.lse = torch.empty((b, heads), dtype=torch.float32, device=dev)
        self.lse_acc = torch.empty((b + self.parts, heads), dtype=torch.float32, device=dev)
        self.o_acc = torch.empty((b + self.parts, heads, D_LAT), dtype=torch.float32, device=dev)
        return self.schedule()

    def schedule(self) -> "FlashMLA":
        """(Re)compute the scheduler metadata from the planned lengths on the current stream."""
        rc = self.lib.fmla_sched_meta(self.b, 1, self.lens.data_ptr(), self.sched.data_ptr(),
                                      self.splits.data_ptr(), self.parts,
                                      torch.cuda.current_stream(self.device).cuda_stream)
        if rc:
            raise RuntimeError(f"fmla_sched_meta: cuda error {rc}")
        return self

    def run(self, q_lat: torch.Tensor, q_pe: torch.Tensor, kv: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out[t] = softmax(q[t] . K^T * sm_scale) . V over the planned rows of kv (bf16)."""
        b, h, d_lat = q_lat.shape
        if (b, h) != (self.b, self.heads) or d_lat != D_LAT or q_pe.shape[-1] != D_PE:
            raise ValueError(f"q {tuple(q_lat.shape)} / {tuple(q_pe.shape)} does not match the plan "
                             f"({self.b}, {self.heads})")
        if kv.dtype != torch.bfloat16 or q_lat.dtype != torch.bfloat16:
            raise ValueError("FlashMLA's sm90 dense decode is built for bf16 q and cache only")
        page_stride, row_stride, pages = paged_strides(kv)
        if self.max_row > kv.shape[0]:
            raise ValueError(f"the plan reads rows up to {self.max_row}, the cache has {kv.shape[0]}")
        q = self._q = query_rows(q_lat, q_pe, self._q)
        o = out if out_strides_ok(out) else torch.empty(out.shape, dtype=out.dtype, device=out.device)
        rc = self.lib.fmla_dense_decode(
            b, h, D_ROW, self.sm_scale, q.data_ptr(), q.stride(0), q.stride(1),
            kv.data_ptr(), page_stride, row_stride, pages, o.data_ptr(), o.stride(0), o.stride(1),
            self.lse.data_ptr(),
            self.table.data_ptr(), self.table.stride(0), self.lens.data_ptr(), self.sched.data_ptr(),
            self.splits.data_ptr(), self.parts, self.lse_acc.data_ptr(), self.o_acc.data_ptr(),
            torch.cuda.current_stream(q.device).cuda_stream)
        if rc:
            raise RuntimeError(f"fmla_dense_decode: error {rc}")
        if o is not out:
            out.copy_(o)
        return out


def serves(kv_dtype: str) -> bool:
    """Whether FlashMLA's decode takes a cache of this dtype: bf16 only (its FP8 path is the sparse one)."""
    return kv_dtype == "bfloat16"


def decode(q_lat: torch.Tensor, q_pe: torch.Tensor, kv: torch.Tensor, *, out: torch.Tensor,
           start: torch.Tensor, length: torch.Tensor, sm_scale: float, kv_scale: float = 1.0,
           workspace: dict | None = None) -> torch.Tensor:
    """``mla_attn.mla_attention``'s dense mode through FlashMLA, the plan kept in ``workspace`` (as
    ``fi_mla.decode``: the first call of a shape plans, later calls, graph capture included, launch)."""
    if kv_scale != 1.0:
        raise ValueError("FlashMLA's dense decode takes a bf16 cache (kv_scale 1)")
    ws = workspace if workspace is not None else {}
    key = ("flashmla", start.data_ptr(), length.data_ptr(), start.numel(), q_lat.shape[1], sm_scale)
    plan = ws.get(key)
    if plan is None:
        plan = ws[key] = FlashMLA(q_lat.device).plan(start, length, q_lat.shape[1], sm_scale)
    return plan.run(q_lat, q_pe, kv, out)
