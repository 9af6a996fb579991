"""The estimator's golden predictions over the published H200 tables.

`make_points` chooses the fixed query shapes (from the warehouse's slices and
shape axes), `predict` answers them with the current estimator and
`accuracy_tables` runs the cross-validation. `python -m tests.golden.golden`
rewrites `predictions.parquet` and `accuracy.json` next to this file; the test
`test_golden.py` rebuilds the warehouse and compares. The files hold estimator
outputs and shape keys only, never rows of the raw data.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
SHARED_DATA = HERE.parents[2] / "shared" / "data" / "aiconfigurator"
PREDICTIONS = HERE / "predictions.parquet"
ACCURACY = HERE / "accuracy.json"

KEY_COLUMNS = ("system", "backend", "version", "op", "kernel_source", "architecture", "attn_dtype",
               "kv_cache_dtype", "gemm_type", "index_topk", "method", "batch_size", "seq", "num_heads", "prefix")
OUT_COLUMNS = ("latency_ms", "source", "sol_ms", "raw_sol_ms", "many_latency_ms", "many_source")
SYSTEMS = ("h200_sxm", "h100_sxm")  # h100: transferred from the h200 data


def build_warehouse(home: Path) -> None:
    from warehouse.ingest import ingest_paths

    ingest_paths([SHARED_DATA], home)


def _axis(values, rng, extra: int) -> list[int]:
    """Some measured values, some between two of them, one beyond each end."""
    vals = sorted(set(int(v) for v in values))
    out = set(rng.choice(vals, size=min(len(vals), 3), replace=False).tolist())
    for _ in range(extra):
        if len(vals) > 1:
            i = int(rng.integers(0, len(vals) - 1))
            lo, hi = vals[i], vals[i + 1]
            if hi - lo > 1:
                out.add(int(rng.integers(lo + 1, hi)))
    out.add(max(1, vals[0] // 2) if vals[0] > 1 else vals[0])
    out.add(vals[-1] * 2)
    return sorted(out)


def make_points(home: Path, seed: int = 0) -> pl.DataFrame:
    """Fixed query shapes over every (system, backend, version, op, slice) the warehouse holds."""
    from warehouse.read import read_perf_points

    rng = np.random.default_rng(seed)
    pts = read_perf_points(home)
    rows = []
    cats = ("system", "framework", "version", "op", "kernel_source", "architecture", "attn_dtype",
            "kv_cache_dtype", "gemm_type")
    slices = pts.select(cats).unique().sort(cats, nulls_last=True)
    for sl in slices.iter_rows(named=True):
        sub = pts.filter(*[(pl.col(c) == sl[c]) if sl[c] is not None else pl.col(c).is_null() for c in cats])
        context = "context" in sl["op"]
        seqcol = "isl" if context else "kv_len"
        heads = sorted(set(sub["num_heads"].to_list()))
        prefixes = sorted(set(sub["prefix"].fill_null(0).to_list())) if context else [0]
        batches = _axis(sub["batch_size"].to_list(), rng, 2)
        seqs = _axis(sub[seqcol].to_list(), rng, 3)
        shapes = [(int(b), int(s), int(h), int(p)) for b in batches for s in seqs
                  for h in heads[:: max(1, len(heads) // 2)] + [max(1, heads[0] - 1)] for p in prefixes[:2]]
        take = rng.choice(len(shapes), size=min(len(shapes), 40), replace=False)
        for i in sorted(take.tolist()):
            b, s, h, p = shapes[i]
            for system in SYSTEMS:
                for method in ("interp",) if system != SYSTEMS[0] or i % 5 else ("interp", "nearest"):
                    rows.append({"system": system, "backend": sl["framework"], "version": sl["version"],
                                 "op": sl["op"], "kernel_source": sl["kernel_source"],
                                 "architecture": sl["architecture"], "attn_dtype": sl["attn_dtype"],
                                 "kv_cache_dtype": sl["kv_cache_dtype"], "gemm_type": sl["gemm_type"],
                                 "index_topk": 1024 if sl["op"].startswith("dsa") and i % 7 == 0 else None,
                                 "method": method, "batch_size": b, "seq": s, "num_heads": h, "prefix": p})
    # A few slices no data holds (transferred to the nearest slice).
    for op, gemm, kv in (("mla_generation", "fp8_block", "fp8"), ("dsa_context", "bfloat16", "fp8"),
                         ("mla_context", "fp8_block", "bfloat16")):
        for b, s, h in ((1, 1000, 16), (8, 4096, 128), (32, 333, 64)):
            rows.append({"system": "h200_sxm", "backend": "trtllm", "version": None, "op": op,
                         "kernel_source": None, "architecture": None, "attn_dtype": "bfloat16",
                         "kv_cache_dtype": kv, "gemm_type": gemm, "index_topk": None, "method": "interp",
                         "batch_size": b, "seq": s, "num_heads": h, "prefix": 0})
    schema = {c: pl.Utf8 for c in KEY_COLUMNS}
    schema.update(index_topk=pl.Int64, batch_size=pl.Int64, seq=pl.Int64, num_heads=pl.Int64, prefix=pl.Int64)
    return pl.DataFrame(rows, schema=schema)


def predict(home: Path, points: pl.DataFrame) -> pl.DataFrame:
    """`points` plus the estimator's answers: scalar estimate (latency, source, SOL) and estimate_many."""
    from estimator.lookup.database import PerfDatabase
    from estimator.lookup.limits import OutOfRangeError

    dbs: dict = {}
    lat, src, sol, raw = [], [], [], []
    for r in points.iter_rows(named=True):
        key = (r["system"], r["backend"], r["version"])
        if key not in dbs:
            dbs[key] = PerfDatabase(system=r["system"], backend=r["backend"], version=r["version"], home=home)
        try:
            est = dbs[key].estimate(r["op"], batch_size=r["batch_size"], s=r["seq"], num_heads=r["num_heads"],
                                    prefix=r["prefix"], gemm_type=r["gemm_type"] or "bfloat16",
                                    kv_cache_dtype=r["kv_cache_dtype"], attn_dtype=r["attn_dtype"],
                                    architecture=r["architecture"], kernel_source=r["kernel_source"],
                                    index_topk=r["index_topk"], method=r["method"])
        except OutOfRangeError:  # refused by a limit (docs/limits.md): recorded as such
            lat.append(None)
            src.append("refused")
            sol.append(None)
            raw.append(None)
            continue
        lat.append(est.latency_ms)
        src.append(est.source.value)
        sol.append(est.sol_ms)
        raw.append(est.raw_sol_ms)
    out = points.with_columns(pl.Series("latency_ms", lat, pl.Float64), pl.Series("source", src, pl.Utf8),
                              pl.Series("sol_ms", sol, pl.Float64), pl.Series("raw_sol_ms", raw, pl.Float64))
    # estimate_many on the interp rows, one call per (database, op, index_topk).
    many_lat = np.full(out.height, np.nan)
    many_src = np.full(out.height, None, dtype=object)
    indexed = out.with_row_index("_row").filter((pl.col("method") == "interp") & (pl.col("source") != "refused"))
    groups = ("system", "backend", "version", "op", "index_topk")
    for key, sub in indexed.group_by(groups, maintain_order=True):
        k = dict(zip(groups, key))
        db = dbs[(k["system"], k["backend"], k["version"])]
        context = "context" in k["op"]
        frame = sub.select(
            "batch_size", pl.col("seq").alias("isl" if context else "kv_len"), "num_heads", "prefix",
            "gemm_type", "kv_cache_dtype", "attn_dtype", "architecture", "kernel_source")
        # as the scalar call: gemm_type null -> bfloat16; a column null throughout is left out (its default)
        frame = frame.with_columns(pl.col("gemm_type").fill_null("bfloat16"))
        frame = frame.select([c for c in frame.columns if frame[c].null_count() < frame.height])
        extra = {} if k["index_topk"] is None else {"index_topk": k["index_topk"]}
        res = db.estimate_many(k["op"], frame, **extra)
        rows = sub["_row"].to_numpy()
        many_lat[rows] = res["latency_ms"].to_numpy()
        many_src[rows] = res["source"].cast(pl.Utf8).to_list()
    return out.with_columns(pl.Series("many_latency_ms", many_lat, pl.Float64).fill_nan(None),
                            pl.Series("many_source", many_src.tolist(), pl.Utf8))


def accuracy_tables(home: Path) -> dict:
    """`perfwh accuracy --json` rows per (backend, version) of the h200 data (seed 0, with baseline)."""
    from estimator.accuracy.protocol import MODULE_TABLES, run_accuracy, summarize
    from warehouse.read import read_perf_points

    pts = read_perf_points(home)
    out = {}
    for (fw, ver), sub in pts.group_by("framework", "version", maintain_order=False):
        tables = tuple(t for t in MODULE_TABLES if t in set(sub["op"].to_list()))
        table = summarize(run_accuracy(sub, tables=tables, seed=0, baseline=True))
        out[f"h200_sxm/{fw}/{ver}"] = table.to_dicts()
    return dict(sorted(out.items()))


def main() -> int:
    if not SHARED_DATA.exists():
        print(f"{SHARED_DATA} not present", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="perfwh-golden-") as tmp:
        home = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp)  # an existing warehouse, to re-run
        if not (home / "manifest.json").exists():
            build_warehouse(home)
        points = make_points(home)
        pred = predict(home, points)
        pred.write_parquet(PREDICTIONS, compression="zstd", statistics=False)
        ACCURACY.write_text(json.dumps(accuracy_tables(home), indent=1, sort_keys=True) + "\n")
    print(f"wrote {pred.height} predictions ({pred['op'].n_unique()} ops) to {PREDICTIONS}, accuracy to {ACCURACY}")
    print(pred.group_by("op", "source").len().sort("op", "source"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
