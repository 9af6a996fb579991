"""Charts that tell the truth: shading covers exactly each curve's ranges beyond its data; HTML has tables."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from perfwh.cli import CliError  # noqa: E402
from perfwh.plots import _draw_curve, _write_bytes, beyond_runs, compare_html, compare_plot  # noqa: E402


def test_beyond_runs_low_end_middle_and_high_end():
    x = np.array([256, 512, 1024, 2048, 4096, 8192, 16384])
    b = np.array([True, True, False, False, True, False, True])
    # widened to the neighbouring in-data point: the joining segment is an estimate too
    assert beyond_runs(x, b) == [(256, 1024), (2048, 8192), (8192, 16384)]
    assert beyond_runs(x, np.zeros(7, bool)) == []
    assert beyond_runs(x, np.ones(7, bool)) == [(256, 16384)]


def test_draw_curve_shades_only_the_beyond_ranges_and_dashes_them():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    x = np.array([256.0, 512, 1024, 2048, 4096, 8192])
    y = x / 100
    beyond = np.array([True, False, False, False, False, True])  # out of range at both ends only
    _draw_curve(ax, x, y, beyond, "red", "curve")
    bands = [c.get_paths()[0].vertices[:, 0] for c in ax.collections]
    assert [(v.min(), v.max()) for v in bands] == [(256, 512), (4096, 8192)]  # not the whole panel
    styles = [(line.get_linestyle(), line.get_xdata()[0], line.get_xdata()[-1]) for line in ax.get_lines()]
    assert styles == [("--", 256, 512), ("-", 512, 4096), ("--", 4096, 8192)]
    plt.close(fig)


def _models():
    cfg = SimpleNamespace(tp_size=8, gemm_quant_mode="bfloat16", kvcache_quant_mode="fp8", fmha_quant_mode="bfloat16")
    mk = lambda path, att: SimpleNamespace(model_path=path, hf=SimpleNamespace(attention=att), num_layers=61,  # noqa: E731
                                           num_heads=16, config=cfg, system="h200_sxm", backend="trtllm")
    return [mk("deepseek-ai/DeepSeek-V3", "mla"), mk("deepseek-ai/DeepSeek-V3.2", "dsa")]


def _frame():
    rows = []
    for phase in ("context", "generation"):
        for model, k in (("deepseek-ai/DeepSeek-V3", 1.0), ("deepseek-ai/DeepSeek-V3.2", 3.0)):
            for s, src in ((1024, "extrapolated"), (2048, "measured"), (4096, "interpolated"), (8192, "sol")):
                rows.append(dict(phase=phase, model=model, seq=s, layer_ms=k * s / 1e4, model_ms=61 * k * s / 1e4,
                                 source=src))
    return pl.DataFrame(rows)


def test_compare_plot_and_html_report(tmp_path):
    models, table = _models(), _frame()
    png = compare_plot(table, [], models, 8, SimpleNamespace(version="1.3.0rc20"), tmp_path / "c.png")
    assert png.startswith(b"\x89PNG") and (tmp_path / "c.png").read_bytes() == png
    compare_html(tmp_path / "c.html", models, table, [], 8, "1.3.0rc20", png)
    page = (tmp_path / "c.html").read_text()
    assert "<pre>" not in page and page.count("<table>") == 2
    assert page.count("<tr>") == 2 * (1 + 4)  # a header row and one row per length, per phase
    assert "h200_sxm / trtllm 1.3.0rc20, tp 8, batch 8, gemm bfloat16, kv cache fp8, attention bfloat16" in page
    assert "<td class='src extrapolated'>extrapolated</td>" in page


def test_plot_to_a_folder_is_refused_and_writes_nothing_beside_it(tmp_path):
    """--plot /tmp used to write a temporary file into / and fail with a raw '[Errno 21]' message."""
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(CliError, match=f"{folder} is a folder; give the file to write"):
        _write_bytes(folder, b"png")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and not any(folder.iterdir())
