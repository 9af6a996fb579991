"""The grid table: its schema, method version and hashes (shared by the build, the store and the lookups)."""

from __future__ import annotations

import hashlib

import polars as pl

from estimator.physics.calibrate import CAL_KEYS
from estimator.common import Source
from estimator.slices import SLICE_KEYS


METHOD = "grid-logratio-v8"
SOURCES = tuple(s.value for s in Source)
GRID_SCHEMA: dict[str, pl.DataType] = {
    **{k: (pl.Int32() if k in ("num_heads", "prefix") else pl.String()) for k in SLICE_KEYS},
    "batch_size": pl.Int32(),
    "seq_len": pl.Int32(),
    "log2_ratio": pl.Float64(),  # the surface lookups interpolate on
    "measured_log2_ratio": pl.Float64(),  # the cell's own measurement (null when not measured)
    "sol_ms": pl.Float64(),
    "latency_ms": pl.Float64(),
    "source": pl.String(),
    "seq_trend": pl.Float64(),  # damping of the log-ratio slope past the last sequence value
    "batch_power": pl.Float64(),  # interpolation coordinate along batch: batch**p, log2 when 0 (choose_powers)
    "seq_power": pl.Float64(),  # the same along the sequence
    "input_hash": pl.String(),
    "method": pl.String(),
}


def frame_digest(frame: pl.DataFrame) -> str:
    """Order-independent digest of a frame's content (polars row hashes, summed)."""
    total = int(frame.hash_rows().sum()) if frame.height else 0
    return hashlib.sha256(f"{frame.height}:{total}:{','.join(frame.columns)}".encode()).hexdigest()


def input_hash(points: pl.DataFrame, *extra: str) -> str:
    """Hash of the points' keys and latencies plus method tags: a grid's identity."""
    cols = [c for c in (*SLICE_KEYS, "batch_size", "isl", "kv_len", "latency_ms") if c in points.columns]
    digest = hashlib.sha256(frame_digest(points.select(cols)).encode())
    for e in (METHOD, *extra):
        digest.update(e.encode())
    return digest.hexdigest()[:16]


def grid_summary(grids: pl.DataFrame) -> dict:
    """Counts for asset metadata: slices, cells, and cells per provenance (with shares)."""
    cells = grids.height
    by_source = {s: int(n) for s, n in grids.group_by("source").len().iter_rows()}
    return {
        "slices": grids.select(list(SLICE_KEYS)).unique().height,
        "cells": cells,
        "cells_by_source": {s: by_source.get(s, 0) for s in SOURCES},
        "share_by_source": {s: (by_source.get(s, 0) / cells if cells else 0.0) for s in SOURCES},
        "input_hash": grids["input_hash"][0] if cells else None,
        "method": METHOD,
    }


def grids_hash(inputs_tag: str, calibration: pl.DataFrame) -> str:
    """Identity of a grid build: its inputs, the calibration it used, the method version."""
    return hashlib.sha256(f"{inputs_tag}|{calibration_tag(calibration)}|{METHOD}".encode()).hexdigest()[:16]


def calibration_tag(calibration: pl.DataFrame) -> str:
    return frame_digest(calibration.select(*CAL_KEYS, "param", "group", "value"))[:16]
