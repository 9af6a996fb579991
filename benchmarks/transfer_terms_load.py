"""What the proxy terms cost and change at run time: a transferred PerfDatabase across launch classes
loaded with the warehouse's transfer_terms table and with an empty one (the datasheet rule), best of 5,
alternating so that a shared machine's load drift hits both; and one answer of each beside the target's
own (a warehouse holding both systems, with `perfwh accuracy --fit-transfer-intervals` run on it)."""

from __future__ import annotations

import argparse
import time

import polars as pl

from estimator.lookup.database import PerfDatabase
from estimator.physics.transfer_terms import TERM_SCHEMA

CASES = [("b200_sxm", "h200_sxm", "trtllm", "1.3.0rc20"), ("gb200", "b200_sxm", "vllm", "0.24.0")]
SHAPE = dict(batch_size=8, s=1024, num_heads=128)
OP = "dsa_context"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--home", required=True, help="warehouse with the systems of CASES and its transfer tables")
    home = p.parse_args().home
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


if __name__ == "__main__":
    main()
