"""The leave-one-system-out transfer protocol (issue 11, item 5): fit on one system, answer
another through `estimator.physics.transfer`, score against that system's measurements."""

from __future__ import annotations


import numpy as np
import polars as pl

from estimator.physics.calibrate import CalibrationParams, calibrate, params_from_frame, single_blas_thread
from estimator.common import DTYPE_BYTES
from estimator.lookup.engine import estimate_group
from estimator.grids.schema import SOURCES
from estimator.lookup.grids import GridSet
from estimator.grids.anchors import SPIKE_LOG2, clean_anchors
from estimator.grids.build import build_grids
from estimator.slices import GROUP_KEYS, model_for, points_shape, seq_values
from estimator.physics.specs import load_system
from estimator.physics.transfer import (
    TransferRule, overhead_lookup, overhead_multipliers, overhead_ratios, transferable,
)
from estimator.physics.transfer_terms import moved_params, term_multipliers, term_shapes

MODULE_OPS = ("dsa_context", "dsa_generation", "mla_context", "mla_generation")


# ---- leave-one-system-out protocol ------------------------------------------------------------
SHAPE_KEYS = ("framework", "version", "op", "kernel_source", "architecture", "attn_dtype", "kv_cache_dtype",
              "gemm_type", "num_heads", "batch_size", "isl", "prefix", "kv_len")


def priced() -> pl.Expr:
    """True for points whose precisions the SOL model has byte widths for (false e.g. for nvfp4)."""
    known = list(DTYPE_BYTES)
    return pl.col("gemm_type").fill_null("bfloat16").is_in(known) & pl.col("kv_cache_dtype").is_in(known)


def modelled(points: pl.DataFrame) -> pl.DataFrame:
    """Points whose precisions the SOL model has byte widths for and that may be transferred
    (drops nvfp4 rows: `estimator.physics.transfer.NOT_TRANSFERRED` says why)."""
    return points.filter(priced() & transferable())


def transfer_protocol(points: pl.DataFrame, target: str, source: str, *,
                      ops: tuple[str, ...] = MODULE_OPS, spike_log2: float | None = SPIKE_LOG2,
                      overheads: bool = True, terms: bool = True) -> pl.DataFrame:
    """Leave-one-system-out: predict every measured `target` point from `source` data only.

    Every `target` row is removed before calibration and grid building; the
    source's calibration and grids answer the target's shapes through
    `transfer_params` (exactly what `PerfDatabase(target, from_system=source)`
    serves). One row per target point of a (framework, version) both systems
    hold, with the transfer (`pred_ms`), baseline (a) copy of the source's
    latency of the same shape (`copy_ms`, null when the source did not measure
    it) and (b) that latency x raw roofline(target) / roofline(source)
    (`roofline_ms`). Where the source ran an op with other kernels (e.g. vLLM's
    FLASHINFER_MLA on B200, FLASHMLA on H200), the target's kernel_source is
    answered by the source's nearest one (`from_kernel_source`, see
    `kernel_source_map`), for the transfer and the baselines alike. The
    source grid is cleaned of slow spikes (`clean_anchors`, `spike_log2`;
    None keeps it as measured). Between launch classes (GPU generation / host CPU, e.g.
    Hopper -> Blackwell, x86 -> Grace) the fitted overhead moves by the ratio measured on other
    systems of the same two classes (`overhead_ratios`: never the target's or the source's rows;
    `overheads=False` keeps it). There, too, the compute, bandwidth and overhead terms move by
    multipliers fitted on those systems' same-shape ratios (`estimator.physics.transfer_terms`;
    `terms=False`: the datasheet ratios).
    """
    if target == source:
        raise ValueError(f"target and source are the same system ({target})")
    tspec, sspec = load_system(target), load_system(source)
    pts = modelled(points.filter(pl.col("op").is_in(list(ops))))
    tgt = pts.filter(pl.col("system") == target)
    src = pts.filter(pl.col("system") == source)  # the only rows calibration and grids see
    ovh = overhead_lookup(overhead_ratios(pts.filter(~pl.col("system").is_in([target, source])), target, source)
                          if overheads else None, tspec, sspec)
    both = (src.select("framework", "version").unique()
            .join(tgt.select("framework", "version").unique(), on=["framework", "version"]))
    if both.height == 0:
        raise ValueError(f"no (backend, version) with module points on both {target} and {source}")
    src = src.join(both, on=["framework", "version"])
    tgt = tgt.join(both, on=["framework", "version"])
    with single_blas_thread():
        calibration = calibrate(src)
    params = params_from_frame(calibration)
    grids = build_grids(src, calibration)
    if spike_log2 is not None:  # the source's one-sided slow noise, as PerfDatabase cleans it (grids/anchors.py)
        grids = clean_anchors(grids, spike_log2)
    gridset = GridSet.from_frame(grids)
    rule = TransferRule(sspec, tspec)
    mult = overhead_multipliers(grids, params, rule, ovh)
    fitted = term_multipliers(term_shapes(pts, target, source), params, rule) if terms else {}  # proxies only
    shape = list(SHAPE_KEYS)
    tgt = tgt.join(kernel_source_map(tgt, src), on=["framework", "version", "op", "kernel_source"], how="left")
    src_shape = [c if c != "kernel_source" else "from_kernel_source" for c in shape]
    tgt = tgt.join(src.select(*shape, pl.col("latency_ms").alias("copy_ms")).rename(
        {"kernel_source": "from_kernel_source"}), on=src_shape, how="left", nulls_equal=True)
    tgt = tgt.with_columns(seq_values(tgt).alias("seq_len"), pl.col("prefix").fill_null(0)).with_row_index("_row")
    pred = np.full(tgt.height, np.nan)
    code = np.zeros(tgt.height, dtype=np.int8)
    raw_t = np.full(tgt.height, np.nan)
    raw_s = np.full(tgt.height, np.nan)
    for key, sub in tgt.group_by([*GROUP_KEYS, "from_kernel_source"], maintain_order=True):
        k = dict(zip(GROUP_KEYS, key))
        key = (source, *key[1:4], key[-1], *key[5:-1])  # the source's group: its system and kernel_source
        pkey = key[:5]
        if pkey not in params:  # the source never ran this op in this (framework, version)
            continue
        rows = sub["_row"].to_numpy()
        model = model_for(k["op"], k["architecture"])
        kw = dict(gemm_type=k["gemm_type"] or "bfloat16", kv_cache_dtype=k["kv_cache_dtype"],
                  kernel_source=key[4], **points_shape(sub))  # the source slice's SOL variant
        grp = gridset.groups.get(key)
        moved = moved_params(rule, params[pkey], mult.get(pkey), fitted.get(pkey))
        lat, cd, _ = estimate_group(grp, k["op"], model, tspec, moved, transferred=True, **kw)
        pred[rows], code[rows] = lat, cd
        roof = CalibrationParams({g: (1.0, 1.0) for g in params[pkey].eff}, 0.0, 1.0)  # raw roofline
        raw_t[rows] = estimate_group(None, k["op"], model, tspec, roof, **kw)[0]
        raw_s[rows] = estimate_group(None, k["op"], model, sspec, roof, **kw)[0]
    out = tgt.drop("_row").with_columns(
        pl.Series("pred_ms", pred), pl.Series("source", [SOURCES[c] for c in code]),
        pl.Series("raw_target_ms", raw_t), pl.Series("raw_source_ms", raw_s))
    return out.filter(pl.col("pred_ms").is_not_nan()).select(
        pl.lit(target).alias("target"), pl.lit(source).alias("from_system"), *shape, "from_kernel_source", "seq_len",
        pl.col("latency_ms").alias("measured_ms"), "pred_ms", "source", "copy_ms",
        (pl.col("copy_ms") * pl.col("raw_target_ms") / pl.col("raw_source_ms")).alias("roofline_ms"))


def kernel_source_map(tgt: pl.DataFrame, src: pl.DataFrame) -> pl.DataFrame:
    """(framework, version, op, kernel_source) of the target -> `from_kernel_source` on the source:
    the same name where the source has it, else the most similar name (difflib ratio: keeps
    `skip_indexer` with `skip_indexer`), ties to the one with more points."""
    from difflib import SequenceMatcher

    have = src.group_by("framework", "version", "op", "kernel_source").len()
    rows = []
    for fw, ver, op, ks in tgt.select("framework", "version", "op", "kernel_source").unique().iter_rows():
        cands = have.filter((pl.col("framework") == fw) & (pl.col("version") == ver) & (pl.col("op") == op))
        if cands.height == 0:
            continue
        best = max(cands.iter_rows(named=True), key=lambda r: (
            r["kernel_source"] == ks, SequenceMatcher(None, ks or "", r["kernel_source"] or "").ratio(), r["len"],
            r["kernel_source"] or ""))
        rows.append((fw, ver, op, ks, best["kernel_source"]))
    return pl.DataFrame(rows, schema={"framework": pl.String, "version": pl.String, "op": pl.String,
                                      "kernel_source": pl.String, "from_kernel_source": pl.String}, orient="row")


def summarize_transfer(errors: pl.DataFrame) -> pl.DataFrame:
    """Median / p90 absolute % error per (target, source, backend, version, op), on the points the
    source measured too (so the three methods are scored on the same points); `n_all` and
    `all_median_pct` cover every target point (the transfer also interpolates the source's grid)."""
    def err(col):
        return (pl.col(col) / pl.col("measured_ms") - 1).abs() * 100

    keys = ["target", "from_system", "framework", "version", "op"]
    both = errors.filter(pl.col("copy_ms").is_not_null())
    common = both.group_by(keys).agg(
        pl.len().alias("n"),
        err("pred_ms").median().alias("transfer_median_pct"), err("pred_ms").quantile(0.9, "linear").alias(
            "transfer_p90_pct"),
        err("copy_ms").median().alias("copy_median_pct"), err("copy_ms").quantile(0.9, "linear").alias(
            "copy_p90_pct"),
        err("roofline_ms").median().alias("roofline_median_pct"),
        err("roofline_ms").quantile(0.9, "linear").alias("roofline_p90_pct"))
    everything = errors.group_by(keys).agg(pl.len().alias("n_all"), err("pred_ms").median().alias("all_median_pct"))
    beats = pl.lit(True)
    for stat in ("median", "p90"):
        for base in ("copy", "roofline"):
            beats = beats & (pl.col(f"transfer_{stat}_pct") < pl.col(f"{base}_{stat}_pct"))
    return everything.join(common, on=keys, how="left").with_columns(beats.fill_null(False).alias(
        "beats_both")).sort(keys)


def format_transfer_table(table: pl.DataFrame) -> str:
    """Markdown: backend | version | op | n | transfer | copy | roofline (median / p90 %) | beats both."""
    lines = ["| target <- source | backend | version | op | n | transfer med / p90 % | copy med / p90 % | "
             "roofline med / p90 % | beats both |", "|---|---|---|---|---:|---|---|---|---|"]

    def cell(r, m):
        med, p90 = r[f"{m}_median_pct"], r[f"{m}_p90_pct"]
        return "-" if med is None else f"{med:.1f} / {p90:.1f}"

    for r in table.iter_rows(named=True):
        lines.append(f"| {r['target']} <- {r['from_system']} | {r['framework']} | {r['version']} | {r['op']} | "
                     f"{r['n'] or 0} | {cell(r, 'transfer')} | {cell(r, 'copy')} | {cell(r, 'roofline')} | "
                     f"{'yes' if r['beats_both'] else 'no'} |")
    return "\n".join(lines)
