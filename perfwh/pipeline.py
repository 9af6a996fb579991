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


class PhaseProgress:
    """Progress lines of `run_materialize` on stderr. On a terminal, a line ending in "..." (a long
    phase: the ingest run, the derived build) shows a rich spinner with the time elapsed until the
    next line; elsewhere (logs, CI, pipes) every line is printed as it comes.

    It is also where Ctrl-C takes effect: inside the block SIGINT only sets a flag, and the next
    progress line (every phase boundary) raises KeyboardInterrupt. A KeyboardInterrupt raised at an
    arbitrary instruction could land inside Dagster's run storage (SQLAlchemy) and surface as an
    unrelated traceback; inside a Dagster run, Dagster's own handler stops the step
    (pipelines.materialize.stop_if_interrupted). Dagster's handler raises at whatever instruction
    runs; where that is a finalizer or weakref callback (seen: SQLAlchemy's `_collection_gced`),
    Python prints "Exception ignored in ..." and goes on, and the run used to finish as if no
    Ctrl-C had come (exit 0). Such an interrupt now reaches `sys.unraisablehook`, which sets the
    flag instead of printing the traceback."""

    def __init__(self) -> None:
        self.live = None
        self.tty = sys.stderr.isatty()
        self.interrupted = False
        self._old = None
        self._old_hook = None

    def _on_sigint(self, _signo, _frame) -> None:
        self.interrupted = True

    def _on_unraisable(self, unraisable) -> None:
        if unraisable.exc_type is not None and (issubclass(unraisable.exc_type, KeyboardInterrupt)
                                                or unraisable.exc_type.__name__ == "DagsterExecutionInterruptedError"):
            self.interrupted = True
            return
        self._old_hook(unraisable)

    def check(self) -> None:
        if self.interrupted:
            raise KeyboardInterrupt

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._on_sigint)
        self._old_hook, sys.unraisablehook = sys.unraisablehook, self._on_unraisable
        return self

    def __exit__(self, *exc) -> None:
        import signal

        self._stop()
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        if self._old_hook is not None:
            sys.unraisablehook, self._old_hook = self._old_hook, None

    def _stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def __call__(self, line: str) -> None:
        self._stop()
        self.check()
        if self.tty and line.endswith("..."):
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.table import Column

            self.live = Progress(SpinnerColumn(), TimeElapsedColumn(table_column=Column(min_width=7, no_wrap=True)),
                                 TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis")),
                                 console=Console(stderr=True), transient=False)
            self.live.add_task(line, total=None)
            self.live.start()
        else:
            print(line, file=sys.stderr, flush=True)


def cmd_materialize(args) -> int:
    import logging

    from pipelines.materialize import run_materialize

    # A Ctrl-C that lands while Dagster's run storage closes a connection is logged by SQLAlchemy
    # with its stack trace before it reaches us; the interrupt itself is reported in one line (cli.main).
    logging.getLogger("sqlalchemy.pool").setLevel(logging.CRITICAL)

    with PhaseProgress() as progress:
        s = run_materialize(args.home, args.landing, force=args.force, progress=progress)
        progress.check()
    t = s.ingested
    print(
        f"{s.files_seen} raw logs seen, {t.ingested} ingested (rows {t.rows_read:,} read = {t.rows_accepted:,} "
        f"accepted + {t.rows_quarantined:,} quarantined); derived tables {s.derived}; {s.seconds:.2f} s"
    )
    latest = {(c.asset, c.check): c for c in s.checks}  # measurement checks run in both jobs
    for c in latest.values():
        if not c.passed:
            why = f" ({c.why})" if c.why else ""
            print(f"check {c.asset}/{c.check}: {'FAILED' if c.severity == 'ERROR' else 'warning'}{why}")
    if latest:
        print(f"checks: {sum(c.passed for c in latest.values())}/{len(latest)} passed")
    for run in s.failed_runs:
        print(f"failed run: {run}", file=sys.stderr)
    print(f"warehouse {s.home}" + (f"; Dagster runs in {s.dagster_home}" if s.dagster_home else ""))
    if s.files_seen == 0:
        print(f"warning: no raw logs in the landing folder {s.landing}", file=sys.stderr)
        return 1
    if s.derived.startswith("not built"):
        print("warning: no accepted measurements: every row read was quarantined "
              "(perfwh sql \"select source_file, reason from quarantine\")", file=sys.stderr)
        return 1
    return 0 if s.ok else 1
