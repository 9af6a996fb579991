"""Ingest benchmark: rows/s and peak RSS on a synthetic collector log, and the
cold-process time to ingest the shared H200 data set.

    python benchmarks/ingest.py [--rows 10000000] [--bad-every N] [--shared ../shared/data/aiconfigurator]

Beside each ingest it times a bare `polars.scan_csv(log).sink_parquet(out)`
of the same log in a fresh process: the ratio is the cost of validation,
lineage, checksums and the Delta commits over a plain copy.

Each measurement runs `perfwh ingest` in a fresh process (so import time and
the DuckDB view refresh are included) and reads that child's own peak RSS
from os.wait4 (the largest over the runs is reported). The log is written by
a child process too: Linux charges a child the RSS of the process it was
forked from, so a parent holding the 10M-row frame would inflate the figure.
The machine is shared, so each input is ingested `--repeat` times into a
fresh warehouse and the best and median are reported; wall and CPU time
(user + system, from the child's rusage) are both given, since CPU time moves
less with the load of other tenants. `--baseline ../main` times another
checkout's ingest in the same rounds (the order rotates each round).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = (
    "framework,version,device,op_name,kernel_source,model,architecture,mla_dtype,"
    "kv_cache_dtype,gemm_type,num_heads,batch_size,isl,tp_size,step,latency"
)


def synthetic_log(path: Path, rows: int, seed: int = 0, bad_every: int = 0) -> Path:
    """A collector log shaped like the real ones (dsa_context_module, H200).

    bad_every=N: every N-th row gets a NaN latency and every N-th (offset N/2)
    an unknown KV dtype, the faults failed measurements leave in real logs.
    """
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    pow2 = lambda lo, hi: (2 ** rng.integers(lo, hi, rows)).astype(np.int64)  # noqa: E731
    frame = pl.DataFrame(
        {
            "framework": "TRTLLM",
            "version": "1.3.0rc20",
            "device": "NVIDIA H200",
            "op_name": "dsa_context_module",
            "kernel_source": "default",
            "model": "deepseek-ai/DeepSeek-V3.2",
            "architecture": "DeepseekV32ForCausalLM",
            "mla_dtype": "bfloat16",
            "kv_cache_dtype": rng.choice(["bfloat16", "fp8"], rows),
            "gemm_type": rng.choice(["bfloat16", "fp8_block"], rows),
            "num_heads": pow2(3, 8),
            "batch_size": pow2(0, 9),
            "isl": pow2(4, 16),
            "tp_size": 1,
            "step": rng.choice([0, 128, 1024], rows),
            "latency": np.round(rng.lognormal(0.0, 1.5, rows), 4),
        }
    )
    if bad_every:
        i = pl.int_range(pl.len())
        frame = frame.with_columns(
            pl.when(i % bad_every == bad_every - 1).then(float("nan")).otherwise(pl.col("latency")).alias("latency"),
            pl.when(i % bad_every == bad_every // 2).then(pl.lit("int4")).otherwise(pl.col("kv_cache_dtype"))
            .alias("kv_cache_dtype"),
        )  # fmt: skip
    frame.write_csv(path)
    return path


def loop_reference() -> float:
    """Seconds for a bare 1M-iteration Python loop: how fast this shared machine is right now
    (the same reference as benchmarks/estimator_speed.py; ~0.035-0.05 s when it is quiet)."""
    t0 = time.perf_counter()
    for _ in range(1_000_000):
        pass
    return time.perf_counter() - t0


def _child(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, int, str]:
    """(wall s, CPU s = user + system, peak RSS KiB, output) of one child process, from its own rusage."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[2:4]} failed:\n{output}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, output


def run_ingest(args: list[str], home: Path, repo: Path = REPO) -> tuple[float, float, int, str]:
    """(wall s, CPU s, peak RSS KiB of this ingest process alone, summary line) of `perfwh ingest`
    run from the checkout `repo` (this one, or a baseline such as main)."""
    wall, cpu, rss, output = _child(
        [sys.executable, "-m", "perfwh.cli", "ingest", *args, "--home", str(home)],
        repo, dict(os.environ, PYTHONPATH=str(repo)),
    )  # fmt: skip
    return wall, cpu, rss, output.strip().splitlines()[-1]


BARE = "import sys, polars as pl; pl.scan_csv(sys.argv[1]).sink_parquet(sys.argv[2])"


def run_bare(log: Path, out: Path) -> tuple[float, float]:
    """(wall s, CPU s) of a cold process doing a bare `polars.scan_csv(log).sink_parquet(out)` (no validation, no table)."""
    wall, cpu, _, _ = _child([sys.executable, "-c", BARE, str(log), str(out)], REPO)
    return wall, cpu


def _load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=3, help="ingests of each input into a fresh warehouse (default 3)")
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data" / "aiconfigurator")
    p.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: system temp)")
    p.add_argument("--bad-every", type=int, default=0, metavar="N",
                   help="damage every N-th row of the synthetic log (NaN latency, unknown dtype); default clean")
    p.add_argument("--skip-shared", action="store_true", help="leave out the shared data set")
    p.add_argument("--baseline", type=Path, default=None, metavar="CHECKOUT",
                   help="also time the ingest of another checkout (e.g. main), alternated with this one")
    p.add_argument("--log", type=Path, default=None,
                   help="a synthetic log written earlier (--write-log, same --rows) instead of a new one")
    p.add_argument("--write-log", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.write_log:
        synthetic_log(args.write_log, args.rows, bad_every=args.bad_every)
        return
    print(f"load average {os.getloadavg()[0]:.2f} at start; {os.cpu_count()} cores; "
          f"loop reference {loop_reference():.3f} s")  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        if args.shared.is_dir() and not args.skip_shared:
            walls = []
            for i in range(args.repeat):
                wall, _, _, summary = run_ingest([str(args.shared)], tmp / f"wh_shared{i}")
                walls.append(wall)
            print(f"shared data set, cold process: best {min(walls):.2f} s, median {statistics.median(walls):.2f} s "
                  f"({', '.join(f'{w:.2f}' for w in walls)})  ({summary})")  # fmt: skip
        log_dir = tmp / "raw" / "h200_sxm"
        log_dir.mkdir(parents=True)
        t0 = time.perf_counter()
        if args.log:  # a log written earlier (same --rows): saves ~25 s per benchmark run
            log = args.log
        else:
            log = log_dir / "dsa_context_module_perf.txt"
            subprocess.run([sys.executable, __file__, "--write-log", str(log), "--rows", str(args.rows),
                            "--bad-every", str(args.bad_every)], check=True)  # fmt: skip
        os.sync()  # the log's dirty pages are flushed now, not during the first timed run
        size_mb = log.stat().st_size / 1e6
        print(f"synthetic log: {args.rows:,} rows, {size_mb:,.0f} MB, written in {time.perf_counter() - t0:.1f} s")
        # Each round runs the bare copy, this checkout's ingest and (with --baseline) the
        # baseline's, in a rotating order, so all see the same load on this shared machine.
        runs = {"bare": [], "ingest": []}
        repos = {"ingest": REPO}
        if args.baseline:
            runs["baseline"] = []
            repos["baseline"] = args.baseline.resolve()
        peak: dict[str, int] = {}
        summary = ""
        for i in range(args.repeat):
            names = list(runs)
            names = names[i % len(names):] + names[: i % len(names)]
            for name in names:
                if name == "bare":
                    wall, cpu = run_bare(log, tmp / "bare.parquet")
                    (tmp / "bare.parquet").unlink()
                    rss = 0
                else:
                    wall, cpu, rss, summary_i = run_ingest([str(log)], tmp / f"wh_{name}{i}", repos[name])
                    shutil.rmtree(tmp / f"wh_{name}{i}")
                    peak[name] = max(peak.get(name, 0), rss)
                    if name == "ingest":
                        summary = summary_i
                runs[name].append((wall, cpu))
                print(f"  run {i + 1} {name:8s}: {wall:6.2f} s wall, {cpu:6.2f} s CPU"
                      + (f", {args.rows / wall:,.0f} rows/s, peak RSS {rss / 1024:,.0f} MiB" if rss else "")
                      + f", {_load()}, loop reference {loop_reference():.3f} s", flush=True)  # fmt: skip
        med = {n: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r)) for n, r in runs.items()}
        best = {n: min(w for w, _ in r) for n, r in runs.items()}
        bare_wall, bare_cpu = med["bare"]
        print(f"bare polars scan_csv().sink_parquet() of the same log: median {bare_wall:.2f} s wall, "
              f"{bare_cpu:.2f} s CPU (best {best['bare']:.2f} s)")  # fmt: skip
        for name in runs:
            if name == "bare":
                continue
            wall, cpu = med[name]
            label = "this checkout" if name == "ingest" else f"baseline {repos[name]}"
            print(f"ingest {args.rows:,} rows, {label}: median {wall:.2f} s wall = {args.rows / wall:,.0f} rows/s, "
                  f"{cpu:.2f} s CPU, peak RSS {peak[name] / 1024:,.0f} MiB; ingest / bare = "
                  f"{wall / bare_wall:.2f}x wall (medians), {best[name] / best['bare']:.2f}x (best), "
                  f"{cpu / bare_cpu:.2f}x CPU (medians)")  # fmt: skip
        print(f"  ({summary}); {_load()} at the end")

if __name__ == "__main__":
    main()
