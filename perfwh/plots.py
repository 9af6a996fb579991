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
    if target.is_dir():
        raise CliError(f"{path} is a folder; give the file to write")
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


def beyond_runs(x: np.ndarray, beyond: np.ndarray) -> list[tuple[float, float]]:
    """The x ranges a curve spends beyond its data: each run of consecutive beyond points,
    widened to the neighbouring in-data points (the segment joining them is an estimate too)."""
    runs, i, n = [], 0, len(x)
    while i < n:
        if not beyond[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and beyond[j + 1]:
            j += 1
        runs.append((float(x[max(i - 1, 0)]), float(x[min(j + 1, n - 1)])))
        i = j + 1
    return runs


def _draw_curve(ax, x, y, beyond, color, label, low=None, high=None, marker_band: bool = True) -> None:
    """Solid between in-data points, dashed over every segment that touches a point beyond the data.

    With `low`/`high` (the 80% interval) a band in the curve's colour spans the
    whole curve, drawn a second time (darker) over exactly the ranges beyond the
    data; without them (and with `marker_band`) only the beyond-data ranges get
    a band, a +-35% marker that is no interval.
    """
    seg_beyond = beyond[:-1] | beyond[1:]
    if len(x) < 2:
        ax.plot(x, y, color=color, lw=2.2, ls="--" if beyond.any() else "-", label=label)
    start = 0
    for k in range(1, len(seg_beyond) + 1):  # one line per run of equal segments (dashes stay visible)
        if k == len(seg_beyond) or seg_beyond[k] != seg_beyond[start]:
            ax.plot(x[start:k + 1], y[start:k + 1], color=color, lw=2.2, ls="--" if seg_beyond[start] else "-",
                    label=label if start == 0 else None)
            start = k
    has_band = low is not None and high is not None and np.isfinite(low).all() and np.isfinite(high).all()
    if has_band:
        ax.fill_between(x, low, high, color=color, alpha=0.15, lw=0, zorder=1)
    for lo, hi in beyond_runs(x, beyond):
        m = (x >= lo) & (x <= hi)
        if has_band:
            ax.fill_between(x[m], low[m], high[m], color=color, alpha=0.15, lw=0, zorder=1)
        elif marker_band:
            ax.fill_between(x[m], y[m] / 1.35, y[m] * 1.35, color=color, alpha=0.13, lw=0, zorder=1)


def compare_plot(fine: pl.DataFrame, crossovers, models, batch: int, db,
                 path: str | os.PathLike | None) -> bytes:
    """Log-log attention time vs context length per model and phase, and the speed-up; PNG bytes.

    Solid lines: interpolated from measured data; dashed: exactly the ranges of
    that curve beyond its data (extrapolated along the SOL growth law,
    transferred or SOL alone), at either end or in between. Bands: the 80%
    interval of the model total, darker where the curve is beyond its data.
    Dots: points measured exactly at this shape.
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
        for m in models:
            d = sub.filter(pl.col("model") == m.model_path).sort("seq")
            x, y = d["seq"].to_numpy(), d["model_ms"].to_numpy()
            beyond = np.isin(d["source"].to_numpy(), BEYOND)
            c = colors[m.model_path]
            label = (f"{_short(m.model_path)} ({m.hf.attention.upper()}, {m.num_layers} layers, "
                     f"{m.num_heads} heads/GPU)")
            bands = ("low_ms" in d.columns) and d["low_ms"].is_not_nan().all()
            _draw_curve(ax, x, y, beyond, c, label, d["low_ms"].to_numpy() if bands else None,
                        d["high_ms"].to_numpy() if bands else None)
            meas = d["source"].to_numpy() == "measured"
            ax.plot(x[meas], y[meas], "o", color=c, ms=6, mec="white", mew=0.8, zorder=5)
        xmax = sub["seq"].max()
        base_d = sub.filter(pl.col("model") == base.model_path).sort("seq")
        for m in models[1:]:
            b = sub.filter(pl.col("model") == m.model_path).sort("seq")
            ratio = base_d["model_ms"].to_numpy() / b["model_ms"].to_numpy()
            # the ratio is an estimate wherever either curve is
            either = np.isin(base_d["source"].to_numpy(), BEYOND) | np.isin(b["source"].to_numpy(), BEYOND)
            _draw_curve(rax, base_d["seq"].to_numpy(), ratio, either, colors[m.model_path], None,
                        marker_band=False)  # no interval of a ratio: dashes only
        rax.axhline(1.0, color="0.3", lw=1, ls=":")
        for cr in crossovers:
            if cr.phase == phase and cr.status == "crosses":
                for a in (ax, rax):
                    a.axvline(cr.seq, color=colors[cr.other], lw=1.2, ls="-.")
                # label on the side of the line with more room, so it stays inside the axes
                x0, x1 = sub["seq"].min(), xmax
                right_half = np.log2(cr.seq / x0) > 0.5 * np.log2(x1 / x0)
                ax.annotate(f"crossover ~{cr.seq:,.0f}", xy=(cr.seq, 0.03),
                            xycoords=("data", "axes fraction"), xytext=(-5 if right_half else 5, 0),
                            textcoords="offset points", ha="right" if right_half else "left",
                            color=colors[cr.other], fontsize=10, fontweight="bold", annotation_clip=True)
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
                Patch(color="0.3", alpha=0.15)]
    labels += ["measured at this exact shape", "beyond that curve's data (extrapolated / SOL)",
               "80% interval (darker: beyond the data)"
               if "low_ms" in fine.columns and fine["low_ms"].is_not_nan().any()
               else "band: the range of that curve outside its data"]
    if len(models) > 1:
        for m in models[1:]:
            handles.append(plt.Line2D([], [], color=colors[m.model_path], lw=2))
            labels.append(f"speed-up {_short(base.model_path)} / {_short(m.model_path)} (lower panels)")
    c = base.config
    fig.suptitle(
        f"Attention block time vs context length: {base.system} / {base.backend} {db.version}, "
        f"tp {c.tp_size}, batch {batch}, "
        f"gemm {c.gemm_quant_mode}, kv cache {c.kvcache_quant_mode}, attention {c.fmha_quant_mode}",
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


def compare_html(path: str | os.PathLike, models, table: pl.DataFrame, crossovers, batch: int, version: str,
                 png: bytes) -> None:
    """A self-contained HTML report: the header, one real table per phase, the crossovers, the plot inline."""
    from .models import compare_header, compare_rows, crossover_lines

    esc = html.escape
    head = compare_header(models, batch, version)
    parts = [f"<h1>{esc(head[0])}</h1>", *(f"<p>{esc(line)}</p>" for line in head[1:])]
    for phase in ("context", "generation"):
        headers, rows = compare_rows(models, table, phase)
        parts.append(f"<h2>{phase.capitalize()}</h2>\n<table>\n<thead><tr>"
                     + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>\n<tbody>")
        for row in rows:
            cells = "".join(f"<td class='{'src' if h == 'source' else 'num'} {esc(v) if h == 'source' else ''}'>"
                            f"{esc(v)}</td>" for h, v in zip(headers, row))
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</tbody>\n</table>")
    parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in crossover_lines(crossovers)) + "</ul>")
    img = base64.b64encode(png).decode()
    parts.append(f"<img alt='attention time vs context length' src='data:image/png;base64,{img}'>")
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>perfwh compare</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}h1{font-size:1.3em}"
        "table{border-collapse:collapse;margin-bottom:1.5em}th,td{border:1px solid #ccc;padding:.25em .6em}"
        "th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}"
        "td.extrapolated,td.transferred,td.sol{background:#fde8e8}img{max-width:100%}</style>"
        "</head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
    _write_bytes(path, page.encode())
