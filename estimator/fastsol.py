"""Scalar fast path of the calibrated SOL: the same kernels as `sol.kernels`, folded into
straight-line float arithmetic with the spec's peaks and the fitted efficiencies as
constants, so that one estimate costs a few microseconds. Tests check it against
`sol.kernels` + `calibrate.calibrated_ms` on random shapes.
"""

from __future__ import annotations

from .calibrate import _DEFAULT_EFF, CalibrationParams
from .sol import ACT_BYTES, KEY_TILE, SPARSE_HEAD_TILE, op_dims
from .specs import ModelSpec, SystemSpec



def _combined(kernel: str, ov: float, p: float, maximum: str) -> tuple[list[str], str]:
    """Source lines and expression combining the per-module overhead `ov` with the kernel
    time `kernel`: their sum for p == 1, else the p-norm, scaled by m = max(ov, kernel)
    (`maximum` formats that for scalars or arrays) so that the powers cannot overflow."""
    if p == 1.0:
        return [], f"{ov!r} + {kernel}"
    return [f"m = {maximum.format(kernel, ov)}"], f"m * (({ov!r} / m) ** {p!r} + ({kernel} / m) ** {p!r}) ** {1.0 / p!r}"

def compile_scalar(op: str, model: ModelSpec, system: SystemSpec, params: CalibrationParams, *,
                   gemm_type: str, kv_cache_dtype: str):
    """A function (batch, seq, prefix, num_heads) -> (calibrated ms, roofline ms) for one op.

    seq is isl for context ops and kv_len for generation ops.
    """
    family, context, kernel_only, d, rq, rk, dr, dn, dv, dlat, kvb, w, fp8_gemm, gg = op_dims(
        op, model, gemm_type, kv_cache_dtype
    )
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
    A_rows = k("dense_attn_rows", False)
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
        acc(A_rows, f"t * h * {2.0 * (dn + dr + dv) * KEY_TILE!r}", "0.0")
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
    lines.append("c = cal * 1e3")
    pre, combined = _combined("c", overhead, p, "{0} if {0} > {1!r} else {1!r}")
    lines += pre
    lines.append(f"return {combined}, raw * 1e3")
    src = "def evaluate(batch, seq, prefix, h):\n" + "\n".join("    " + ln for ln in lines)
    namespace: dict = {}
    exec(compile(src, f"<calibrated SOL of {op}>", "exec"), namespace)  # noqa: S102 - generated from constants only
    return namespace["evaluate"]


def _kernel_terms(op: str, model: ModelSpec, gemm_type: str, kv_cache_dtype: str):
    """The kernels of `op` as linear forms over per-shape variables (same maths as sol.kernels).

    Returns (variables the op needs, [(group, fp8, flops {var: coef}, bytes {var: coef})]);
    the variable "1" is the constant term.
    """
    family, context, kernel_only, d, rq, rk, dr, dn, dv, dlat, kvb, w, fp8_gemm, gg = op_dims(
        op, model, gemm_type, kv_cache_dtype
    )
    topk, hi, di = model.index_topk, model.index_n_heads, model.index_head_dim
    a = ACT_BYTES
    out = []

    def k(group, fp8, flops, nbytes):
        out.append((group, fp8, {v: c for v, c in flops.items() if c}, {v: c for v, c in nbytes.items() if c}))

    if not kernel_only:
        n = rq + rk + dr + (di if family == "dsa" else 0)
        k(gg, fp8_gemm, {"t": 2.0 * d * n}, {"1": w * d * n, "t": a * (d + n)})
        q = dn + dr
        k(gg, fp8_gemm, {"th": 2.0 * rq * q}, {"h": w * rq * q, "t": a * rq, "th": a * q})
        k(gg, fp8_gemm, {"th": 2.0 * dv * d}, {"h": w * dv * d, "th": a * dv, "t": a * d})
        k("elementwise", False, {}, {"t": 4.0 * (rq + rk) + dlat * (2.0 + kvb), "th": 4.0 * dr})
    if family == "mla" and context:
        if not kernel_only:
            k(gg, fp8_gemm, {"blh": 2.0 * rk * (dn + dv)}, {"h": w * rk * (dn + dv), "bl": a * rk,
                                                             "blh": a * (dn + dv)})
        k("dense_attn", False, {"hsk": 2.0 * (dn + dr + dv)}, {"th": a * (dn + dr + dv), "blh": a * (dn + dr + dv)})
        k("dense_attn_rows", False, {"th": 2.0 * (dn + dr + dv) * KEY_TILE}, {})
        return out
    if not kernel_only:
        k(gg, fp8_gemm, {"th": 2.0 * dn * rk}, {"h": w * dn * rk, "th": a * (dn + rk)})
        k(gg, fp8_gemm, {"th": 2.0 * rk * dv}, {"h": w * rk * dv, "th": a * (rk + dv)})
    if family == "mla":
        k("mla_decode_fp8kv" if kvb < 2 else "mla_decode", False, {"hsk": 2.0 * (dlat + rk)},
          {"bl": kvb * dlat, "th": a * (dlat + rk)})
        return out
    k("sparse_attn", False, {"thp": 2.0 * (dlat + rk) * topk}, {"bls": kvb * dlat, "thp": a * (dlat + rk), "t": 4.0 * topk})
    k(gg, fp8_gemm, {"t": 2.0 * rq * hi * di}, {"1": w * rq * hi * di, "t": a * (rq + hi * di)})
    k("gemm_bf16", False, {"t": 2.0 * d * hi}, {"1": 2.0 * d * hi, "t": a * (d + hi)})
    k("elementwise", False, {}, {"t": 3.0 * (hi * di + di)})
    k("indexer", True, {"sk_on": 2.0 * hi * di}, {"t_on": hi * (di + 4.0), "bl_on": di + 4.0, "sk_on": 4.0})
    k("indexer", False, {}, {"sk_on": 4.0, "t_on": 4.0 * topk})
    return out


def compile_array(op: str, model: ModelSpec, system: SystemSpec, params: CalibrationParams, *,
                  gemm_type: str, kv_cache_dtype: str, dtype=None):
    """Vector twin of `compile_scalar`: f(batch, seq, prefix, heads) arrays -> calibrated ms array.

    Each kernel costs a handful of array passes (constants folded into one
    coefficient per term). dtype float32 (estimate_many's default) halves the
    memory traffic at a relative rounding of ~1e-6, far below the estimator's error.
    """
    import numpy as np

    dtype = np.float64 if dtype is None else dtype

    context = "_context" in op
    topk = model.index_topk
    terms = _kernel_terms(op, model, gemm_type, kv_cache_dtype)
    bf16, fp8, bw = system.peak_bf16_flops_per_s, system.peak_fp8_flops_per_s, system.hbm_bytes_per_s
    lines = ["b = np.asarray(batch, dtype=DT); h = np.asarray(heads, dtype=DT)"]
    if context:
        lines += ["isl = np.asarray(seq, dtype=DT); prefix = np.asarray(prefix, dtype=DT)",
                  "t = b * isl; length = prefix + isl; sk = b * (isl * prefix + isl * (isl + 1.0) * 0.5)"]
    else:
        lines += ["t = b; length = np.asarray(seq, dtype=DT) + 1.0; sk = b * length"]
    derived = {
        "th": "th = t * h", "bl": "bl = b * length", "blh": "blh = b * length * h", "hsk": "hsk = h * sk",
        "thp": f"thp = t * ({SPARSE_HEAD_TILE} * np.ceil(h / {SPARSE_HEAD_TILE}))",
        "bls": "bls = b * length" if context else f"bls = b * np.minimum(length, {float(topk)!r})",
        "sk_on": f"sk_on = np.where(length > {topk}, sk, 0.0)",
        "t_on": f"t_on = np.where(length > {topk}, t, 0.0)",
        "bl_on": f"bl_on = np.where(length > {topk}, b * length, 0.0)",
    }
    used = {v for _, _, f, by in terms for v in (*f, *by)}
    lines += [src for v, src in derived.items() if v in used]
    lines.append("cal = np.zeros(np.shape(t), dtype=DT)")

    def form(coefs: dict, scale: float) -> str:
        parts = [repr(c * scale) if v == "1" else f"{c * scale!r} * {v}" for v, c in coefs.items()]
        return " + ".join(parts) if parts else "0.0"

    for group, is_fp8, flops, nbytes in terms:
        ef, eb = params.eff.get(group, (_DEFAULT_EFF, _DEFAULT_EFF))
        cb = form(nbytes, 1e3 / (bw * eb))
        if flops:
            cf = form(flops, 1e3 / ((fp8 if is_fp8 else bf16) * ef))
            lines.append(f"cal += np.maximum({cf}, {cb})")
        else:
            lines.append(f"cal += {cb}")
    ov, p = params.overhead_ms, params.combine_p
    pre, combined = _combined("cal", ov, p, "np.maximum({0}, {1!r})")
    lines += pre
    lines.append(f"return {combined}")
    src = "def evaluate(batch, seq, prefix, heads):\n" + "\n".join("    " + ln for ln in lines)
    namespace: dict = {"np": np, "DT": dtype}
    exec(compile(src, f"<calibrated SOL of {op}, vectorised>", "exec"), namespace)  # noqa: S102 - constants only
    return namespace["evaluate"]
