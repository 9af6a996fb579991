"""`perfwh ingest`, `perfwh sql`, `perfwh tables`: the warehouse from a shell."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from warehouse.output import FORMATS, Progress, render
from warehouse.paths import ENV_HOME, DEFAULT_HOME

HOME_HELP = (
    f"warehouse folder, or s3://bucket/prefix (endpoint and credentials from the AWS_* environment) "
    f"(default: ${ENV_HOME}, else {DEFAULT_HOME})"
)


def add_home(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", default=None, help=HOME_HELP)


def register(sub) -> None:
    p = sub.add_parser(
        "ingest",
        help="ingest raw benchmark logs (CSV/TXT collector logs, JSONL run logs, Parquet tables)",
        description="Ingest raw logs into the warehouse. Folders are searched recursively. "
        "Unchanged files (same sha256) are skipped; a changed file replaces its earlier rows.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders to ingest")
    p.add_argument(
        "--from-aiconfigurator",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="import the published tables of the installed aiconfigurator-core "
        "(or of PATH, a folder laid out like its systems/data/) (default: off)",
    )
    p.add_argument(
        "--system",
        action="append",
        default=None,
        help="with --from-aiconfigurator: only this system's tables (repeatable), e.g. h200_sxm "
        "(default: every system)",
    )
    add_home(p)
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser(
        "sql", help="run a SQL query on the warehouse views (DuckDB)",
        description="Run one SQL statement (DuckDB) on the views of the latest committed version (or --as-of "
        "an earlier one): measurements, perf_points, the per-op views, quarantine, ingest_ledger and the "
        "derived tables (`perfwh tables` lists them). Read-only: the query cannot write to the warehouse.")
    p.add_argument("query", help='e.g. "select op, count(*) from measurements group by all"')
    p.add_argument("--format", choices=FORMATS, default="table", help="output: an aligned table, CSV or JSON")
    p.add_argument("--max-rows", type=int, default=200, help="rows shown in table format")
    p.add_argument(
        "--as-of", default=None, metavar="VERSION|TIME",
        help="query an earlier committed version: a ledger version number or an ISO time (UTC if no zone) "
        "(default: the latest)",
    )
    add_home(p)
    p.set_defaults(handler=cmd_sql)

    p = sub.add_parser(
        "verify", help="check every live data file against the checksum recorded at commit",
        description="Read every data file the latest version of the measurements and quarantine tables "
        "holds and compare it with the sha256 recorded when it was committed. Lists each missing or changed "
        "file and the raw log it came from; exit status 1 when any is bad, 0 when all match.")
    p.add_argument("--repair", action="store_true", help="re-ingest the raw logs of bad files where still present")
    p.add_argument("--format", choices=FORMATS, default="table", help="output: an aligned table, CSV or JSON")
    add_home(p)
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser(
        "remove", help="take a raw log's rows back out (one ledger commit; the ledger keeps the history)",
        description="Retire the rows of raw logs named by path or content sha256 (or a unique prefix of 8+ "
        "hex digits) in one ledger commit: they leave every view at once; `perfwh sql --as-of` an earlier "
        "version still sees them. A removed file still on disk comes back if it is ingested again "
        "(perfwh ingest, or materialize while it is in the landing folder).",
    )
    p.add_argument("targets", nargs="+", metavar="PATH|SHA256", help="raw log path or content sha256")
    add_home(p)
    p.set_defaults(handler=cmd_remove)

    p = sub.add_parser(
        "tables", help="list the warehouse views with row counts",
        description="List every view `perfwh sql` can query, with its row count (the derived views appear "
        "once the derived tables are built).")
    p.add_argument("--format", choices=FORMATS, default="table", help="output: an aligned table, CSV or JSON")
    add_home(p)
    p.set_defaults(handler=cmd_tables)


def _summary(report) -> pl.DataFrame:
    root = _common_root([Path(f.path) for f in report.files])
    return pl.DataFrame(
        {
            "file": [str(Path(f.path).relative_to(root)) if root else f.path for f in report.files],
            "status": [f.status for f in report.files],
            "read": [f.rows_read for f in report.files],
            "accepted": [f.rows_accepted for f in report.files],
            "quarantined": [f.rows_quarantined for f in report.files],
            "seconds": [round(f.seconds, 3) for f in report.files],
        }
    )


def _common_root(paths: list[Path]) -> Path | None:
    if len(paths) < 2:
        return paths[0].parent if paths else None
    import os.path

    return Path(os.path.commonpath([str(p) for p in paths]))


def cmd_ingest(args) -> int:
    from warehouse.ingest import ingest_paths
    from warehouse.location import one_line

    targets = list(args.paths)
    if args.from_aiconfigurator is not None:
        from warehouse.aiconfigurator import find_published_tables

        found = find_published_tables(args.from_aiconfigurator or None, args.system)
        print(
            f"aiconfigurator tables under {found.root}: {len(found.tables)} to ingest, "
            f"{len(found.skipped)} other tables not modelled here (skipped)",
            file=sys.stderr,
        )
        targets += [str(t) for t in found.tables]
    elif args.system:
        raise ValueError("--system only applies with --from-aiconfigurator")
    if not targets:
        raise ValueError("nothing to ingest: give PATH... or --from-aiconfigurator")
    bar = Progress()

    def progress(n, total, path, result):
        if result is None or result.status == "running":
            rows = f" {result.rows_read:,} rows read" if result else ""
            bar.update(f"[{n}/{total}] {path.name} ...{rows}")
        else:
            bar.update(
                f"[{n}/{total}] {path.name}: {result.status}, {result.rows_accepted:,} accepted, "
                f"{result.rows_quarantined:,} quarantined",
                done=not bar.tty or n == total,
            )

    import duckdb

    try:
        report = ingest_paths(targets, args.home, progress=progress)
    except OSError as exc:  # disk full, read-only or unwritable home: one line, no traceback
        if isinstance(exc, FileNotFoundError) and exc.errno is None:
            raise  # a PATH that does not exist (discover_raw_logs): not about the warehouse
        where = f" ({exc.filename})" if exc.filename else ""
        raise ValueError(f"cannot write the warehouse: {exc.strerror or one_line(exc)}{where}") from None
    except duckdb.Error as exc:  # the view refresh hit the same wall
        raise ValueError(f"cannot write the warehouse views: {str(exc).splitlines()[0]}") from None
    print(render(_summary(report), max_rows=10_000), end="")
    print(
        f"{len(report.files)} files: {report.count('ingested')} ingested, {report.count('replaced')} replaced, "
        f"{report.count('skipped-unchanged')} unchanged, {report.count('skipped-duplicate')} duplicate, "
        f"{report.count('skipped-mirror')} CSV mirrors of JSONL, "
        f"{report.count('ignored')} tables not modelled (ignored), {report.count('skipped-path')} paths skipped, "
        f"{len(report.failed)} failed; rows {report.rows_read:,} read = {report.rows_accepted:,} accepted "
        f"+ {report.rows_quarantined:,} quarantined; {report.seconds:.2f} s; warehouse {report.home}"
    )
    for f in report.files:
        if f.status in ("failed", "skipped-path"):
            print(f"{f.status}: {f.path}: {f.message}", file=sys.stderr)
    return _warn_empty(report, targets) or (1 if report.failed else 0)


def _warn_empty(report, targets: list[str]) -> int:
    """A run that found no raw log, or whose new files held no valid row, says so (exit 1)."""
    if not report.files:
        print(f"warning: no raw logs found in {', '.join(targets)} (looked for *.txt, *.csv, *.jsonl, "
              "*.parquet, recursively)", file=sys.stderr)
        return 1
    garbage = [f for f in report.files if f.status in ("ingested", "replaced") and f.rows_accepted == 0]
    for f in garbage:
        print(f"warning: {f.path}: no row accepted, {f.rows_quarantined:,} quarantined "
              f"(see: perfwh sql \"select source_line, reason from quarantine\")", file=sys.stderr)
    new = [f for f in report.files if f.status in ("ingested", "replaced")]
    return 1 if new and len(garbage) == len(new) else 0


def cmd_sql(args) -> int:
    import duckdb

    from warehouse.read import sql

    if args.max_rows < 0:
        raise ValueError(f"--max-rows must be >= 0, got {args.max_rows}")
    try:
        frame = sql(args.query, args.home, as_of=args.as_of)
    except duckdb.Error as exc:
        raise ValueError(str(exc).splitlines()[0] + _not_built_hint(exc)) from None
    sys.stdout.write(render(frame, args.format, max_rows=args.max_rows))
    return 0


def _not_built_hint(exc) -> str:
    """A derived view (grids, build_errors, ...) exists once the derived tables are built: on a
    home that was only ingested into, DuckDB's 'Table with name grids does not exist!' says why not."""
    import re

    from estimator.derived.accuracy_report import ACCURACY_TABLE
    from estimator.derived.partition import PARTITION_TABLES

    m = re.search(r"Table with name (\w+) does not exist", str(exc))
    derived = {t.name for t in PARTITION_TABLES} | {ACCURACY_TABLE, "raw_log_files"}
    if m and m.group(1) in derived:
        return (f" ({m.group(1)} is a derived table, not built in this warehouse yet: `perfwh materialize` "
                f"builds the derived tables)")
    return ""


def cmd_tables(args) -> int:
    import duckdb

    from warehouse.read import home_path, table_counts

    try:
        frame = table_counts(args.home)
    except duckdb.Error as exc:  # a view over a damaged or lost file: its message names the file and the fix
        raise ValueError(str(exc).splitlines()[0]) from None
    sys.stdout.write(render(frame, args.format))
    if args.format == "table":
        print(f"warehouse: {home_path(args.home)}")
    return 0


def cmd_remove(args) -> int:
    from warehouse.remove import remove_sources

    removed = remove_sources(args.targets, args.home)
    for r in removed:
        print(f"removed {r.path} (sha256 {r.sha256[:12]}): {r.rows_accepted:,} rows, "
              f"{r.rows_quarantined:,} quarantined")
        if Path(r.path).exists():
            print(f"note: {r.path} is still on disk; ingesting it again (or materialize over its folder) "
                  "brings its rows back", file=sys.stderr)
    return 0


def cmd_verify(args) -> int:
    from warehouse.paths import WarehousePaths
    from warehouse.verify import frame, verify_home

    home = WarehousePaths.at(args.home).home
    found, left = verify_home(home, repair=args.repair)
    shown = left if args.repair else found
    sys.stdout.write(render(frame(shown), args.format))
    repaired = len(found) - len(left) if args.repair else 0
    print(f"{len(found)} bad data files" + (f", {repaired} repaired, {len(left)} left" if args.repair else "")
          + f"; warehouse {home}", file=sys.stderr)
    return 1 if shown else 0
