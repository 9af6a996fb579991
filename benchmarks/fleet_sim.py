"""Fleet simulation: many collectors drop small raw logs at random times; how long until
each is queryable, how many runs, and is every measurement ingested exactly once?

    python benchmarks/fleet_sim.py --collectors 50 --logs 20 --interval 5 --window 60
    python benchmarks/fleet_sim.py --landing s3      # the same against a local S3 server (moto)
    python benchmarks/fleet_sim.py --landing s3 --home s3   # and the warehouse in that bucket too
    python benchmarks/fleet_sim.py --dagster-storage postgres  # Dagster's storage in a local PostgreSQL

Each collector writes one slice folder (`h200_sxm/trtllm/0.<v>/`, its rows say
version 0.<v>; v = c, or c mod --slices when hosts share a slice) and drops `--logs` logs of `--rows` unique measurements at
uniform random times within `--window` seconds (written to a temp name and
renamed, or one PUT for S3). The landing sensor of the code location is
ticked every `--interval` seconds, as the daemon does, and its run requests are
executed in this process (Dagster's in-process execution, so the per-run
process start of a deployed run launcher, about 2 s here, is not in the
figures). Drop-to-queryable = time from a file's drop to the end of the run
that made its rows readable through `warehouse.read`; `p99_minus_run_s` is its p99
less that run's own duration (the ingest time), the issue's target being two
sensor intervals.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HEADER = (
    "framework,version,device,op_name,kernel_source,model,architecture,mla_dtype,"
    "kv_cache_dtype,gemm_type,num_heads,batch_size,isl,tp_size,step,latency"
)


QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def log_text(collector: int, log: int, rows: int, rng: random.Random) -> str:
    lines = [HEADER]
    for r in range(rows):
        isl = 128 * (log * rows + r + 1)
        lines.append(
            f"TRTLLM,0.{collector},NVIDIA H200,dsa_context_module,default,deepseek-ai/DeepSeek-V3.2,"
            f"DeepseekV32ForCausalLM,bfloat16,bfloat16,bfloat16,128,1,{isl},1,0,{0.2 + isl * 1e-4 * rng.uniform(0.95, 1.05):.6f}"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--collectors", type=int, default=50)
    p.add_argument("--logs", type=int, default=20, help="logs per collector")
    p.add_argument("--slices", type=int, default=0,
                   help="slice folders the collectors share (collector c writes slice c mod N); 0: one each")
    p.add_argument("--rows", type=int, default=20, help="measurements per log")
    p.add_argument("--interval", type=float, default=5.0, help="sensor interval, s")
    p.add_argument("--window", type=float, default=60.0, help="drops spread over this many s")
    p.add_argument("--landing", choices=("folder", "s3"), default="folder")
    p.add_argument("--home", choices=("folder", "s3"), default="folder", help="warehouse home kind")
    p.add_argument("--dagster-storage", choices=("sqlite", "postgres"), default="sqlite",
                   help="Dagster run and event storage: SQLite in DAGSTER_HOME, or a throwaway local PostgreSQL "
                        "server (its Debian binaries, as tests/pipelines/postgres.py starts it)")
    p.add_argument("--max-runs", type=int, default=20, help="PERFWH_SENSOR_MAX_RUNS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="perfwh-fleet-"))
    os.environ.update(DAGSTER_HOME=str(tmp / "dh"), PERFWH_SENSOR_MAX_RUNS=str(args.max_runs),
                      PERFWH_LANDING_CACHE=str(tmp / "cache"))
    import logging
    import warnings

    import dagster as dg
    import polars as pl

    warnings.filterwarnings("ignore")
    logging.getLogger("dagster").setLevel(logging.ERROR)

    from assets.resources import WarehouseSettings
    from pipelines.definitions import build_defs
    from pipelines.instance import write_instance_config
    from warehouse.read import scan_measurements

    pg = None
    if args.dagster_storage == "postgres":
        from tests.pipelines.postgres import PostgresServer

        pg_root = Path(tempfile.mkdtemp(prefix="perfwh-fleet-pg-"))
        os.chmod(pg_root, 0o755)  # the `postgres` user must enter it (as root)
        pg = PostgresServer(pg_root / "cluster")
        atexit.register(pg.stop)  # also when the simulation fails
        os.environ["PERFWH_DAGSTER_PG_URL"] = pg.start()
    write_instance_config(tmp / "dh", environ={k: v for k, v in os.environ.items() if k == "PERFWH_DAGSTER_PG_URL"})
    server = None
    if "s3" in (args.landing, args.home):
        import boto3

        from tests.s3server import moto_server

        server = moto_server()  # its own process: delta-rs holds the GIL in some S3 calls
        url = server.__enter__()
        os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x",
                          AWS_REGION="us-east-1", PERFWH_CACHE=str(tmp / "cache"))
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="fleet")
    if args.landing == "s3":
        landing = "s3://fleet/landing/"
    else:
        (tmp / "landing").mkdir()
        landing = str(tmp / "landing")
    home = "s3://fleet/warehouse" if args.home == "s3" else tmp / "wh"
    settings = WarehouseSettings(home=str(home), landing=landing)
    defs = build_defs(settings)
    sensor = defs.resolve_sensor_def("landing_sensor")
    job = defs.resolve_job_def("ingest_job")

    rng = random.Random(args.seed)
    drops = sorted(
        (rng.uniform(0, args.window), c, j) for c in range(args.collectors) for j in range(args.logs)
    )
    dropped: dict[str, float] = {}
    start = time.monotonic()

    def dropper():
        for at, c, j in drops:
            time.sleep(max(0.0, at - (time.monotonic() - start)))
            v = c % args.slices if args.slices else c
            key = f"h200_sxm/trtllm/0.{v}/dsa_context_module_perf_c{c:03d}_{j:03d}.txt"
            text = log_text(v, c * args.logs + j, args.rows, random.Random(c * 1000 + j))
            if args.landing == "s3":
                s3.put_object(Bucket="fleet", Key="landing/" + key, Body=text.encode())
            else:
                path = Path(landing) / key
                path.parent.mkdir(parents=True, exist_ok=True)
                part = path.with_name("." + path.name + ".part")
                part.write_text(text)
                os.replace(part, path)
            dropped[key] = time.monotonic()

    thread = threading.Thread(target=dropper, daemon=True)
    thread.start()
    queryable: dict[str, float] = {}
    run_of: dict[str, float] = {}  # duration of the run that made each file queryable
    runs = batches = ticks = 0
    failed_runs = 0
    cursor = None
    total = len(drops)
    with dg.DagsterInstance.from_config(str(tmp / "dh")) as instance:
        next_tick = time.monotonic()
        while len(queryable) < total:
            time.sleep(max(0.0, next_tick - time.monotonic()))
            next_tick = time.monotonic() + args.interval
            ticks += 1
            ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"settings": settings})
            result = sensor(ctx)
            cursor = result.cursor
            for req in result.dynamic_partitions_requests:
                instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
            batches += len({r.tags.get("perfwh/batch") for r in result.run_requests})
            for req in result.run_requests:
                runs += 1
                run_start = time.monotonic()
                out = job.execute_in_process(instance=instance, tags=req.tags, partition_key=req.partition_key,
                                             raise_on_error=False, run_config=QUIET,
                                             asset_selection=req.asset_selection)
                failed_runs += not out.success
                done = time.monotonic()
                files = scan_measurements(home).select("source_file").unique().collect()["source_file"].to_list()
                for f in files:
                    key = f.split("/landing/", 1)[-1]
                    if key in dropped and key not in queryable:
                        queryable[key] = done
                        run_of[key] = done - run_start
            if not thread.is_alive() and not result.run_requests and len(queryable) < total and ticks > 1000:
                break
    counts = scan_measurements(home).group_by("source_file").len().collect()
    lat = sorted(queryable[k] - dropped[k] for k in queryable)
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
    # the target: p99 within two sensor intervals plus the ingest time (the file's run)
    wait = sorted(queryable[k] - dropped[k] - run_of[k] for k in queryable)
    qw = statistics.quantiles(wait, n=100, method="inclusive") if len(wait) > 1 else wait * 99
    run_s = sorted(set(run_of.values()))
    summary = {
        "landing": args.landing, "home": args.home, "dagster_storage": args.dagster_storage,
        "collectors": args.collectors, "logs_each": args.logs, "files": total,
        "slices": args.slices or args.collectors, "rows_expected": total * args.rows, "rows_stored": int(counts["len"].sum()),
        "files_with_wrong_count": int((counts["len"] != args.rows).sum()), "files_queryable": len(queryable),
        "sensor_interval_s": args.interval, "ticks": ticks, "runs": runs, "batches": batches,
        "failed_runs": failed_runs, "p50_s": round(q[49], 2), "p99_s": round(q[98], 2), "max_s": round(lat[-1], 2),
        "run_median_s": round(statistics.median(run_s), 2) if run_s else None,
        "run_max_s": round(run_s[-1], 2) if run_s else None,
        "p99_minus_run_s": round(qw[98], 2), "target_s": 2 * args.interval,
        "target_met": qw[98] <= 2 * args.interval,
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "wall_s": round(time.monotonic() - start, 1),
    }
    if server is not None:
        server.__exit__(None, None, None)
    if pg is not None:
        pg.stop()
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k:>24}: {v}")
    ok = summary["rows_stored"] == summary["rows_expected"] and not summary["files_with_wrong_count"]
    return 0 if ok and not failed_runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
