"""Render frames for people (aligned table) or programs (csv, json)."""

from __future__ import annotations

import io
import sys

import polars as pl

FORMATS = ("table", "csv", "json")


def render(frame: pl.DataFrame, fmt: str = "table", *, max_rows: int = 200) -> str:
    if fmt == "csv":
        return frame.write_csv()
    if fmt == "json":
        buf = io.StringIO()
        frame.write_json(buf)
        return buf.getvalue() + "\n"
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    with pl.Config(
        tbl_rows=max_rows,
        tbl_cols=-1,
        tbl_formatting="ASCII_MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        fmt_str_lengths=100,
        tbl_width_chars=60_000,
        float_precision=None,
    ):
        text = str(frame)
    more = f"\n({frame.height} rows; showing {max_rows})" if frame.height > max_rows else ""
    return text + more + "\n"


class Progress:
    """One status line on a terminal, one line per item elsewhere (logs, CI)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr  # looked up per call: tests and wrappers swap sys.stderr
        self.tty = self.stream.isatty()

    def update(self, text: str, done: bool = False) -> None:
        if self.tty:
            end = "\n" if done else ""
            self.stream.write("\r\033[K" + text + end)
            self.stream.flush()
        elif done:
            self.stream.write(text + "\n")
            self.stream.flush()
