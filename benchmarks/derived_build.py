"""Partitioned derived builds on the whole published corpus (aiconfigurator-core 0.12).

    python benchmarks/derived_build.py [--data PATH] [--home DIR] [--system h200_sxm --backend trtllm]

1. copies `<site-packages>/aiconfigurator_core/systems/data` (or --data) to a
   temporary landing and ingests every table the warehouse models
   (`perfwh ingest --from-aiconfigurator LANDING`);
2. full derived build: `DerivedStore.refresh()` over every (system, framework,
   version) partition, with its tqdm progress bar, in a fresh process: wall
   time and that process's peak RSS;
3. `PerfDatabase(system, backend)` load in a fresh process (3 runs): the
   constructor's time and the process's peak RSS (imports included);
4. one changed file (the system/backend's DSA context module table, latencies
   x 1.01) re-ingested, then the first query in a fresh process: its wall time
   (it rebuilds only that file's partition), and which partitions were rebuilt.

Every figure is a child process's own (os.wait4 rusage), so the parent's memory
never counts. The machine is shared: read the figures as one sample each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_child(code: str, *args: str) -> tuple[float, float, str, str]:
    """(wall s, peak RSS MB, stdout, stderr) of `python -c code args` in a fresh process (rusage by wait4)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    out_f, err_f = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", code, *args], env,
                         file_actions=[(os.POSIX_SPAWN_DUP2, out_f.fileno(), 1),
                                       (os.POSIX_SPAWN_DUP2, err_f.fileno(), 2)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    out_f.seek(0)
    err_f.seek(0)
    out, err = out_f.read(), err_f.read()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"child failed:\n{err[-3000:]}")
    return wall, usage.ru_maxrss / 1024, out, err


BUILD = """
import sys, time
from estimator.derived.store import DerivedStore
t0 = time.perf_counter()
done = DerivedStore(sys.argv[1], progress=True).refresh()
print(f"{len(done)} {time.perf_counter() - t0:.3f}")
"""

LOAD = """
import sys, time
from estimator.lookup.database import PerfDatabase
import polars, numpy  # imports are not the load
t0 = time.perf_counter()
db = PerfDatabase(sys.argv[2], sys.argv[3], home=sys.argv[1])
t1 = time.perf_counter()
est = db.estimate("dsa_context", batch_size=4, s=4096, num_heads=64)
print(f"{t1 - t0:.4f} {db.version} {est.latency_ms:.4f} {est.source.value}")
"""

FIRST_QUERY = """
import sys, time
t0 = time.perf_counter()
from estimator.lookup.database import PerfDatabase
db = PerfDatabase(sys.argv[2], sys.argv[3], home=sys.argv[1])
est = db.estimate("dsa_context", batch_size=4, s=4096, num_heads=64)
print(f"{time.perf_counter() - t0:.3f} {est.latency_ms:.4f} {est.source.value}")
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="a systems/data folder (default: the installed one)")
    ap.add_argument("--home", type=Path, default=None, help="warehouse folder (default: a temporary one)")
    ap.add_argument("--system", default="h200_sxm")
    ap.add_argument("--backend", default="trtllm")
    args = ap.parse_args()
    from warehouse.aiconfigurator import installed_data_root

    data = args.data or installed_data_root()
    tmp = Path(tempfile.mkdtemp(prefix="perfwh-derived-"))
    try:
        landing = tmp / "data"
        shutil.copytree(data, landing)
        home = args.home or tmp / "home"
        wall, rss, _, err = run_child("from perfwh.cli import main; import sys; sys.exit(main(sys.argv[1:]))",
                                      "ingest", "--from-aiconfigurator", str(landing), "--home", str(home))
        print(f"ingest of the corpus: {wall:.1f} s, peak RSS {rss:.0f} MB ({err.strip().splitlines()[0]})")

        wall, rss, out, err = run_child(BUILD, str(home))
        n, secs = out.split()
        bar = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
        print(f"full derived build: {n} partitions in {float(secs):.1f} s (process {wall:.1f} s), peak RSS {rss:.0f} MB")
        print("  " + "\n  ".join(bar[:1] + bar[-1:]))

        loads = []
        for _ in range(3):
            wall, rss, out, _ = run_child(LOAD, str(home), args.system, args.backend)
            secs, version, lat, src = out.split()
            loads.append((float(secs), rss))
        print(f"PerfDatabase({args.system}, {args.backend}) [{version}] load: median "
              f"{statistics.median(s for s, _ in loads):.2f} s (runs: {', '.join(f'{s:.2f}' for s, _ in loads)}), "
              f"peak RSS {max(r for _, r in loads):.0f} MB (imports included); dsa_context b4 s4096 h64 = {lat} ms ({src})")

        import polars as pl

        changed = sorted((landing / args.system).rglob(f"{args.backend}/*/dsa_context_module_perf.parquet"))[-1]
        frame = pl.read_parquet(changed)
        lat_col = next(c for c in ("latency", "latency_ms") if c in frame.columns)
        frame.with_columns(pl.col(lat_col) * 1.01).write_parquet(changed)
        wall, _, _, _ = run_child("from perfwh.cli import main; import sys; sys.exit(main(sys.argv[1:]))",
                                  "ingest", "--from-aiconfigurator", str(landing), "--home", str(home))
        print(f"changed {changed.relative_to(landing)} (latency x 1.01), re-ingested in {wall:.1f} s")
        wall, rss, out, err = run_child(FIRST_QUERY, str(home), args.system, args.backend)
        secs, lat, src = out.split()
        said = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("rebuilding")]
        print(f"first query after the change: {float(secs):.1f} s in-process ({wall:.1f} s with start-up), "
              f"peak RSS {rss:.0f} MB; {said[0] if said else 'nothing rebuilt'}; answer {lat} ms ({src})")
    finally:
        if args.home is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(tmp / "data", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
