"""Cost of the 80% intervals: one PerfDatabase with its interval table vs the same without, interleaved.

    python benchmarks/interval_overhead.py --home WAREHOUSE [--points 1000000]

Both databases run the same code except the interval lookup (`estimator.lookup.intervals`), in one
process, rounds interleaved, timed in CPU time (time.process_time): on a shared machine the
wall-clock of separate benchmark runs varies by 2-3x, which hides a 1 us difference.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--points", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    from estimator.lookup.database import PerfDatabase
    from estimator.lookup.intervals import IntervalLookup

    with_iv = PerfDatabase(home=args.home)
    bare = PerfDatabase(home=args.home)
    bare.intervals = IntervalLookup(None)
    bare._iv_by_version = {}
    rng = random.Random(0)
    for op in ("dsa_context", "dsa_generation", "mla_context", "mla_generation"):
        ctx = "context" in op
        shapes = [(rng.choice((1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)), rng.randint(16, 16384 if ctx else 65536),
                   rng.choice((8, 16, 24, 32, 64, 128))) for _ in range(2000)]
        scalar: dict[str, list[float]] = {"with": [], "bare": []}
        for _ in range(21):
            for name, db in (("with", with_iv), ("bare", bare)):
                t = time.process_time()
                for b, s, h in shapes:
                    db.estimate(op, batch_size=b, s=s, num_heads=h)
                scalar[name].append((time.process_time() - t) / len(shapes) * 1e6)
        g = np.random.default_rng(0)
        frame = pl.DataFrame({"batch_size": g.integers(1, 257, args.points),
                              ("isl" if ctx else "kv_len"): g.integers(16, 16384 if ctx else 65536, args.points),
                              "num_heads": g.choice(np.array([8, 16, 24, 32, 64, 128]), args.points)})
        many: dict[str, list[float]] = {"with": [], "bare": []}
        for _ in range(5):
            for name, db in (("with", with_iv), ("bare", bare)):
                t = time.process_time()
                db.estimate_many(op, frame)
                many[name].append(args.points / (time.process_time() - t))
        print(f"{op:15s} scalar estimate (CPU us, min / median of 21 x 2000): "
              f"with {min(scalar['with']):.2f} / {statistics.median(scalar['with']):.2f}, "
              f"without {min(scalar['bare']):.2f} / {statistics.median(scalar['bare']):.2f} | "
              f"estimate_many {args.points:,} points (best of 5): with {max(many['with']):,.0f}/s, "
              f"without {max(many['bare']):,.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
