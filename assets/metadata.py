"""Presentation of frames as Dagster metadata (markdown previews)."""

from __future__ import annotations

import polars as pl


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pl.DataFrame, max_rows: int) -> str:
    """The first `max_rows` rows as a markdown table, with a note when rows are left out."""
    if frame.height == 0:
        return "_none_"
    head = frame.head(max_rows)
    lines = [
        "| " + " | ".join(head.columns) + " |",
        "|" + "---|" * len(head.columns),
        *("| " + " | ".join(_cell(v) for v in row) + " |" for row in head.iter_rows()),
    ]
    if frame.height > max_rows:
        lines.append(f"\n_{frame.height - max_rows:,} more rows not shown_")
    return "\n".join(lines)
