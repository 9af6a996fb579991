"""The MLA attention kernel alone (issue 16 item 5): the ``*_kernel`` tables.

The warehouse's kernel ops (``mla_context_kernel`` / ``mla_generation_kernel``,
tables ``context_mla_perf`` / ``generation_mla_perf``, CSV op_name
``mla_context`` / ``mla_generation``, as TensorRT-LLM's published tables name
them) hold the attention kernel without projections, norms, RoPE or cache
append. ``prepare_kernel(shape)`` builds one shape's inputs (random, never
zeros) and returns a ``Step`` whose ``run()`` is the kernel launch that is
timed, so the module ops and these share the timing and raw-log code:

* context: causal attention over the up-projected heads, q/k [b, H, L, 192],
  v [b, H, L, 128] bf16, through ``F.scaled_dot_product_attention`` (the
  kernel the MLA context module calls); bf16 only (SDPA has no FP8 path).
* generation: the latent-cache decode kernel (``mla_attn.mla_attention``,
  dense mode -> ``mla_decode``) over ``kv_len + 1`` cache rows per request
  (the module's length: the new token's row included), bf16 or FP8 cache.

Kernel rows carry no GEMM precision (``gemm_type`` blank, as in the published
kernel tables); the sweep's variant uses ``bfloat16`` as a placeholder.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import DIMS, AttnDims
from .kernels import mla_attn as ATT
from .modules import Step
from .sweep import Shape

KERNEL_OPS = ("mla_context_kernel", "mla_generation_kernel")
FP8 = torch.float8_e4m3fn


def is_kernel_op(op: str) -> bool:
    return op in KERNEL_OPS


def prepare_kernel(shape: Shape, device="cuda", dims: AttnDims = DIMS, seed: int = 1,
                   use_triton: bool | None = None, n_sm: int | None = None) -> Step:
    """Inputs of one kernel shape and the launch to time (``Step.run``)."""
    if not is_kernel_op(shape.op):
        raise ValueError(f"{shape.op!r} is not a kernel op ({', '.join(KERNEL_OPS)})")
    dev = torch.device(device)
    act = torch.bfloat16 if dev.type == "cuda" else torch.float32
    g = torch.Generator(device=dev).manual_seed(seed)
    if shape.phase == "context":
        return _context(shape, dev, act, g, dims)
    if use_triton is None:
        use_triton = ATT.HAVE_TRITON and (dev.type == "cuda" or _interpreting())
    if n_sm is None:
        n_sm = torch.cuda.get_device_properties(dev).multi_processor_count if dev.type == "cuda" else 132
    return _generation(shape, dev, act, g, dims, use_triton, n_sm)


def _context(s: Shape, dev, act, g, d: AttnDims) -> Step:
    if s.kv_cache_dtype != "bfloat16":
        raise ValueError(f"mla_context_kernel: kv_cache_dtype {s.kv_cache_dtype!r}: only bfloat16 (SDPA)")
    from . import modules as MOD
    b, H, isl, prefix = s.batch_size, s.num_heads, s.isl, s.prefix
    L = prefix + isl
    rn = lambda *sh: torch.randn(sh, device=dev, generator=g, dtype=torch.float32).to(act)  # noqa: E731
    q, k, v = rn(b, H, isl, d.qk_head), rn(b, H, L, d.qk_head), rn(b, H, L, d.v_head)
    scale = 1.0 / d.qk_head ** 0.5
    if MOD.SDPA_PAD_V:  # the module's choice (set by the probe): V padded so SDPA takes the flash path
        v = F.pad(v, (0, d.qk_head - d.v_head))
    mask = None
    if prefix:
        from torch.nn.attention.bias import causal_lower_right
        mask = causal_lower_right(isl, L)

    def run() -> torch.Tensor:
        if mask is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)

    meta = dict(phase="context", b=b, isl=isl, prefix=prefix, L=L, d_v=d.v_head)
    return Step(run=run, meta=meta, state=dict(q=q, k=k, v=v))


def _generation(s: Shape, dev, act, g, d: AttnDims, use_triton: bool, n_sm: int) -> Step:
    if s.kv_cache_dtype not in ("bfloat16", "fp8"):
        raise ValueError(f"mla_generation_kernel: kv_cache_dtype {s.kv_cache_dtype!r}: bfloat16 or fp8")
    b, H = s.batch_size, s.num_heads
    L = s.prefix + 1
    rn = lambda *sh: torch.randn(sh, device=dev, generator=g, dtype=torch.float32)  # noqa: E731
    store = FP8 if s.kv_cache_dtype == "fp8" and dev.type == "cuda" else act
    kv = torch.randn((b * L, d.d_latent), device=dev, generator=g, dtype=act).to(store)
    q_lat, q_pe = rn(b, H, d.kv_lora_rank).to(act), rn(b, H, d.qk_rope).to(act)
    out = torch.empty((b, H, d.kv_lora_rank), device=dev, dtype=act)
    start = torch.arange(b, device=dev, dtype=torch.int32) * L
    length = torch.full((b,), L, device=dev, dtype=torch.int32)
    kw = dict(sm_scale=1.0 / d.qk_head ** 0.5, kv_scale=1.0, start=start, length=length)
    ws: dict = {}

    if use_triton:
        def run() -> torch.Tensor:
            return ATT.mla_attention(q_lat, q_pe, kv, out=out, n_slots=L, workspace=ws, n_sm=n_sm, **kw)
    else:
        def run() -> torch.Tensor:
            return out.copy_(ATT.mla_attention_ref(q_lat, q_pe, kv, **kw).to(act))

    meta = dict(phase="generation", b=b, kv_len=s.prefix, L=L)
    return Step(run=run, meta=meta, state=dict(q_lat=q_lat, q_pe=q_pe, kv=kv, out=out, **kw))


def _interpreting() -> bool:
    import os
    return os.environ.get("TRITON_INTERPRET") == "1"
