"""Object-storage home: the same ingest into a local folder and into `s3://` (a local
moto server), and several writer processes on one s3 home at once.

    python benchmarks/object_storage.py [--files 4] [--rows 250000] [--writers 3]

moto keeps objects in memory in one Python process, so the s3 figures measure the
code path (Delta commits by conditional PUT, data files as single PUTs, reads through
pyarrow's S3 file system) against a slow server, not the throughput of a real store.
Every run checks that each measurement is stored exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=4)
    p.add_argument("--rows", type=int, default=250_000, help="rows per log")
    p.add_argument("--writers", type=int, default=4, help="logs in the race: the first creates the tables, "
                   "then one writer process per other log, all at once")
    args = p.parse_args(argv)

    import boto3

    from benchmarks.ingest import synthetic_log
    from tests.s3server import moto_server
    from warehouse.ingest import ingest_paths
    from warehouse.read import sql

    tmp = Path(tempfile.mkdtemp(prefix="perfwh-s3bench-"))
    logs = []
    for i in range(max(args.files, args.writers)):
        d = tmp / "raw" / f"g{i}" / "h200_sxm" / "trtllm" / f"1.{i}"
        d.mkdir(parents=True)
        logs.append(synthetic_log(d / "dsa_context_module_perf.txt", args.rows, seed=i))
    total = args.files * args.rows
    out: dict[str, object] = {"files": args.files, "rows_per_file": args.rows}
    with moto_server() as url:
        os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_REGION="us-east-1", PERFWH_CACHE=str(tmp / "cache"))
        boto3.client("s3").create_bucket(Bucket="bench")
        homes = {"local": str(tmp / "wh"), "s3": "s3://bench/wh"}
        for kind, home in homes.items():
            secs, report = _timed(lambda: ingest_paths(logs[: args.files], home))
            assert report.rows_accepted + report.rows_quarantined == total
            q_secs, n = _timed(lambda: sql("select count(*) from measurements", home).item())
            assert n == report.rows_accepted
            out[f"{kind}_ingest_s"] = round(secs, 2)
            out[f"{kind}_rows_per_s"] = round(total / secs)
            out[f"{kind}_count_query_s"] = round(q_secs, 2)
        # Concurrent writers: one process per log, all into one fresh s3 home.
        home = f"s3://bench/w{uuid.uuid4().hex[:6]}"
        ingest_paths([logs[0]], home)  # the tables exist before the race
        code = "import sys; from warehouse.ingest import ingest_paths; ingest_paths([sys.argv[1]], sys.argv[2])"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", code, str(f), home], env=env) for f in logs[1: args.writers]]
        rcs = [proc.wait() for proc in procs]
        out["s3_concurrent_writers"] = len(procs)
        out["s3_concurrent_wall_s"] = round(time.perf_counter() - t0, 2)
        stored = sql("select count(*) from measurements", home).item()
        ledger = int(sql("select sum(rows_accepted) from ingest_ledger where status = 'ingested'", home).item())
        expected = args.writers * args.rows  # log 0 before the race, then one log per process
        out["s3_concurrent_exit_codes"] = rcs
        out["s3_concurrent_rows_stored"] = stored
        out["s3_concurrent_rows_in_ledger"] = ledger
        out["s3_concurrent_rows_expected"] = expected
        out["s3_concurrent_exactly_once"] = stored == ledger == expected and all(rc == 0 for rc in rcs)
    print(json.dumps(out, indent=2))
    return 0 if out["s3_concurrent_exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
