"""`perfwh support`, `perfwh estimate`, `perfwh compare`: whole-model attention estimates."""

from __future__ import annotations

import argparse
import sys

from estimator.common import FMHAQuantMode, GEMMQuantMode, KVCacheQuantMode
from perfwh.cli import CliError, json_text

SYSTEM_DEFAULT = "h200_sxm"
BACKEND_DEFAULT = "trtllm"


def _common(p: argparse.ArgumentParser, *, many_models: bool = False) -> None:
    if many_models:
        p.add_argument("--model-path", action="append", required=True, metavar="MODEL",
                       help="bundled id (deepseek-ai/DeepSeek-V3.2, ...) or a folder/file with a HF "
                            "config.json; repeat to compare several (the first is the baseline)")
    else:
        p.add_argument("--model-path", required=True, metavar="MODEL",
                       help="bundled id (deepseek-ai/DeepSeek-V3.2, ...) or a folder/file with a HF config.json")
    p.add_argument("--system", default=SYSTEM_DEFAULT, help=f"GPU system spec (default {SYSTEM_DEFAULT})")
    p.add_argument("--backend", default=BACKEND_DEFAULT, help=f"framework whose data answers: trtllm, vllm, "
                   f"sglang, perfwh (the embedded data set) (default {BACKEND_DEFAULT})")
    p.add_argument("--version", default=None, help="backend version in the warehouse (default: per op, the "
                   "newest version with data for it)")
    p.add_argument("--home", default=None, help="warehouse folder (default $PERFWH_HOME or ~/.local/share/perfwh)")
    p.add_argument("--tp", type=int, default=8, help="tensor-parallel size: heads per GPU = heads / tp (default 8)")
    p.add_argument("--gemm-type", default="bfloat16",
                   help=f"projection GEMM precision: {', '.join(GEMMQuantMode)} (default bfloat16)")
    p.add_argument("--kv-cache-dtype", default="bfloat16",
                   help=f"KV cache precision: {', '.join(KVCacheQuantMode)} (default bfloat16)")
    p.add_argument("--attn-dtype", "--fmha-dtype", dest="fmha_dtype", default="bfloat16",
                   help=f"attention math precision: {', '.join(FMHAQuantMode)} (default bfloat16)")
    p.add_argument("--dense-attention-layers", type=int, default=0, metavar="N",
                   help="make the first N layers of a DSA model MLA (the original draft's 3 MLA + 58 DSA "
                        "reading of DeepSeek-V3.2; the real model has the indexer in every layer)")


def register(sub) -> None:
    p = sub.add_parser("support", help="what a model is made of and what the warehouse holds for it",
                       description="Print a model's architecture, layer split and the warehouse data "
                                   "that serves its attention ops on a system/backend.")
    _common(p)
    p.set_defaults(handler=cmd_support)

    p = sub.add_parser("estimate", help="attention time of a model deployment (prefill pass and decode steps)",
                       description="Attention part of a model's step time: the MLA/DSA block of every "
                                   "layer summed, for one prefill pass and each decode step.")
    _common(p)
    p.add_argument("--isl", type=int, required=True, help="input tokens per request")
    p.add_argument("--osl", type=int, required=True, help="output tokens per request (decode steps)")
    p.add_argument("--batch-size", "--batch", dest="batch", type=int, default=1, help="requests per step (default 1)")
    p.add_argument("--prefix", type=int, default=0, help="cached tokens before the input (default 0)")
    p.add_argument("--layers", action="store_true", help="print every layer, not runs of equal layers")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_estimate)

    p = sub.add_parser("compare", help="attention time of models vs context length, speed-up and crossover",
                       description="Attention time per layer and per model vs context length for "
                                   "several models (e.g. DeepSeek-V3 MLA vs DeepSeek-V3.2 DSA), the "
                                   "speed-up over the first model and the crossover length.")
    _common(p, many_models=True)
    p.add_argument("--batch-size", "--batch", dest="batch", type=int, default=1, help="requests per step (default 1)")
    p.add_argument("--isl", type=int, action="append", default=None, metavar="N",
                   help="context lengths of the table (repeatable; default 1k, 2k, ..., 128k)")
    p.add_argument("--plot", default=None, metavar="PNG", help="write a log-log plot (PNG) (default: no plot)")
    p.add_argument("--html", default=None, metavar="HTML", help="write an HTML report (table + plot) (default: no report)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_compare)


# ---- shared -------------------------------------------------------------------------------

def _config(args):
    from estimator.models.config import ModelConfig

    return ModelConfig(tp_size=args.tp, gemm_quant_mode=args.gemm_type, kvcache_quant_mode=args.kv_cache_dtype,
                       fmha_quant_mode=args.fmha_dtype, dense_attention_layers=args.dense_attention_layers)


def _model(args, path):
    from estimator.models.model import get_model

    config = _config(args)
    if args.dense_attention_layers:
        from estimator.models.hf_config import load_model_config

        if load_model_config(path).attention == "mla":
            from dataclasses import replace

            config = replace(config, dense_attention_layers=0)
    return get_model(path, args.system, args.backend, config, version=args.version, home=args.home)


def _database(args):
    from estimator.lookup.database import PerfDatabase

    return PerfDatabase(system=args.system, backend=args.backend, version=args.version, home=args.home)


def _interval_notes(db, models) -> None:
    """On stderr, why the totals carry no 80% interval (a transfer without its transfer_intervals table),
    for the ops the models' layers use only (`Model._interval_note`): a table without an
    mla_context_kernel row said nothing of a DeepSeek-V3.2 estimate, whose DSA rows gave it an interval."""
    lines = (m._interval_note(db) for m in models)
    for note in dict.fromkeys(line for text in lines if text for line in text.split("\n")):
        print(note, file=sys.stderr)


def _ms(x: float) -> str:
    if x >= 100:
        return f"{x:,.1f}"
    if x >= 1:
        return f"{x:.3f}"
    return f"{x:.4f}"


def _table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = set(range(len(headers))) if right is None else right
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]

    def fmt(r):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def _span(values) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    lo, hi = min(vals), max(vals)
    return f"{lo}" if lo == hi else f"{lo}..{hi}"


def _values(values, most: int = 4) -> str:
    """Distinct values, listed when few, else their span and count."""
    vals = sorted(set(values))
    if not vals:
        return "-"
    if len(vals) <= most:
        return ",".join(str(v) for v in vals)
    return f"{vals[0]}..{vals[-1]} ({len(vals)} values)"


def _layer_runs(indices: list[int]) -> str:
    out, start, prev = [], None, None
    for i in indices:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = i
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(out)


# ---- support ------------------------------------------------------------------------------

def support_text(model, holdings, served) -> str:
    hf = model.hf
    lc, fc = model.layer_counts, model.ffn_counts
    lines = [
        f"Model: {model.model_path}",
        f"Architecture: {hf.architecture}",
        f"Family: {hf.family}",
    ]
    if hf.dsa is not None:
        d = hf.dsa
        lines.append(f"DSA config: index_n_heads={d.index_n_heads}, index_head_dim={d.index_head_dim}, "
                     f"index_topk={d.index_topk}, first_k_dense={d.first_k_dense_replace}")
    else:
        lines.append(f"MLA config: kv_lora_rank={hf.kv_lora_rank}, qk_rope_head_dim={hf.qk_rope_head_dim}, "
                     f"first_k_dense={hf.first_k_dense_replace}")
    lines.append(f"Layers: {model.num_layers} (MLA: {lc['mla']}, DSA: {lc['dsa']})")
    if model.config.dense_attention_layers and hf.attention == "dsa":
        lines.append(f"  (first {lc['mla']} layers set to MLA by --dense-attention-layers; "
                     "the published model has the indexer in every layer)")
    lines.append(f"FFN: dense: {fc['dense']}, MoE: {fc['moe']} (first_k_dense_replace={hf.first_k_dense_replace}, "
                 f"moe_layer_freq={hf.moe_layer_freq})")
    lines.append(f"Attention: {hf.num_attention_heads} heads, hidden {hf.hidden_size}, q_lora_rank {hf.q_lora_rank}, "
                 f"kv_lora_rank {hf.kv_lora_rank}, qk_nope/rope {hf.qk_nope_head_dim}/{hf.qk_rope_head_dim}, "
                 f"v_head {hf.v_head_dim}")
    diffs = model.spec_differences()
    if diffs:
        lines.append("Note: the estimator uses its spec of the architecture for these dims: " + "; ".join(diffs))
    src = "bundled config" if hf.source == "bundled" else hf.source
    lines.append(f"Config: {src}" + (f" (absent, defaulted: {', '.join(hf.defaults_used)})" if hf.defaults_used else ""))
    lines.append("")
    lines.append(f"Warehouse data for {model.architecture} on {model.system} / {model.backend}:")
    if holdings:
        lines.append(_table(
            ["table", "architecture", "version", "gemm_type", "kv_cache", "points", "batch span", "isl span",
             "kv_len span", "prefix", "heads"],
            holdings, right={5}))
        lines.append(f"  spans are ranges, not the measured region (long sequences are often measured at small "
                     f"batch only): perfwh coverage --system {model.system} --backend {model.backend}")
    else:
        lines.append("  none")
    c = model.config
    lines.append("")
    lines.append(f"Ops at tp {c.tp_size} ({model.num_heads} heads/GPU; gemm {c.gemm_quant_mode}, "
                 f"kv cache {c.kvcache_quant_mode}, fmha {c.fmha_quant_mode}):")
    lines.append(_table(["ops", "layers", "table", "slice points", "served from"], served, right={1, 3}))
    return "\n".join(lines)


def _holdings(model, home):
    import polars as pl

    from warehouse.read import home_path, read_perf_points, warehouse_exists

    if not warehouse_exists(home):
        raise FileNotFoundError(f"no warehouse at {home_path(home)}: run `perfwh ingest PATH` first")
    pts = read_perf_points(home, system=model.system, framework=model.backend)
    rows = []
    for kind, values in sorted(model.op_settings.items()):
        for phase in ("context", "generation"):
            table = f"{kind}_{phase}"
            sub = pts.filter((pl.col("op") == table) & (pl.col("architecture") == values["architecture"]))
            for key, g in sub.group_by(["version", "gemm_type", "kv_cache_dtype"], maintain_order=False):
                rows.append([table, values["architecture"], key[0], key[1], key[2], str(g.height),
                             _span(g["batch_size"].to_list()),
                             _span(g["isl"].to_list()) if phase == "context" else "1",
                             _span(g["kv_len"].to_list()) if phase == "generation" else "-",
                             _values(g["prefix"].drop_nulls().to_list()),
                             _span(g["num_heads"].to_list())])
    rows.sort(key=lambda r: (r[0], r[2], r[3], r[4]))
    return rows, pts


def _served(model, pts, db, db_error):
    import polars as pl

    c = model.config
    rows = []
    for phase in ("context", "generation"):
        for kind in sorted(model.op_settings):
            values = model.op_settings[kind]
            table = f"{kind}_{phase}"
            idx = [layer.index for layer in model.layers if layer.attention == kind]
            names = f"{phase}_{kind}_layer_{{{_layer_runs(idx)}}}"
            n = pts.filter(
                (pl.col("op") == table) & (pl.col("architecture") == values["architecture"])
                & (pl.col("gemm_type") == c.gemm_quant_mode.value)
                & (pl.col("kv_cache_dtype") == c.kvcache_quant_mode.value)
                & (pl.col("attn_dtype") == c.fmha_quant_mode.value)
                & (pl.col("num_heads") == model.num_heads)
                & ((pl.col("version") == db.version) if db is not None else pl.lit(True))
            ).height
            if db is None:
                how = f"not served: {db_error}"
            else:
                try:
                    probes = _probe(db, model, table, phase, kind, values)
                    how = ("data" if n else "no exact slice") + f" {db.version}; b=1 " + ", ".join(probes)
                except KeyError as exc:
                    how = f"not served: {exc.args[0] if exc.args else exc}"
            rows.append([names, str(len(idx)), table, str(n), how])
    return rows


def _probe(db, model, table: str, phase: str, kind: str, values: dict) -> list[str]:
    """The source of this op's estimate at batch 1 and a short and a long sequence."""
    c = model.config
    dsa = {"index_topk": values["index_topk"], "index_n_heads": values["index_n_heads"]} if kind == "dsa" else {}
    probes = []
    for s in (4096, 131072):
        est = db.estimate(table, batch_size=1, s=s, num_heads=model.num_heads, gemm_type=c.gemm_quant_mode,
                          kv_cache_dtype=c.kvcache_quant_mode, attn_dtype=c.fmha_quant_mode,
                          architecture=values["architecture"], **dsa)
        probes.append(f"{'isl' if phase == 'context' else 'kv'} {s // 1024}k: {est.source.value}"
                      + (f" ({est.transferred_from})" if est.transferred_from else ""))
    return probes


def cmd_support(args) -> int:
    model = _model(args, args.model_path)
    holdings, pts = _holdings(model, args.home)
    try:
        db = _database(args)
        err = None
    except ValueError as exc:
        db, err = None, str(exc)
    served = _served(model, pts, db, err)
    print(support_text(model, holdings, served))
    return 1 if any(r[-1].startswith("not served") for r in served) else 0


# ---- estimate -----------------------------------------------------------------------------

def _band(est, name: str) -> str:
    """' (80% in LO-HI ms)' of a ModelEstimate total, or '' without an interval model."""
    lo, hi = getattr(est, f"{name}_low_ms"), getattr(est, f"{name}_high_ms")
    return "" if lo != lo else f" (80% in {_ms(lo)}-{_ms(hi)} ms)"


def estimate_text(model, est) -> str:
    c = model.config
    lc = model.layer_counts
    lines = [
        f"Model: {est.model} ({est.architecture}; {model.num_layers} layers: MLA {lc['mla']}, DSA {lc['dsa']})",
        f"System: {est.system}  backend: {est.backend} {est.version}  tp {est.tp_size} ({est.num_heads} heads/GPU)  "
        f"gemm {c.gemm_quant_mode}, kv cache {c.kvcache_quant_mode}, fmha {c.fmha_quant_mode}",
        f"Shape: batch {est.batch_size}, isl {est.isl}, osl {est.osl}, prefix {est.prefix}",
        f"Scope: {est.scope}",
    ]
    diffs = model.spec_differences()
    if diffs:
        lines.append("Note: the estimator uses its spec of the architecture for these dims: " + "; ".join(diffs))
    lines += [
        "",
        f"Context (prefill pass, attention share of TTFT): {_ms(est.context_ms)} ms{_band(est, 'context')} "
        f"({_ms(est.context_ms / model.num_layers)} ms/layer)",
    ]
    if est.osl:
        lo = est.prefix + est.isl
        lines.append(
            f"Generation (per decode step, attention share of TPOT, kv {lo}..{lo + est.osl - 1}): "
            f"first {_ms(est.generation_first_ms)} ms, mean {_ms(est.generation_mean_ms)} ms"
            f"{_band(est, 'generation_mean')}, last {_ms(est.generation_last_ms)} ms; all {est.osl} steps "
            f"{_ms(est.generation_total_ms)} ms{_band(est, 'generation_total')}")
    else:
        lines.append("Generation: osl 0, no decode steps")
    for phase, counts in est.provenance.items():
        if counts:
            total = sum(counts.values())
            lines.append(f"Provenance, {phase} ({total} layer-estimates): "
                         + ", ".join(f"{k} {v}" for k, v in counts.items()))
    lines.append("")
    rows = _layer_rows(est.layers, group=True)
    lines.append(_table(["layers", "attention", "ffn", "context ms", "source", "gen first ms", "gen mean ms",
                         "gen last ms", "gen source"], rows, right={3, 5, 6, 7}))
    return "\n".join(lines)


def _layer_rows(layers, group: bool):
    cols = ["attention", "ffn", "context_ms", "context_source", "generation_first_ms", "generation_mean_ms",
            "generation_last_ms", "generation_worst_source"]
    runs: list[tuple[list[int], tuple]] = []
    for r in layers.iter_rows(named=True):
        key = tuple(r[c] for c in cols)
        if group and runs and runs[-1][1] == key and runs[-1][0][-1] == r["layer"] - 1:
            runs[-1][0].append(r["layer"])
        else:
            runs.append(([r["layer"]], key))
    out = []
    for idx, key in runs:
        a, f, cms, cs, g1, gm, gl, gs = key
        out.append([_layer_runs(idx), a, f, _ms(cms), cs, _ms(g1), _ms(gm), _ms(gl), gs or "-"])
    return out


def cmd_estimate(args) -> int:
    model = _model(args, args.model_path)
    db = _database(args)
    est = model.estimate(isl=args.isl, osl=args.osl, batch_size=args.batch, prefix=args.prefix, db=db)
    _interval_notes(db, [model])
    if args.json:
        sys.stdout.write(json_text(est.as_dict(), indent=2))
        print()
    else:
        text = estimate_text(model, est)
        if args.layers:
            head = text.rsplit("\n\n", 1)[0]
            text = head + "\n\n" + _table(
                ["layers", "attention", "ffn", "context ms", "source", "gen first ms", "gen mean ms",
                 "gen last ms", "gen source"], _layer_rows(est.layers, group=False), right={3, 5, 6, 7})
        print(text)
    return 0


# ---- compare ------------------------------------------------------------------------------

def _short(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def compare_header(models, batch: int, version: str) -> list[str]:
    base = models[0]
    c = base.config
    return [f"Attention time vs context length on {base.system} / {base.backend} {version}, "
            f"tp {c.tp_size}, batch {batch}, gemm {c.gemm_quant_mode}, kv cache {c.kvcache_quant_mode}, "
            f"attention {c.fmha_quant_mode} ({SCOPE_SHORT})",
            "context: one prefill pass of isl new tokens; generation: one decode step at KV length isl.",
            "ms/layer = model total / layers. speed-up = first model / this model. "
            "source: worst provenance among the model's layer ops. 80%: the model total's interval "
            "(sum of the layers' bounds)."]


def compare_rows(models, table, phase: str) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of one phase's comparison table: the text and the HTML report both print it."""
    import polars as pl

    base = models[0]
    headers = ["isl"]
    for m in models:
        n = _short(m.model_path)
        headers += [f"{n} ms/layer", f"{n} ms/model", "80%", "source"]
        if m is not base:
            headers.append("speed-up")
    rows = []
    sub = table.filter(pl.col("phase") == phase)
    for s in sorted(set(sub["seq"].to_list())):
        row = [f"{s // 1024}k" if s % 1024 == 0 else str(s)]
        base_ms = None
        for m in models:
            r = sub.filter((pl.col("model") == m.model_path) & (pl.col("seq") == s)).row(0, named=True)
            low, high = r.get("low_ms"), r.get("high_ms")  # absent from tables built without intervals
            band = "-" if low is None or low != low else f"{_ms(low)}-{_ms(high)}"
            row += [_ms(r["layer_ms"]), _ms(r["model_ms"]), band, r["source"]]
            if m is base:
                base_ms = r["model_ms"]
            else:
                row.append(f"{base_ms / r['model_ms']:.2f}x")
        rows.append(row)
    return headers, rows


def crossover_lines(crossovers) -> list[str]:
    lines = []
    for c in crossovers:
        if c.status == "crosses":
            what = f"{_short(c.other)} becomes cheaper than {_short(c.baseline)} at ~{c.seq:,.0f} tokens of context"
        elif c.status == "always cheaper":
            what = f"{_short(c.other)} is cheaper than {_short(c.baseline)} over the whole range {c.lo}..{c.hi}"
        else:
            what = f"{_short(c.other)} is not cheaper than {_short(c.baseline)} anywhere in {c.lo}..{c.hi}"
        lines.append(f"Crossover ({c.phase}): {what}")
    return lines


def compare_text(models, table, crossovers, batch: int, version: str) -> str:
    lines = [*compare_header(models, batch, version), ""]
    for phase in ("context", "generation"):
        lines.append(f"{phase.capitalize()}:")
        headers, rows = compare_rows(models, table, phase)
        right = {i for i, h in enumerate(headers) if h != "source"}
        lines.append(_table(headers, rows, right=right))
        lines.append("")
    lines += crossover_lines(crossovers)
    return "\n".join(lines).rstrip()


SCOPE_SHORT = "attention block only, summed over layers"


def run_compare(models, db, isls, batch: int):
    """(table of the requested lengths, fine curves for crossover/plot, crossovers)."""
    import polars as pl

    from estimator.models.curves import compare_models, find_crossover, fine_grid

    table = compare_models(models, isls, batch_size=batch, db=db)
    lo, hi = min(isls), max(isls)
    fine = compare_models(models, fine_grid(min(lo, 256), max(hi, 131072)), batch_size=batch, db=db)
    crossovers = []
    base = models[0]
    for m in models[1:]:
        for phase in ("context", "generation"):
            a = fine.filter((pl.col("model") == base.model_path) & (pl.col("phase") == phase)).sort("seq")
            b = fine.filter((pl.col("model") == m.model_path) & (pl.col("phase") == phase)).sort("seq")
            crossovers.append(find_crossover(a["seq"].to_numpy(), a["model_ms"].to_numpy(), b["model_ms"].to_numpy(),
                                             baseline=base.model_path, other=m.model_path, phase=phase))
    return table, fine, crossovers


def cmd_compare(args) -> int:
    from estimator.models.curves import COMPARE_ISLS

    if len(set(args.model_path)) != len(args.model_path):
        raise CliError("each --model-path may be given once")
    isls = sorted(set(args.isl)) if args.isl else list(COMPARE_ISLS)
    bad = [s for s in isls if s < 1]
    if bad:
        raise CliError(f"--isl must be >= 1, got {bad[0]}")
    if args.batch < 1:
        raise CliError(f"--batch must be >= 1, got {args.batch}")
    models = [_model(args, p) for p in args.model_path]
    db = _database(args)
    table, fine, crossovers = run_compare(models, db, isls, args.batch)
    _interval_notes(db, models)
    text = compare_text(models, table, crossovers, args.batch, db.version)
    if args.plot or args.html:
        from perfwh import plots

        png = plots.compare_plot(fine, crossovers, models, args.batch, db, args.plot)
        if args.html:
            plots.compare_html(args.html, models, table, crossovers, args.batch, db.version, png)
    if args.json:
        print(json_text({"table": table.to_dicts(), "crossovers": [c.__dict__ for c in crossovers],
                         "version": db.version}, indent=2))
    else:
        print(text)
        if args.plot:
            print(f"\nplot: {args.plot}")
        if args.html:
            print(f"html: {args.html}")
    return 0
