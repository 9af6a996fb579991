"""What the warehouse holds: systems, backends, versions, ops and the measured region of each slice.

The region is the set of measured shapes, not their bounding box: the
published tables are triangles (batch x isl <= a token budget), so "batch
1..256, isl 128..32768" would claim b=256 isl=32k as measured. Per slice the
region is listed as runs of batch sizes that share one sequence range
(isl for context ops, kv_len for generation ops), so a triangle reads as
"batch 1: isl 128..32768; batch 2: isl 128..16384; ...".
"""

from __future__ import annotations

import polars as pl

from .read import Home, read_perf_points
from .vocab import Op

# The categorical part of a slice (the estimator's GROUP_KEYS) plus num_heads and prefix.
SLICE_COLUMNS = (
    "system", "framework", "version", "op", "kernel_source", "architecture",
    "attn_dtype", "kv_cache_dtype", "gemm_type", "num_heads", "prefix",
)  # fmt: skip


def regions(points: pl.DataFrame) -> list[dict]:
    """One dict per slice: its keys, point count and region (batch runs with their sequence range)."""
    out = []
    if points.is_empty():
        return out
    for key, g in points.group_by(list(SLICE_COLUMNS), maintain_order=False):
        keys = dict(zip(SLICE_COLUMNS, key))
        seq = Op.parse(keys["op"]).seq_column
        per_batch = (
            g.group_by("batch_size")
            .agg(pl.col(seq).min().alias("lo"), pl.col(seq).max().alias("hi"), pl.col(seq).n_unique().alias("n"))
            .sort("batch_size")
        )
        runs: list[dict] = []
        for b, lo, hi, n in per_batch.iter_rows():
            if runs and (runs[-1]["seq_min"], runs[-1]["seq_max"], runs[-1]["seq_values"]) == (lo, hi, n):
                runs[-1]["batch_sizes"].append(b)
            else:
                runs.append({"batch_sizes": [b], "seq_min": lo, "seq_max": hi, "seq_values": n})
        out.append({**keys, "seq": seq, "points": g.height, "region": runs})
    out.sort(key=lambda r: tuple("" if r[c] is None else str(r[c]).zfill(12) for c in SLICE_COLUMNS))
    return out


def coverage(home: Home = None, **eq) -> list[dict]:
    """Measured regions of every slice in the warehouse (filter with system=, framework=, version=, op=)."""
    return regions(read_perf_points(home, **eq))


def region_text(slice_: dict) -> str:
    """`batch 1,2: isl 128..32768 (9); batch 4: isl 128..8192 (7)`: each run of batches and its range."""
    parts = []
    for run in slice_["region"]:
        bs = run["batch_sizes"]
        batches = str(bs[0]) if len(bs) == 1 else ",".join(map(str, bs)) if len(bs) <= 3 else f"{bs[0]}..{bs[-1]} ({len(bs)})"
        span = f"{run['seq_min']}" if run["seq_min"] == run["seq_max"] else f"{run['seq_min']}..{run['seq_max']}"
        parts.append(f"batch {batches}: {slice_['seq']} {span} ({run['seq_values']})")
    return "; ".join(parts)


def contains(slice_: dict, batch_size: int, seq: int) -> bool:
    """Whether (batch_size, seq) lies inside the measured region (between measured sequence ends)."""
    return any(batch_size in r["batch_sizes"] and r["seq_min"] <= seq <= r["seq_max"] for r in slice_["region"])
