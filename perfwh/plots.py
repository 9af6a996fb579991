"""Plots and the HTML report of `perfwh compare` (matplotlib, imported only when asked for)."""

from __future__ import annotations

import base64
import html
import io
import os

import numpy as np
import polars as pl

from .cli import CliError

BEYOND = ("extrapolated", "transferred", "sol")  # sources that are not backed by neighbouring data
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
PHASE_TITLES = {"context": "Context (prefill): one forward pass",
                "generation": "Generation (decode): one step"}
Y_LABELS = {"context": "attention ms per prefill pass (all layers)",
            "generation": "attention ms per decode step (all layers)"}


def _write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write beside the target, then rename over it (readers never see half a file)."""
    from pathlib import Path

    from warehouse.atomic import tmp_path_for

    target = Path(path).expanduser().resolve()
    if not target.parent.is_dir():
        raise FileNotFoundError(f"folder {target.parent} does not exist (for {path})")
    tmp = tmp_path_for(target)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _pyplot():
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise CliError("plots need matplotlib: pip install 'perf-warehouse[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _nice_below(v: float) -> float:
    """The largest 1/2/5 x 10^k at or below v (so the axis ends on a labelled tick)."""
    k = np.floor(np.log10(v))
    return max(m * 10**k for m in (1, 2, 5) if m * 10**k <= v * (1 + 1e-9))


def _nice_above(v: float) -> float:
    """The smallest 1/2/5 x 10^k at or above v."""
    k = np.floor(np.log10(v))
    return min(m * 10**k for m in (1, 2, 5, 10) if m * 10**k >= v * (1 - 1e-9))


def _tokens(x: float, _pos=None) -> str:
    if x >= 1024 and x % 1024 == 0:
        return f"{int(x) // 1024}k"
    return f"{int(x)}"


def _short(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def compare_plot(fine: pl.DataFrame, crossovers, models, batch: int, db,
                 path: str | os.PathLike | None) -> bytes:
    """Log-log attention time vs context length per model and phase, and the speed-up; PNG bytes.

    Solid lines: interpolated from measured data; dashed and shaded: beyond the
    measured range (extrapolated along the SOL growth law, transferred or SOL
    alone). Dots: points measured exactly at this shape. Bands: the 80% interval of the model total.
    """
    plt = _pyplot()
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    base = models[0]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.2), sharex=True,
                             gridspec_kw={"height_ratios": [2.2, 1]})
    colors = {m.model_path: COLORS[i % len(COLORS)] for i, m in enumerate(models)}
    for col, phase in enumerate(("context", "generation")):
        ax, rax = axes[0, col], axes[1, col]
        sub = fine.filter(pl.col("phase") == phase)
        shade_from = None
        for m in models:
            d = sub.filter(pl.col("model") == m.model_path).sort("seq")
            x, y = d["seq"].to_numpy(), d["model_ms"].to_numpy()
            beyond = np.isin(d["source"].to_numpy(), BEYOND)
            c = colors[m.model_path]
            label = (f"{_short(m.model_path)} ({m.hf.attention.upper()}, {m.num_layers} layers, "
                     f"{m.num_heads} heads/GPU)")
            inside = ~beyond
            # draw the in-data part solid and the rest dashed, joined at the boundary
            if inside.any():
                last_in = np.flatnonzero(inside)[-1]
                ax.plot(x[: last_in + 1], y[: last_in + 1], color=c, lw=2.2, label=label)
                if last_in + 1 < x.size:
                    ax.plot(x[last_in:], y[last_in:], color=c, lw=2.2, ls="--")
            else:
                ax.plot(x, y, color=c, lw=2.2, ls="--", label=label)
            if "low_ms" in d.columns and d["low_ms"].is_not_nan().all():  # the 80% interval as a band
                ax.fill_between(x, d["low_ms"].to_numpy(), d["high_ms"].to_numpy(), color=c, alpha=0.18, lw=0)
            meas = d["source"].to_numpy() == "measured"
            ax.plot(x[meas], y[meas], "o", color=c, ms=6, mec="white", mew=0.8, zorder=5)
            if beyond.any():
                first = x[np.flatnonzero(beyond)[0]]
                shade_from = first if shade_from is None else min(shade_from, first)
        xmax = sub["seq"].max()
        if shade_from is not None:
            for a in (ax, rax):
                a.axvspan(shade_from, xmax, color="0.88", zorder=0, lw=0)
        for m in models[1:]:
            a = sub.filter(pl.col("model") == base.model_path).sort("seq")
            b = sub.filter(pl.col("model") == m.model_path).sort("seq")
            ratio = a["model_ms"].to_numpy() / b["model_ms"].to_numpy()
            rax.plot(a["seq"].to_numpy(), ratio, color=colors[m.model_path], lw=2)
        rax.axhline(1.0, color="0.3", lw=1, ls=":")
        for cr in crossovers:
            if cr.phase == phase and cr.status == "crosses":
                for a in (ax, rax):
                    a.axvline(cr.seq, color=colors[cr.other], lw=1.2, ls="-.")
                ax.annotate(f"crossover ~{cr.seq:,.0f}", xy=(cr.seq, 0.03),
                            xycoords=("data", "axes fraction"), xytext=(5, 0), textcoords="offset points",
                            color=colors[cr.other], fontsize=10, fontweight="bold")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        rax.set_yscale("log")
        rax.set_xscale("log", base=2)
        ax.set_title(PHASE_TITLES[phase], fontsize=12)
        ax.set_ylabel(Y_LABELS[phase], fontsize=10)
        rax.set_ylabel(f"speed-up vs {_short(base.model_path)}\n(>1x: cheaper)", fontsize=10)
        rax.set_xlabel("context length (tokens)" if phase == "context" else "KV length (tokens)", fontsize=10)
        rax.xaxis.set_major_locator(LogLocator(base=2))
        rax.xaxis.set_major_formatter(FuncFormatter(_tokens))
        rax.xaxis.set_minor_formatter(NullFormatter())
        lo, hi = rax.get_ylim()
        rax.set_ylim(_nice_below(min(lo, 0.5)), _nice_above(max(hi, 2.0)))
        for a in (ax, rax):
            a.grid(True, which="major", color="0.8", lw=0.6)
            a.tick_params(labelsize=9)
        ax.set_xlim(sub["seq"].min(), xmax)
        for a in (ax, rax):
            lo, hi = a.get_ylim()
            dense = a is ax and np.log10(hi / lo) < 1.5  # under ~1.5 decades: label more ticks
            subs = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0) if dense else (1.0, 2.0, 5.0)
            a.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
            a.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
            a.yaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        rax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}x"))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="0.3", marker="o", ls="", mec="white"),
                plt.Line2D([], [], color="0.3", ls="--"),
                Patch(color="0.88")]
    labels += ["measured at this exact shape", "beyond measured data (extrapolated along SOL)",
               "region with extrapolated / SOL estimates"]
    if "low_ms" in fine.columns and fine["low_ms"].is_not_nan().any():
        handles.append(Patch(color="0.3", alpha=0.25))
        labels.append("80% interval of the model total")
    if len(models) > 1:
        for m in models[1:]:
            handles.append(plt.Line2D([], [], color=colors[m.model_path], lw=2))
            labels.append(f"speed-up {_short(base.model_path)} / {_short(m.model_path)} (lower panels)")
    c = base.config
    fig.suptitle(
        f"Attention block time vs context length: {base.system} / {base.backend} {db.version}, "
        f"tp {c.tp_size}, batch {batch}, "
        f"gemm {c.gemm_quant_mode}, kv {c.kvcache_quant_mode}",
        fontsize=12)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9.5, frameon=False,
               bbox_to_anchor=(0.5, 0.025))
    fig.text(0.5, 0.005, "Attention only (projections, indexer, attention, output projection), summed over "
             "layers; FFN/MoE and communication excluded. Estimated by perfwh from warehouse data.",
             ha="center", fontsize=9, color="0.35")
    fig.tight_layout(rect=(0, 0.09, 1, 0.96))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        _write_bytes(path, data)
    return data


def compare_html(path: str | os.PathLike, text: str, png: bytes) -> None:
    """A self-contained HTML report: the compare table and the plot inline."""
    img = base64.b64encode(png).decode()
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>perfwh compare</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
        "pre{font-size:13px;background:#f6f6f6;padding:1em;overflow-x:auto}img{max-width:100%}</style>"
        "</head><body>\n<h1>Attention time: model comparison</h1>\n"
        f"<pre>{html.escape(text)}</pre>\n<img alt='attention time vs context length' "
        f"src='data:image/png;base64,{img}'>\n</body></html>\n"
    )
    _write_bytes(path, page.encode())
