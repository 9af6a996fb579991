"""`perfwh materialize`: the whole asset graph in this process."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser(
        "materialize",
        help="run the Dagster asset graph in process: ingest new raw logs, rebuild derived tables",
        description="List the landing folder, ingest new or changed raw logs (one in-process run over "
        "their partitions, one partition per file), then rebuild perf_points, sol_calibration and interpolation_grids of the "
        "(system, framework, version) partitions whose inputs changed ($PERFWH_MAX_CONCURRENT at once), then accuracy_report and the "
        "DuckDB views, and print each partition's status. With nothing new, no run is launched. "
        "Runs are recorded in $DAGSTER_HOME (default <home>/dagster). Exit 1 when a run failed "
        "or a blocking check did not pass.",
    )
    p.add_argument(
        "--landing",
        default=None,
        metavar="DIR",
        help="folder of raw logs (default: $PERFWH_LANDING, else the repo's data/raw when it holds "
        "raw logs, else aiconfigurator:h200_sxm,h100_sxm = the installed aiconfigurator-core tables)",
    )
    p.add_argument("--home", default=None, help="warehouse folder (default: $PERFWH_HOME, else ~/.local/share/perfwh)")
    p.add_argument("--force", action="store_true", help="rebuild the derived tables even when nothing changed")
    p.set_defaults(handler=cmd_materialize)


def cmd_materialize(args) -> int:
    from pipelines.materialize import run_materialize

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    s = run_materialize(args.home, args.landing, force=args.force, progress=progress)
    t = s.ingested
    print(
        f"{s.files_seen} raw logs seen, {t.ingested} ingested (rows {t.rows_read:,} read = {t.rows_accepted:,} "
        f"accepted + {t.rows_quarantined:,} quarantined); derived tables {s.derived}; {s.seconds:.2f} s"
    )
    latest = {(c.asset, c.check): c for c in s.checks}  # measurement checks run in both jobs
    for c in latest.values():
        if not c.passed:
            print(f"check {c.asset}/{c.check}: {'FAILED' if c.severity == 'ERROR' else 'warning'}")
    if latest:
        print(f"checks: {sum(c.passed for c in latest.values())}/{len(latest)} passed")
    for run in s.failed_runs:
        print(f"failed run: {run}", file=sys.stderr)
    print(f"warehouse {s.home}" + (f"; Dagster runs in {s.dagster_home}" if s.dagster_home else ""))
    return 0 if s.ok else 1
