"""One layer's attention block at DeepSeek-V3 (MLA) / V3.2 (DSA) dimensions.

``AttentionModule(family, H, gemm_type, kv_cache_dtype)`` holds the weights;
``prepare_context(b, isl, prefix)`` / ``prepare_generation(b, kv_len)`` build
the inputs and caches of one shape (random data, never zeros) and return a
``Step`` whose ``run()`` is what gets timed:

* fused down-projection x -> [q_a | kv latent | k_pe (| index k | index weights)]
  (``gemm_type``: bfloat16 or FP8 with 1x128/128x128 block scales or per-tensor)
* RMSNorms, RoPE, append of the latent row (and the FP8 index-K row) to the cache
  (generation with ``PROLOGUE = "fused"``: two Triton kernels, ``kernels/prologue.py``)
* q up-projection
* MLA context: kv_b up-projection of the latent, dense causal attention (SDPA)
* MLA generation / DSA both phases: absorbed BMMs (q_nope @ W_uk, o @ W_uv)
  around the latent-cache Triton kernel (dense decode, or sparse over top-k rows)
* DSA: lightning indexer (q/k projections, Hadamard rotation, FP8 quantisation,
  FP8 logits over all previous keys, top-k 2048); skipped (all keys selected)
  while the context is <= 2048, as in the reference implementation
* output projection

``use_triton=False`` swaps every Triton kernel for its naive PyTorch reference
(CPU path, and the GPU correctness check).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .config import DIMS, AttnDims
from .gemm import FP8, Linear, quant_groups, quant_groups_ref
from .kernels import indexer as IDX
from .kernels import mla_attn as ATT
from .kernels import prologue as PRO

# Generation prologue (RMSNorms, RoPEs, cache append): "eager" = the torch ops below (the reference,
# collector <= 0.3), "fused" = kernels/prologue.py (two Triton launches; context stays eager).
PROLOGUE = "eager"
# MLA context: pad V from 128 to 192 columns so SDPA can take its flash path
# (set by the GPU probe when that is faster)
SDPA_PAD_V = False


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def hadamard(n: int, device, dtype) -> torch.Tensor:
    h = torch.ones((1, 1))
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return (h / math.sqrt(n)).to(device=device, dtype=dtype)


def rope_tables(pos: torch.Tensor, dim: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, device=pos.device, dtype=torch.float32) / dim))
    ang = pos.float()[:, None] * inv[None, :]
    return ang.cos().to(dtype), ang.sin().to(dtype)


@dataclass
class Step:
    """One prepared shape: ``run()`` executes the module once (timed region)."""

    run: Callable[[], torch.Tensor]
    meta: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)


class AttentionModule:
    def __init__(self, family: str, num_heads: int, gemm_type: str = "bfloat16",
                 kv_cache_dtype: str = "bfloat16", device="cuda", dims: AttnDims = DIMS,
                 seed: int = 0, topk: int | None = None, use_triton: bool = True):
        if family not in ("mla", "dsa"):
            raise ValueError(f"family {family!r}: expected 'mla' or 'dsa'")
        if not 1 <= num_heads <= 128:
            raise ValueError(f"num_heads {num_heads}: expected 1..128")
        if kv_cache_dtype not in ("bfloat16", "fp8"):
            raise ValueError(f"kv_cache_dtype {kv_cache_dtype!r}: expected bfloat16 or fp8")
        self.family, self.H, self.gemm_type, self.kv_dtype = family, num_heads, gemm_type, kv_cache_dtype
        self.d = dims
        self.topk = topk or dims.index_topk
        self.device = torch.device(device)
        self.use_triton = use_triton and ATT.HAVE_TRITON and self.device.type == "cuda" \
            or (use_triton and ATT.HAVE_TRITON and _interpreting())
        self.act = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        g = torch.Generator(device=self.device).manual_seed(seed)
        d, H = dims, num_heads
        self.n_a = d.q_lora_rank + d.kv_lora_rank + d.qk_rope
        if family == "dsa":
            self.n_a += d.index_head_dim + d.index_n_heads
        mk = lambda i, o: Linear(i, o, gemm_type, self.device, self.act, generator=g)  # noqa: E731
        self.wa = mk(d.hidden, self.n_a)
        self.wq_b = mk(d.q_lora_rank, H * d.qk_head)
        self.wo = mk(H * d.v_head, d.hidden)
        self.wkv_b = mk(d.kv_lora_rank, H * (d.qk_nope + d.v_head)) if family == "mla" else None
        rn = lambda *s: (torch.randn(s, device=self.device, generator=g) * 0.05).to(self.act)  # noqa: E731
        self.w_uk = rn(H, d.qk_nope, d.kv_lora_rank)
        self.w_uv = rn(H, d.kv_lora_rank, d.v_head)
        self.q_norm = 1 + rn(d.q_lora_rank)
        self.kv_norm = 1 + rn(d.kv_lora_rank)
        if family == "dsa":
            self.idx_wq_b = mk(d.q_lora_rank, d.index_n_heads * d.index_head_dim)
            self.k_norm_w = 1 + rn(d.index_head_dim)
            self.k_norm_b = rn(d.index_head_dim)
            self.had = hadamard(d.index_head_dim, self.device, self.act)
        self.kv_store = FP8 if kv_cache_dtype == "fp8" and self.device.type == "cuda" else self.act
        self.kv_scale = 1.0
        self.sm_scale = 1.0 / math.sqrt(d.qk_head)
        self.idx_dtype = FP8 if self.device.type == "cuda" else torch.float32
        self.gen = g
        self.n_sm = torch.cuda.get_device_properties(self.device).multi_processor_count \
            if self.device.type == "cuda" else 132

    # ------------------------------------------------------------------ shapes
    def _caches(self, b: int, Lc: int, g) -> dict:
        d = self.d
        kv = torch.randn((b * Lc, d.d_latent), device=self.device, generator=g, dtype=self.act).to(self.kv_store)
        st = {"kv": kv}
        if self.family == "dsa":
            st["ik"] = torch.randn((b * Lc, d.index_head_dim), device=self.device, generator=g,
                                   dtype=self.act).to(self.idx_dtype)
            st["iks"] = torch.rand((b * Lc,), device=self.device, generator=g) * 0.01 + 0.001
        return st

    def prepare_context(self, batch: int, isl: int, prefix: int = 0, seed: int = 1) -> Step:
        b, T, L = batch, batch * isl, prefix + isl
        g = torch.Generator(device=self.device).manual_seed(seed)
        st = self._caches(b, L, g)
        st["x"] = torch.randn((T, self.d.hidden), device=self.device, generator=g).to(self.act)
        pos = (prefix + torch.arange(isl, device=self.device)).repeat(b)
        st["cos"], st["sin"] = rope_tables(pos, self.d.qk_rope, self.act)
        meta = dict(phase="context", b=b, isl=isl, prefix=prefix, T=T, L=L, Lc=L, n_q=isl, pos0=prefix)
        if self.family == "dsa":
            self._prep_indexer(st, meta)
        return Step(run=lambda: self.forward(st, meta), meta=meta, state=st)

    def prepare_generation(self, batch: int, kv_len: int, seed: int = 1) -> Step:
        b, L = batch, kv_len + 1
        Lc = L
        if self.family == "mla" and ATT.DENSE_IMPL in ("flashinfer", "flashmla"):
            from .kernels import fi_mla, flashmla  # paged kernels: each request's rows start on a page
            page = fi_mla.CONFIG["page"] if ATT.DENSE_IMPL == "flashinfer" else flashmla.PAGE
            Lc = -(-L // page) * page
        g = torch.Generator(device=self.device).manual_seed(seed)
        st = self._caches(b, L, g)
        if Lc != L:  # the same rows as unpadded (same random data for either decode), each request page-aligned
            kv = torch.zeros((b, Lc, self.d.d_latent), device=self.device, dtype=st["kv"].dtype)
            kv[:, :L] = st["kv"].view(b, L, -1)
            st["kv"] = kv.view(b * Lc, -1)
        st["x"] = torch.randn((b, self.d.hidden), device=self.device, generator=g).to(self.act)
        pos = torch.full((b,), kv_len, device=self.device)
        st["cos"], st["sin"] = rope_tables(pos, self.d.qk_rope, self.act)
        meta = dict(phase="generation", b=b, isl=1, prefix=kv_len, T=b, L=L, Lc=Lc, n_q=1, pos0=kv_len)
        st["start"] = (torch.arange(b, device=self.device, dtype=torch.int32) * Lc)
        st["len"] = torch.full((b,), L, device=self.device, dtype=torch.int32)
        if self.family == "dsa":
            self._prep_indexer(st, meta)
        return Step(run=lambda: self.forward(st, meta), meta=meta, state=st)

    def _prep_indexer(self, st: dict, meta: dict) -> None:
        b, n_q, pos0, L, Lc = meta["b"], meta["n_q"], meta["pos0"], meta["L"], meta["Lc"]
        T = b * n_q
        if L <= self.topk:
            # every visible key is selected: position-only metadata, built once
            st["idx"] = IDX.causal_all_indices(b, n_q, pos0, self.topk, Lc, self.device)
            meta["indexer_logits"] = False
            return
        meta["indexer_logits"] = True
        st["idx"] = torch.full((T, self.topk), -1, dtype=torch.int32, device=self.device)
        st["row_base"] = (torch.arange(b, device=self.device, dtype=torch.int64) * Lc).repeat_interleave(n_q)[:, None]
        if T * L <= IDX.MAX_LOGITS:
            chunks = [(0, b, 0, n_q)]  # (first request, n requests, first query, n queries)
        else:
            qc = max(1, IDX.MAX_LOGITS // L)
            chunks = [(r, 1, q0, min(qc, n_q - q0)) for r in range(b) for q0 in range(0, n_q, qc)]
        meta["indexer_chunks"] = chunks
        biggest = max(nr * nq for _, nr, _, nq in chunks)
        st["logits"] = torch.empty((biggest, L), dtype=torch.float32, device=self.device)

    # ----------------------------------------------------------------- forward
    def forward(self, st: dict, meta: dict) -> torch.Tensor:
        d, H = self.d, self.H
        b, T, L, Lc, n_q, pos0 = meta["b"], meta["T"], meta["L"], meta["Lc"], meta["n_q"], meta["pos0"]
        # fused: the generation step's glue in few launches (kernels/prologue.py, bmm into its output view,
        # FP8 GEMM activations quantised straight into their padded rows)
        fused = PROLOGUE == "fused" and self.use_triton and meta["phase"] == "generation"
        a = self.wa(st["x"], pad_in_quant=fused)
        o1 = d.q_lora_rank
        o2 = o1 + d.kv_lora_rank
        o3 = o2 + d.qk_rope
        cos, sin = st["cos"], st["sin"]
        if fused:
            q_a, q = self._fused_prologue(a, st, T)
        else:
            q_a = F.rms_norm(a[:, :o1], (d.q_lora_rank,), self.q_norm, 1e-6)
            kv_c = F.rms_norm(a[:, o1:o2], (d.kv_lora_rank,), self.kv_norm, 1e-6)
            k_pe = rope(a[:, o2:o3], cos, sin)
            # append this step's latent rows to the cache
            kv3 = st["kv"].view(b, Lc, d.d_latent)
            new = kv3[:, pos0:pos0 + n_q]
            new[..., :d.kv_lora_rank].copy_(kv_c.view(b, n_q, -1))
            new[..., d.kv_lora_rank:].copy_(k_pe.view(b, n_q, -1))
            q = self.wq_b(q_a)
        q = q[:, :H * d.qk_head].view(T, H, d.qk_head)
        q_pe = PRO.rope_q(q[..., d.qk_nope:], cos, sin) if fused else rope(q[..., d.qk_nope:], cos[:, None],
                                                                            sin[:, None])
        if self.family == "mla" and meta["phase"] == "context":
            o = self._mla_context_attention(q, q_pe, kv_c, k_pe, st, meta)
        else:
            if self.family == "dsa":
                idx = self._indexer(q_a, a[:, o3:], st, meta)
            q_lat = torch.bmm(q[..., :d.qk_nope].transpose(0, 1), self.w_uk)  # [H,T,512]
            o_lat = torch.empty((H, T, d.kv_lora_rank), device=self.device, dtype=self.act)
            kw = dict(sm_scale=self.sm_scale, kv_scale=self.kv_scale)
            if self.family == "dsa":
                kw["idx"] = idx
            else:
                kw.update(start=st["start"], length=st["len"])
            if self.use_triton:
                if self.family == "mla":
                    kw["n_slots"] = L
                ATT.mla_attention(q_lat.transpose(0, 1), q_pe, st["kv"], out=o_lat.transpose(0, 1),
                                  workspace=st.setdefault("ws", {}), n_sm=self.n_sm, **kw)
            else:
                o_lat.copy_(ATT.mla_attention_ref(q_lat.transpose(0, 1), q_pe, st["kv"], **kw)
                            .to(self.act).transpose(0, 1))
            if fused:  # bmm writes [T, H, 128] through its transposed view: no transpose copy after it
                o = torch.empty((T, H, d.v_head), device=self.device, dtype=self.act)
                torch.bmm(o_lat, self.w_uv, out=o.transpose(0, 1))
                o = o.view(T, H * d.v_head)
            else:
                o = torch.bmm(o_lat, self.w_uv).transpose(0, 1).reshape(T, H * d.v_head)
        return self.wo(o, pad_in_quant=fused)[:, :d.hidden]

    def _fused_prologue(self, a, st, T):
        """(q_a, wq_b output) and this step's cache row through one kernel (kernels/prologue.py); with an
        FP8 block wq_b the kernel hands it q_a already quantised (q_a itself is kept for DSA's indexer)."""
        d = self.d
        quant = self.wq_b.quant_buffers(T, a.device) if self.wq_b.takes_quantised(a) else None
        q_a = PRO.gen_prologue(a, self.q_norm, self.kv_norm, st["cos"], st["sin"], st["kv"], st["start"],
                               st["len"], d_q=d.q_lora_rank, d_c=d.kv_lora_rank, d_r=d.qk_rope,
                               kv_scale=self.kv_scale, quant=quant,
                               write_q_a=quant is None or self.family == "dsa")
        q = self.wq_b.mm_quantised(*quant, T) if quant is not None else self.wq_b(q_a, pad_in_quant=True)
        return q_a, q

    def _mla_context_attention(self, q, q_pe, kv_c, k_pe, st, meta):
        d, H = self.d, self.H
        b, T, isl, L, prefix = meta["b"], meta["T"], meta["isl"], meta["L"], meta["prefix"]
        q = torch.cat([q[..., :d.qk_nope], q_pe], dim=-1)
        if prefix:
            lat = st["kv"].view(b, L, d.d_latent)
            lat = lat.to(self.act) * self.kv_scale if lat.dtype != self.act else lat
            kv_c = lat[..., :d.kv_lora_rank].reshape(b * L, -1)
            k_pe = lat[..., d.kv_lora_rank:].reshape(b * L, -1)
        n_kv = kv_c.shape[0]
        kv = self.wkv_b(kv_c)[:, :H * (d.qk_nope + d.v_head)].view(n_kv, H, d.qk_nope + d.v_head)
        k = torch.cat([kv[..., :d.qk_nope], k_pe[:, None, :].expand(n_kv, H, d.qk_rope)], dim=-1)
        v = kv[..., d.qk_nope:]
        qh = q.view(b, isl, H, -1).transpose(1, 2)
        kh = k.view(b, L, H, -1).transpose(1, 2)
        vh = v.view(b, L, H, -1).transpose(1, 2)
        dv = vh.shape[-1]
        if SDPA_PAD_V and dv < qh.shape[-1]:
            vh = F.pad(vh, (0, qh.shape[-1] - dv))
        if prefix:
            from torch.nn.attention.bias import causal_lower_right
            mask = causal_lower_right(isl, L)
            out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, scale=self.sm_scale)
        else:
            out = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True, scale=self.sm_scale)
        out = out[..., :dv]
        return out.transpose(1, 2).reshape(T, H * d.v_head)

    def _indexer(self, q_a, a_idx, st, meta) -> torch.Tensor:
        d = self.d
        b, T, L, Lc, n_q, pos0 = meta["b"], meta["T"], meta["L"], meta["Lc"], meta["n_q"], meta["pos0"]
        nh, hd = d.index_n_heads, d.index_head_dim
        cos, sin = st["cos"], st["sin"]
        qi = self.idx_wq_b(q_a)[:, :nh * hd].view(T, nh, hd)
        qi = torch.cat([rope(qi[..., :d.qk_rope], cos[:, None], sin[:, None]), qi[..., d.qk_rope:]], dim=-1)
        qi = (qi.reshape(T * nh, hd) @ self.had)
        ki = F.layer_norm(a_idx[:, :hd], (hd,), self.k_norm_w, self.k_norm_b, 1e-6)
        ki = torch.cat([rope(ki[:, :d.qk_rope], cos, sin), ki[:, d.qk_rope:]], dim=-1) @ self.had
        quant = (lambda x: quant_groups(x)) if self.device.type == "cuda" else _quant_rows_f32
        q8, qs = quant(qi)
        k8, ks = quant(ki)
        ik3 = st["ik"].view(b, Lc, hd)
        ik3[:, pos0:pos0 + n_q].copy_(k8.view(b, n_q, hd))
        st["iks"].view(b, Lc)[:, pos0:pos0 + n_q].copy_(ks.view(b, n_q))
        if not meta["indexer_logits"]:
            return st["idx"]
        q8 = q8.view(T, nh, hd)
        w = a_idx[:, hd:hd + nh].float() * (nh ** -0.5 * hd ** -0.5) * qs.view(T, nh)
        idx = st["idx"]
        for r0, nr, q0, nq in meta["indexer_chunks"]:
            t0 = r0 * n_q + q0
            tt = nr * nq
            lg = st["logits"][:tt]
            qv, wv = q8[t0:t0 + tt], w[t0:t0 + tt]
            kv_rows = slice(r0 * Lc, (r0 + nr) * Lc)
            if self.use_triton:
                if meta["phase"] == "generation":
                    IDX.indexer_logits_generation(qv, wv, st["ik"][kv_rows], st["iks"][kv_rows], lg,
                                                  L=L, k_rows_per_req=Lc)
                else:
                    IDX.indexer_logits_context(qv, wv, st["ik"][kv_rows], st["iks"][kv_rows], lg,
                                               n_req=nr, n_q=nq, pos0=pos0 + q0, L=L, k_rows_per_req=Lc)
            else:
                lg.copy_(IDX.indexer_logits_ref(qv, wv, st["ik"][kv_rows], st["iks"][kv_rows], n_req=nr,
                                                n_q=nq, pos0=pos0 + q0, L=L, k_rows_per_req=Lc))
            IDX.topk_indices(lg, self.topk, row_base=st["row_base"][t0:t0 + tt], out=idx[t0:t0 + tt])
        return idx


def _quant_rows_f32(x: torch.Tensor):
    """CPU stand-in for FP8 row quantisation (float32 kept; same scales)."""
    xq, s = quant_groups_ref(x)
    return xq.float(), s


def _interpreting() -> bool:
    import os
    return os.environ.get("TRITON_INTERPRET") == "1"
