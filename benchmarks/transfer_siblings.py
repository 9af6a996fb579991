"""Is a losing transfer cell the rule's fault or the target table's? Two leave-one-system-out checks.

1. Sibling ratios (`--ratio A:B`, repeatable): A's latency over B's on the shapes both measured
   (same kernel_source, precisions and shape), p10 / median / p90 per (backend, version, op). Two
   systems with the same datasheet peaks and bandwidth (B300 / B200: 160 vs 148 SMs) or of one
   generation and host (GB300 / GB200) should sit near 1 at every size; where one system is far
   from all its siblings, no rule from another system's data can land on it.
2. Proxy ratio (`--errors-in`, a `transfer_protocol.py --errors-out` file): beside the protocol's
   transfer, copy and roofline, the source's latency x (proxy target / proxy source) of the same
   shape, the proxies being the pair's `proxy_pairs` (other systems of the target's and the source's
   launch classes; never the target's rows), geometric mean over the proxy pairs that measured the
   shape. It says what the measured cross-generation speed-up of each backend would give where the
   datasheet ratio fails. Only shapes some proxy measured are scored, so its n can be smaller than
   the protocol's. `--exclude` leaves systems out of the proxies (e.g. rtx_pro_6000_server: the
   `blackwell/x86` class by its spec, but an sm_120 GDDR7 card, not a sibling of B200's kernels).

    python benchmarks/transfer_protocol.py --home WH --errors-out e.parquet
    python benchmarks/transfer_siblings.py --home WH --errors-in e.parquet \\
        --ratio b300_sxm:b200_sxm --ratio gb200:b200_sxm --ratio gb300:b300_sxm --ratio h100_sxm:h200_sxm
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from estimator.accuracy.transfer import MODULE_OPS, SHAPE_KEYS, modelled  # noqa: E402
from estimator.physics.transfer import proxy_pairs  # noqa: E402
from warehouse.read import perf_points_from, scan_measurements  # noqa: E402

OP_KEYS = ["framework", "version", "op"]
SHAPE = [c for c in SHAPE_KEYS if c != "kernel_source"]


def _latency(points: pl.DataFrame, system: str, alias: str, ks: str = "kernel_source") -> pl.DataFrame:
    """One latency per shape of `system` (median over repeated rows), its kernel_source named `ks`."""
    return (points.filter(pl.col("system") == system).with_columns(pl.col("prefix").fill_null(0))
            .group_by(*SHAPE, pl.col("kernel_source").alias(ks)).agg(pl.col("latency_ms").median().alias(alias)))


def sibling_ratios(points: pl.DataFrame, a: str, b: str) -> pl.DataFrame:
    """p10 / median / p90 of latency(a) / latency(b) per (framework, version, op), on shared shapes."""
    j = _latency(points, a, "_a").join(_latency(points, b, "_b"), on=[*SHAPE, "kernel_source"], nulls_equal=True)
    r = pl.col("_a") / pl.col("_b")
    return j.group_by(OP_KEYS).agg(pl.lit(f"{a}/{b}").alias("ratio"), pl.len().alias("n"),
                                   r.quantile(0.1).alias("p10"), r.median().alias("median"),
                                   r.quantile(0.9).alias("p90")).sort(OP_KEYS)


def with_proxy(errors: pl.DataFrame, points: pl.DataFrame, exclude=()) -> pl.DataFrame:
    """Protocol rows of pairs across launch classes, with `proxy_ms` = copy_ms x the geometric mean over
    the pair's proxy pairs of latency(proxy target) / latency(proxy source) of the same shape (the
    target's kernel_source on the proxy target, the source's on the proxy source)."""
    systems = [s for s in points["system"].unique().to_list() if s not in exclude]
    out = []
    for (t, s), rows in errors.filter(pl.col("copy_ms").is_not_null()).group_by("target", "from_system"):
        proxies = proxy_pairs(t, s, systems)
        if not proxies:
            continue
        logs = []
        for i, (pt, ps) in enumerate(proxies):
            rows = (rows.join(_latency(points, pt, f"_t{i}"), on=[*SHAPE, "kernel_source"], how="left",
                              nulls_equal=True)
                    .join(_latency(points, ps, f"_s{i}", "from_kernel_source"), on=[*SHAPE, "from_kernel_source"],
                          how="left", nulls_equal=True))
            logs.append((pl.col(f"_t{i}") / pl.col(f"_s{i}")).log(2))
        mean_log = pl.mean_horizontal(logs)  # over the proxies that measured the shape; null if none did
        out.append(rows.with_columns((pl.col("copy_ms") * 2.0**mean_log).alias("proxy_ms"),
                                     pl.lit(", ".join(f"{a}/{b}" for a, b in proxies)).alias("proxies"))
                   .select(*errors.columns, "proxy_ms", "proxies"))
    return pl.concat(out) if out else errors.head(0).with_columns(pl.lit(None, pl.Float64).alias("proxy_ms"),
                                                                  pl.lit(None, pl.String).alias("proxies"))


def proxy_table(rows: pl.DataFrame) -> pl.DataFrame:
    """Median / p90 absolute % error of transfer, copy, roofline and proxy ratio, on the shapes all four answer."""
    def err(c):
        return (pl.col(c) / pl.col("measured_ms") - 1).abs() * 100

    cols = ("pred_ms", "copy_ms", "roofline_ms", "proxy_ms")
    return (rows.filter(pl.col("proxy_ms").is_not_null()).group_by("target", "from_system", "proxies", *OP_KEYS)
            .agg(pl.len().alias("n"), *[e for c in cols for e in (err(c).median().alias(f"{c[:-3]}_med"),
                                                                  err(c).quantile(0.9).alias(f"{c[:-3]}_p90"))])
            .sort("target", "from_system", *OP_KEYS))


def _pair(text: str) -> tuple[str, str]:
    a, sep, b = text.partition(":")
    if not (sep and a and b) or ":" in b:
        raise argparse.ArgumentTypeError(f"expected SYSTEM_A:SYSTEM_B, got {text!r}")
    return a, b


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, help="warehouse with the systems")
    ap.add_argument("--ratio", action="append", default=[], type=_pair,
                    help="A:B, latency of A over B on shared shapes")
    ap.add_argument("--errors-in", help="protocol rows (transfer_protocol.py --errors-out) to score the proxy "
                    "ratio beside")
    ap.add_argument("--exclude", action="append", default=[], help="a system never used as a proxy (repeatable)")
    args = ap.parse_args(argv)
    points = modelled(perf_points_from(scan_measurements(args.home).filter(pl.col("op").is_in(list(MODULE_OPS)))))
    pl.Config.set_tbl_rows(200)
    pl.Config.set_tbl_cols(20)
    pl.Config.set_tbl_width_chars(250)
    for a, b in args.ratio:
        print(sibling_ratios(points, a, b).with_columns(pl.col("p10", "median", "p90").round(2)))
    if args.errors_in:
        tab = proxy_table(with_proxy(pl.read_parquet(args.errors_in), points, args.exclude))
        print(tab.with_columns(pl.selectors.ends_with("_med", "_p90").round(1)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
