"""Scalar fast path of the calibrated SOL: the same kernels as `sol.kernels`, folded into
straight-line float arithmetic with the spec's peaks and the fitted efficiencies as
constants, so that one estimate costs a few microseconds. Tests check it against
`sol.kernels` + `calibrate.calibrated_ms` on random shapes.
"""

from __future__ import annotations

from .calibrate import _DEFAULT_EFF, CalibrationParams
from .common import DTYPE_BYTES
from .sol import ACT_BYTES, SPARSE_HEAD_TILE
from .specs import ModelSpec, SystemSpec


def compile_scalar(op: str, model: ModelSpec, system: SystemSpec, params: CalibrationParams, *,
                   gemm_type: str, kv_cache_dtype: str):
    """A function (batch, seq, prefix, num_heads) -> (calibrated ms, roofline ms) for one op.

    seq is isl for context ops and kv_len for generation ops.
    """
    family, _, rest = op.partition("_")
    context = rest.startswith("context")
    kernel_only = rest.endswith("_kernel")
    d, rq, rk, dr = model.hidden_size, model.q_lora_rank, model.kv_lora_rank, model.qk_rope_head_dim
    dn, dv = model.qk_nope_head_dim, model.v_head_dim
    dlat = rk + dr
    kvb = DTYPE_BYTES[kv_cache_dtype]
    fp8_gemm = gemm_type.startswith("fp8")
    w = DTYPE_BYTES[gemm_type]
    gg = "gemm_fp8" if fp8_gemm else "gemm_bf16"
    bf16, fp8, bw = system.peak_bf16_flops_per_s, system.peak_fp8_flops_per_s, system.hbm_bytes_per_s
    topk, hi, di = model.index_topk, model.index_n_heads, model.index_head_dim

    def k(group: str, is_fp8: bool):
        """(calibrated s/FLOP, calibrated s/byte, raw s/FLOP, raw s/byte) of a kernel group."""
        ef, eb = params.eff.get(group, (_DEFAULT_EFF, _DEFAULT_EFF))
        peak = fp8 if is_fp8 else bf16
        return 1.0 / (peak * ef), 1.0 / (bw * eb), 1.0 / peak, 1.0 / bw

    G = k(gg, fp8_gemm)
    GB = k("gemm_bf16", False)
    E = k("elementwise", False)
    A_dense = k("dense_attn", False)
    A_dec = k("mla_decode_fp8kv" if kvb < 2 else "mla_decode", False)
    A_sp = k("sparse_attn", False)
    IX = k("indexer", True)
    IXT = k("indexer", False)
    overhead, p = params.overhead_ms, params.combine_p
    n_kv_a = rq + rk + dr + (di if family == "dsa" else 0)

    lines: list[str] = []

    def acc(c, f: str, by: str) -> None:
        """Emit one kernel: calibrated and raw max(FLOP time, byte time), summed."""
        lines.append(f"f = {f}; y = {by}")
        lines.append(f"x = f * {c[0]!r}; z = y * {c[1]!r}; cal += x if x > z else z")
        lines.append(f"x = f * {c[2]!r}; z = y * {c[3]!r}; raw += x if x > z else z")

    def gemm(c, m: str, kk: str, n: str, ww: float) -> None:
        acc(c, f"({m}) * (2.0 * ({kk}) * ({n}))", f"{ww!r} * ({kk}) * ({n}) + ({m}) * ({ACT_BYTES!r} * (({kk}) + ({n})))")

    if context:
        lines += ["b = float(batch); isl = float(seq); t = b * isl; length = prefix + isl",
                  "sk = b * (isl * prefix + isl * (isl + 1.0) * 0.5)"]
    else:
        lines += ["b = float(batch); t = b; length = seq + 1.0; sk = b * length"]
    lines.append("cal = 0.0; raw = 0.0")
    if not kernel_only:
        gemm(G, "t", repr(d), repr(n_kv_a), w)
        gemm(G, "t", repr(rq), f"h * {dn + dr}", w)
        gemm(G, "t", f"h * {dv}", repr(d), w)
        acc(E, "0.0", f"t * {4.0 * (rq + rk) + dlat * (2.0 + kvb)!r} + t * h * {4.0 * dr!r}")
    if family == "mla" and context:
        if not kernel_only:
            gemm(G, "b * length", repr(rk), f"h * {dn + dv}", w)
        acc(A_dense, f"{2.0 * (dn + dr + dv)!r} * h * sk",
            f"{ACT_BYTES!r} * (t * h * {dn + dr} + b * length * h * {dn + dr + dv} + t * h * {dv})")
    else:
        if not kernel_only:
            acc(G, f"t * h * {2.0 * dn * rk!r}", f"h * {w * dn * rk!r} + t * h * {ACT_BYTES * (dn + rk)!r}")
            acc(G, f"t * h * {2.0 * rk * dv!r}", f"h * {w * rk * dv!r} + t * h * {ACT_BYTES * (rk + dv)!r}")
        if family == "mla":
            acc(A_dec, f"h * sk * {2.0 * (dlat + rk)!r}",
                f"b * length * {kvb * dlat!r} + t * h * {ACT_BYTES * (dlat + rk)!r}")
        else:
            lines.append(f"hp = {SPARSE_HEAD_TILE} * -(-h // {SPARSE_HEAD_TILE})")
            lines.append("l_sparse = length" if context else f"l_sparse = length if length < {topk} else {float(topk)!r}")
            acc(A_sp, f"t * hp * {2.0 * (dlat + rk) * topk!r}",
                f"b * l_sparse * {kvb * dlat!r} + t * hp * {ACT_BYTES * (dlat + rk)!r} + t * {4.0 * topk!r}")
            gemm(G, "t", repr(rq), repr(hi * di), w)
            gemm(GB, "t", repr(d), repr(hi), 2.0)
            acc(E, "0.0", f"t * {3.0 * (hi * di + di)!r}")
            lines.append(f"if length > {topk}:")
            body: list[str] = []
            saved, lines[:] = lines[:], []
            acc(IX, f"sk * {2.0 * hi * di!r}", f"t * {hi * (di + 4.0)!r} + b * length * {di + 4.0!r} + sk * 4.0")
            acc(IXT, "0.0", f"sk * 4.0 + t * {4.0 * topk!r}")
            body, lines[:] = lines[:], saved
            lines.extend("    " + ln for ln in body)
    if p == 1.0:
        lines.append(f"return {overhead!r} + cal * 1e3, raw * 1e3")
    else:
        lines.append(f"c = cal * 1e3; m = c if c > {overhead!r} else {overhead!r}")
        lines.append(f"return m * (({overhead!r} / m) ** {p!r} + (c / m) ** {p!r}) ** {1.0 / p!r}, raw * 1e3")
    src = "def evaluate(batch, seq, prefix, h):\n" + "\n".join("    " + ln for ln in lines)
    namespace: dict = {}
    exec(compile(src, f"<calibrated SOL of {op}>", "exec"), namespace)  # noqa: S102 - generated from constants only
    return namespace["evaluate"]
