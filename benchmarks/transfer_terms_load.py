"""What the proxy terms cost and change at run time: a transferred PerfDatabase across launch classes
loaded with the warehouse's transfer_terms table and with an empty one (the datasheet rule), best of 5,
alternating so that a shared machine's load drift hits both; and one answer of each beside the target's
own (a warehouse holding both systems, with `perfwh accuracy --fit-transfer-intervals` run on it).
With --errors-in (a `perfwh accuracy --transfer T --from S --errors-out` file) it also answers every
protocol row through PerfDatabase and compares: does the run time give what the protocol scored?"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from estimator.lookup.database import PerfDatabase
from estimator.physics.transfer_terms import TERM_SCHEMA

CASES = [("b200_sxm", "h200_sxm", "trtllm", "1.3.0rc20"), ("gb200", "b200_sxm", "vllm", "0.24.0")]
SHAPE = dict(batch_size=8, s=1024, num_heads=128)
OP = "dsa_context"


def runtime_vs_protocol(home, errors_in: str) -> None:
    """Every protocol row answered by a transferred PerfDatabase: ratio to the protocol's prediction and
    both errors against the measurement (rows the estimator refuses, e.g. more heads than the model has,
    are left out and counted)."""
    from estimator.lookup.limits import OutOfRangeError

    rows = pl.read_parquet(errors_in)
    for (target, source, fw, version, op), sub in rows.group_by("target", "from_system", "framework", "version", "op",
                                                                 maintain_order=True):
        db = PerfDatabase(target, fw, version, home=home, from_system=source)
        seq = ["isl", "prefix"] if "context" in op else ["kv_len"]
        keep, lat = [], []
        for i, r in enumerate(sub.iter_rows(named=True)):
            kw = dict(s=r[seq[0]], prefix=r["prefix"] or 0) if "context" in op else dict(s=r["kv_len"])
            try:
                lat.append(db.estimate(op, batch_size=r["batch_size"], num_heads=r["num_heads"],
                                       gemm_type=r["gemm_type"], kv_cache_dtype=r["kv_cache_dtype"],
                                       architecture=r["architecture"], kernel_source=r["kernel_source"],
                                       **kw).latency_ms)
                keep.append(i)
            except (ValueError, OutOfRangeError):
                continue
        s = sub[keep]
        run, pred, meas = np.array(lat), s["pred_ms"].to_numpy(), s["measured_ms"].to_numpy()
        ratio = run / pred
        e_run, e_pro = (np.abs(x / meas - 1) * 100 for x in (run, pred))
        print(f"{target} <- {source} {fw} {version} {op}: {len(keep):,} of {sub.height:,} rows answered; "
              f"run time / protocol median {np.median(ratio):.4f} (p10-p90 {np.quantile(ratio, 0.1):.4f}-"
              f"{np.quantile(ratio, 0.9):.4f}); error med / p90 run time {np.median(e_run):.1f} / "
              f"{np.quantile(e_run, 0.9):.1f}%, protocol {np.median(e_pro):.1f} / {np.quantile(e_pro, 0.9):.1f}%")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--home", required=True, help="warehouse with the systems of CASES and its transfer tables")
    p.add_argument("--errors-in", help="protocol rows (perfwh accuracy --errors-out) to answer at run time too")
    args = p.parse_args()
    home = args.home
    empty = pl.DataFrame(schema=TERM_SCHEMA)
    for target, source, fw, version in CASES:
        make = {"datasheet rule": lambda: PerfDatabase(target, fw, version, home=home, from_system=source,
                                                        transfer_terms=empty),
                "proxy terms": lambda: PerfDatabase(target, fw, version, home=home, from_system=source)}
        dbs = {k: f() for k, f in make.items()}  # builds stale partitions once
        best = {k: float("inf") for k in make}
        for _ in range(5):
            for k, f in make.items():
                t0 = time.perf_counter()
                f()
                best[k] = min(best[k], time.perf_counter() - t0)
        own = PerfDatabase(target, fw, version, home=home).estimate(OP, **SHAPE)
        print(f"{target} <- {source} ({fw} {version}): load " + ", ".join(f"{k} {t:.2f} s" for k, t in best.items()))
        print(f"  {OP} b{SHAPE['batch_size']} s{SHAPE['s']} h{SHAPE['num_heads']}: {target} {own.latency_ms:.3f} ms "
              f"({own.source}); " + ", ".join(
                  f"{k} {a.latency_ms:.3f} ms (80% {a.low_ms:.3f}-{a.high_ms:.3f})"
                  for k, a in ((k, db.estimate(OP, **SHAPE)) for k, db in dbs.items())))
    if args.errors_in:
        runtime_vs_protocol(home, args.errors_in)


if __name__ == "__main__":
    main()
