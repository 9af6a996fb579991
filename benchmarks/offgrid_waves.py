"""Does the off-grid generation bias follow the collector kernel's split-KV wave steps?

    python benchmarks/offgrid_waves.py --raw RAW --measured data/validation/h100_sxm --system h100_sxm
        [--threshold 5] [--json]

Fits and scores as `benchmarks/offgrid_validation.py` (fit on `--raw` only,
held-out collector points at shapes between the grid's values), then, for each
generation point, rebuilds the launch the collector's attention kernel made
(collector 0.1 logs: `collector.kernels.mla_attn`, config, head blocks and
split-KV factor by its own `pick_splits`, on `--sms` SMs): the makespan proxy
waves x chunk length (programs in rounds of one per SM, each running its chunk
of keys). DSA decode attends over the top-k slots (2,048), MLA decode over
kv_len. The proxy is interpolated from the point's bracketing grid values
(the fit slice's measured batch and sequence values around it) bilinearly in
log2, as the grids interpolate; a point whose proxy is off that interpolation
by more than `--threshold` % sits on a wave step no grid value shows.

Prints, per op, the error of the wave-step points and of the others, and the
median signed error against the proxy's interpolation error. Measured points
never enter a fit (they are read from `--measured`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collector.kernels import mla_attn  # noqa: E402

_spec = importlib.util.spec_from_file_location("offgrid_validation", REPO / "benchmarks" / "offgrid_validation.py")
offgrid = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(offgrid)

TOPK = 2048  # DSA decode: the sparse kernel's index width (DeepSeek-V3.2 index_topk)


def makespan(op: str, batch: int, heads: int, kv_len: int, n_sm: int = 132) -> float:
    """Waves x chunk length of the collector 0.1 attention launch (`mla_attn.mla_attention`'s choices)."""
    dense = op == "mla_generation"
    k_slots = kv_len if dense else TOPK
    cfg = mla_attn.CONFIG
    if batch * -(-heads // min(64, mla_attn.CONFIG["block_h_max"])) < mla_attn.DEC_PROGRAMS * n_sm:
        cfg = mla_attn.CONFIG_DEC
    block_h = max(16, min(cfg["block_h_max"], 1 << (heads - 1).bit_length()))
    n_hb = -(-heads // block_h)
    target = cfg.get("split_target_dense", cfg.get("split_target", 2)) if dense else cfg.get("split_target", 2)
    splits = mla_attn.pick_splits(batch, n_hb, k_slots, n_sm, target=target)
    chunk = -(-k_slots // splits)
    chunk = -(-chunk // cfg["block_n"]) * cfg["block_n"]
    splits = -(-k_slots // chunk)
    return float(-(-(batch * n_hb * splits) // n_sm) * chunk)


def _bracket(axis: list[int], v: int) -> tuple[int, int]:
    axis = sorted(axis)
    lo = max(a for a in axis if a <= v)
    hi = min(a for a in axis if a >= v)
    return lo, hi


def wave_step_pct(op: str, heads: int, batch: int, kv_len: int, batches: list[int], seqs: list[int],
                  n_sm: int = 132) -> float:
    """% by which the makespan proxy interpolated (log2, bilinear) from the bracketing grid values
    misses the point's own proxy (negative: the interpolation is below it)."""
    b0, b1 = _bracket(batches, batch)
    s0, s1 = _bracket(seqs, kv_len)
    wb = 0.0 if b1 == b0 else (np.log2(batch) - np.log2(b0)) / (np.log2(b1) - np.log2(b0))
    ws = 0.0 if s1 == s0 else (np.log2(kv_len) - np.log2(s0)) / (np.log2(s1) - np.log2(s0))
    lm = {(b, s): np.log2(makespan(op, b, heads, s, n_sm)) for b in (b0, b1) for s in (s0, s1)}
    interp = ((1 - wb) * ((1 - ws) * lm[b0, s0] + ws * lm[b0, s1]) + wb * ((1 - ws) * lm[b1, s0] + ws * lm[b1, s1]))
    return float((2.0 ** (interp - np.log2(makespan(op, batch, heads, kv_len, n_sm))) - 1) * 100)


def wave_table(errors: pl.DataFrame, fit: pl.DataFrame, threshold: float, n_sm: int) -> pl.DataFrame:
    """Generation interior points with `wave_pct` (`wave_step_pct`) and `wave_step` (|wave_pct| > threshold)."""
    from estimator.slices import SLICE_KEYS

    gen = errors.filter(pl.col("op").str.ends_with("_generation") & (pl.col("class") == "interior"))
    axes = offgrid.slice_axes(fit)
    gen = gen.join(axes, on=list(SLICE_KEYS), how="left", nulls_equal=True)
    pct = [wave_step_pct(r["op"], r["num_heads"], r["batch_size"], r["kv_len"], r["batches"], r["seqs"], n_sm)
           for r in gen.iter_rows(named=True)]
    return gen.drop("batches", "seqs").with_columns(pl.Series("wave_pct", pct)).with_columns(
        (pl.col("wave_pct").abs() > threshold).alias("wave_step"))


def summarize(table: pl.DataFrame) -> pl.DataFrame:
    return (table.group_by("op", "wave_step").agg(
        pl.len().alias("n"), pl.col("abs_err_pct").median().alias("median_pct"),
        pl.col("abs_err_pct").quantile(0.9, "linear").alias("p90_pct"),
        pl.col("err_pct").median().alias("bias_pct"), pl.col("wave_pct").median().alias("wave_pct"))
        .sort("op", "wave_step"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--raw", type=Path, default=REPO / "data" / "raw", help="fit data (raw logs)")
    p.add_argument("--measured", type=Path, default=REPO / "benchmarks" / "offgrid", help="held-out points")
    p.add_argument("--system", default="h200_sxm")
    p.add_argument("--sms", type=int, default=132, help="SM count of the GPU that measured (H100 / H200 SXM: 132)")
    p.add_argument("--threshold", type=float, default=5.0, help="%% off the interpolated proxy to call a wave step")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    for path in (a.raw, a.measured):
        if not path.exists():
            print(f"offgrid_waves: {path} does not exist", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        fit = offgrid._points([a.raw], Path(tmp) / "fit").filter(pl.col("system") == a.system)
        test = offgrid._points([a.measured], Path(tmp) / "val").filter(pl.col("system") == a.system)
    if fit.height == 0 or test.height == 0:
        print(f"offgrid_waves: no {a.system} points in the fit or the held-out data", file=sys.stderr)
        return 2
    table = wave_table(offgrid.score(fit, test), fit, a.threshold, a.sms)
    summary = summarize(table)
    if a.json:
        print(json.dumps({"summary": summary.to_dicts(),
                          "points": table.select("op", "num_heads", "batch_size", "kv_len", "err_pct",
                                                 "wave_pct").to_dicts()}, indent=1))
        return 0
    print(f"generation interior points, {a.system}: wave step = split-KV makespan proxy off its grid "
          f"interpolation by > {a.threshold:g}%")
    print("| op | wave step | n | median % | p90 % | bias (median signed) % | proxy off (median) % |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in summary.iter_rows(named=True):
        print(f"| {r['op']} | {'yes' if r['wave_step'] else 'no'} | {r['n']} | {r['median_pct']:.2f} | "
              f"{r['p90_pct']:.2f} | {r['bias_pct']:+.2f} | {r['wave_pct']:+.1f} |")
    for op, sub in table.group_by("op", maintain_order=True):
        if sub.height > 2:
            rho = float(np.corrcoef(sub["err_pct"].to_numpy(), sub["wave_pct"].to_numpy())[0, 1])
            print(f"{op[0]}: correlation of signed error and proxy miss {rho:+.2f} (n={sub.height})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
