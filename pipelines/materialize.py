"""Run the whole asset graph in this process: list the landing folder, ingest
new or changed raw logs (one run over their partition range), register the
warehouse's (system, framework, version) slices as `derived_slice` partitions,
run `derived_job` over the stale ones only (estimator.derived.store's freshness rule;
one run per contiguous range of stale keys, built `PERFWH_MAX_CONCURRENT` at
once), then `reports_job` once, and print every partition's status. When the
accuracy report's slice changed, a second process computes it while the
partitions build (pipelines.ahead) and the reports run adopts it.

When nothing is new and every derived partition is current, no run is launched
(and Dagster is not even imported). Runs are recorded in a persistent Dagster
instance ($DAGSTER_HOME, else <home>/dagster), so `dagster dev` with the same
DAGSTER_HOME shows them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from estimator.derived.store import DerivedStore
from estimator.derived.partition import slice_key
from warehouse.landing import check_home_outside, landing_mirrors
from warehouse.paths import WarehousePaths, resolve_home
from warehouse.views import refresh_views, views_built_here

from .ahead import report_ahead
from .instance import write_instance_config
from .state import landing_state, resolve_landing, stale_partitions

# Dagster's console logger prints each step failure with its stack trace; `perfwh materialize`
# reports failed steps itself, one line each (`step_failures`), so only CRITICAL gets through.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
INTERRUPTED = ("DagsterExecutionInterruptedError", "KeyboardInterrupt")
FINGERPRINT_KEY = "warehouse_fingerprint"
# Run tags that make one run cover a range of partitions (single-run backfill policy).
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@dataclass
class CheckOutcome:
    asset: str
    check: str
    passed: bool
    severity: str
    why: str = ""  # the check's numbers (what it counted, its threshold): why it warned or failed


@dataclass
class IngestTotals:
    files: int = 0  # files in the ingested partition range
    ingested: int = 0  # of which new or changed content
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    failed: int = 0  # files that could not be read at all


@dataclass
class MaterializeSummary:
    home: Path
    landing: str
    dagster_home: Path | None
    files_seen: int = 0
    ingested: IngestTotals = field(default_factory=IngestTotals)
    derived: str = "skipped"  # rebuilt | up to date | failed | skipped
    partitions_rebuilt: list = field(default_factory=list)  # (system, framework, version) of the derived build
    build_errors: int = 0  # slices (or parts of them) that could not be modelled (table build_errors)
    checks: list[CheckOutcome] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        blocking_failed = any(not c.passed and c.severity == "ERROR" for c in self.checks)
        return not self.failed_runs and not blocking_failed


def open_instance(home: Path):
    """$DAGSTER_HOME's instance, else a persistent one under <home>/dagster; a missing
    folder or dagster.yaml is created from settings (pipelines.instance)."""
    import dagster as dg

    folder = Path(os.environ.get("DAGSTER_HOME") or WarehousePaths.at(home).local / "dagster").expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "dagster.yaml").exists():
        write_instance_config(folder)
    return dg.DagsterInstance.from_config(str(folder))


def _why(metadata: dict) -> str:
    """The scalar metadata of a check evaluation (counts, thresholds) as `name value, ...`."""
    parts = []
    for name, value in metadata.items():
        v = value.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        parts.append(f"{name} {v:,}" if isinstance(v, int) else f"{name} {v:.4g}")
    return ", ".join(parts)


def _checks(result) -> list[CheckOutcome]:
    return [
        CheckOutcome(e.asset_key.to_user_string(), e.check_name, e.passed, e.severity.value, _why(e.metadata))
        for e in result.get_asset_check_evaluations()
    ]


def _errors(result):
    """(step, error chain) of every failure event of a run."""
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        chain = []
        while error is not None:
            chain.append(error)
            error = error.cause
        if chain:
            yield event.step_key or "run", chain


def stop_if_interrupted(result) -> None:
    """Ctrl-C inside a Dagster step becomes a failed step; turn it back into KeyboardInterrupt so that
    nothing runs after it (the ledger keeps what was committed; the next run does the rest)."""
    if any(e.cls_name in INTERRUPTED for _, chain in _errors(result) for e in chain):
        raise KeyboardInterrupt


def step_failures(result) -> list[str]:
    """One line per failed step: its name and the innermost error's first line."""
    lines = []
    for step, chain in _errors(result):
        msg = (chain[-1].message or chain[-1].cls_name or "").strip().splitlines()
        line = f"step {step} failed: {msg[0] if msg else 'unknown error'}"
        if line not in lines:
            lines.append(line)
    return lines


def _ingest_metadata(result, key) -> dict | None:
    """The measurements metadata of an ingest run, also when the step failed (a file could not be read)."""
    for event in result.get_asset_materialization_events():
        if event.asset_key == key:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    for event in result.all_events:
        if event.is_step_failure and event.step_key == key.to_user_string():
            failure = event.step_failure_data.user_failure_data
            if failure is not None:
                return {k: v.value for k, v in failure.metadata.items()}
    return None


def _views_built(home: Path) -> bool:
    """The reports a derived run writes besides the partitions (a home never materialized has none)."""
    from warehouse.derived import derived_tables

    return "accuracy_report" in derived_tables(home)


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags of one run over the partitions first..last (none for a single partition)."""
    return {} if first == last else {RANGE_START: first, RANGE_END: last}


def register_slices(instance, store, todo: list) -> list[tuple[str, str]]:
    """Registers every slice of `store` as a derived_slice partition (new ones appended)
    and returns the runs for `todo`: (first, last) key ranges, in registration order,
    that hold the `todo` partitions and no other."""
    from assets.constants import SLICE_PARTITIONS

    known = instance.get_dynamic_partitions(SLICE_PARTITIONS.name)
    new = [k for k in map(slice_key, store.partitions()) if k not in set(known)]
    if new:
        instance.add_dynamic_partitions(SLICE_PARTITIONS.name, new)
    wanted = set(map(slice_key, todo))
    ranges: list[list[str]] = []
    previous_wanted = False
    for key in [*known, *new]:
        if key in wanted:
            if previous_wanted:
                ranges[-1][1] = key
            else:
                ranges.append([key, key])
        previous_wanted = key in wanted
    return [tuple(r) for r in ranges]


def partition_table(status, rebuilt: set[str]) -> str:
    """Per-partition status lines: key, rebuilt in this run or current, perf points, slices not modelled."""
    lines = [f"  {'partition':<44} {'status':<10} {'points':>8} {'not modelled':>12}"]
    for row in status.iter_rows(named=True):
        state = "rebuilt" if row["partition"] in rebuilt else ("current" if row["current"] else "STALE")
        lines.append(f"  {row['partition']:<44} {state:<10} {row['perf_points'] or 0:>8,} {row['build_errors'] or 0:>12}")
    return "\n".join(lines)


def _has_measurements(home: Path) -> bool:
    from warehouse.read import snapshot

    try:
        return bool(snapshot(home).files("measurements"))
    except FileNotFoundError:
        return False


def run_materialize(
    home: str | None = None,
    landing: str | None = None,
    *,
    force: bool = False,
    progress: Callable[[str], None] = print,
) -> MaterializeSummary:
    started = time.perf_counter()
    wh_home = resolve_home(home)
    landing = resolve_landing(landing)
    if Path(landing).is_dir():
        check_home_outside(Path(landing), wh_home)
    progress(f"landing: {landing}")
    if Path(landing).is_dir():  # a local folder: apply its policy for deleted raw logs ($PERFWH_ON_DELETE)
        from warehouse.remove import retire_deleted

        for gone in retire_deleted(Path(landing), wh_home):
            progress(f"retired {gone.path}: deleted from the landing folder ({gone.rows_accepted:,} rows)")
    state = landing_state(wh_home, landing)
    summary = MaterializeSummary(home=wh_home, landing=landing, dagster_home=None, files_seen=len(state.files))
    mirrors = landing_mirrors(landing)
    also = f" (+{len(mirrors)} CSV mirrors of JSONL run logs, not ingested twice)" if mirrors else ""
    progress(f"{len(state.files)} raw logs{also}, {len(state.pending)} new or changed")
    if not force and not state.pending and not state.stale_partitions and _views_built(wh_home):
        summary.derived = "up to date"
        progress("nothing to do: no new raw logs, derived tables built from the current warehouse")
        if not views_built_here(wh_home):
            refresh_views(wh_home)
            progress("perf.duckdb rebuilt: its views read another folder (a copied or moved warehouse)")
        summary.seconds = time.perf_counter() - started
        return summary

    # a worker that imports the accuracy report's code now, while this process ingests (pipelines.ahead);
    # told its slice once the partitions build, or stopped (its stdin closes with this process at the latest)
    ahead = report_ahead(wh_home, [f.key for f in state.pending])

    from assets.constants import RAW_LOG_PARTITIONS
    from assets.ingest import measurements, raw_log_files
    from warehouse.landing import fingerprint
    from warehouse.manifest import load_manifest
    from warehouse.paths import WarehousePaths

    from .definitions import build_defs
    from .settings import warehouse_settings

    settings = warehouse_settings(str(wh_home), landing, use_env_var=False)
    instance = open_instance(wh_home)
    summary.dagster_home = Path(instance.root_directory)
    defs = build_defs(settings)
    ingest_job = defs.resolve_job_def("ingest_job")
    derived_job = defs.resolve_job_def("derived_job")
    reports_job = defs.resolve_job_def("reports_job")
    known = instance.get_dynamic_partitions(RAW_LOG_PARTITIONS.name)
    new_keys = [f.key for f in state.files if f.key not in set(known)]
    if new_keys:
        instance.add_dynamic_partitions(RAW_LOG_PARTITIONS.name, new_keys)
    todo = state.pending
    t0 = time.perf_counter()
    if todo:
        progress(f"ingesting {len(todo)} raw logs ...")
        # One run over the partition range that spans every pending file;
        # unchanged files inside the range are skipped by their sha256.
        order = {k: i for i, k in enumerate(instance.get_dynamic_partitions(RAW_LOG_PARTITIONS.name))}
        keys = sorted((f.key for f in todo), key=order.__getitem__)
        result = ingest_job.execute_in_process(
            instance=instance,
            run_config=QUIET_LOGS,
            tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
            raise_on_error=False,
        )
    else:
        result = ingest_job.execute_in_process(
            instance=instance, asset_selection=[raw_log_files.key], run_config=QUIET_LOGS, raise_on_error=False
        )
    stop_if_interrupted(result)
    summary.checks += _checks(result)
    if not result.success:
        summary.failed_runs.append(f"ingest_job ({result.run_id})")
        progress(f"ingest FAILED (run {result.run_id})")
        for line in step_failures(result):
            progress(line)
    meta = _ingest_metadata(result, measurements.key)
    if meta:
        summary.ingested = IngestTotals(
            files=meta["files"], ingested=meta["files_ingested"] + meta["files_replaced"],
            rows_read=meta["rows_read"], rows_accepted=meta["rows_accepted"],
            rows_quarantined=meta["rows_quarantined"], failed=meta["files_failed"],
        )  # fmt: skip
        progress(meta["preview"])
        progress(
            f"ingested {summary.ingested.ingested} of {summary.ingested.files} files, {summary.ingested.failed} failed: "
            f"{summary.ingested.rows_read:,} rows read = {summary.ingested.rows_accepted:,} accepted "
            f"+ {summary.ingested.rows_quarantined:,} quarantined ({time.perf_counter() - t0:.1f} s)"
        )
        if "failed_files" in meta:
            progress("failed files:\n" + meta["failed_files"])

    current = fingerprint(load_manifest(WarehousePaths.at(wh_home)))
    store = DerivedStore(wh_home)
    stale = stale_partitions(wh_home)
    have = _has_measurements(wh_home)
    ranges = register_slices(instance, store, stale if not force else list(store.partitions())) if have else []
    if not ranges and _views_built(wh_home):
        summary.derived = "up to date"
        progress("derived tables are up to date (no partition's inputs changed)")
    elif not have:
        summary.derived = "not built (no accepted measurements)"
        progress("derived tables not built: the warehouse holds no accepted measurements")
    else:
        progress(f"building perf_points, sol_calibration, interpolation_grids of {len(stale)} stale partition(s) "
                 f"({settings.workers()} at once, in {len(ranges)} run(s)), then accuracy_report, warehouse_views ...")
        t0 = time.perf_counter()
        if ahead:
            ahead.start()  # the second core cross-validates while the first builds
        results = []
        try:
            for first, last in ranges:
                results.append(derived_job.execute_in_process(
                    instance=instance, run_config=QUIET_LOGS, raise_on_error=False,
                    tags={FINGERPRINT_KEY: current, **range_tags(first, last)},
                    partition_key=first if first == last else None))
                stop_if_interrupted(results[-1])
            t1 = time.perf_counter()
            if all(r.success for r in results):
                if ahead:
                    ahead.wait()
                # the measurement checks ran in this ingest run already: not a second time
                only = {"asset_selection": [k for k in reports_job.asset_layer.selected_asset_keys
                                            if k != measurements.key]} if todo else {}
                results.append(reports_job.execute_in_process(instance=instance, run_config=QUIET_LOGS,
                                                              tags={FINGERPRINT_KEY: current}, raise_on_error=False,
                                                              **only))
                stop_if_interrupted(results[-1])
        finally:
            if ahead:
                ahead.stop()
        failed = [f"{r.job_def.name} ({r.run_id})" for r in results if not r.success]
        for result in results:
            summary.checks += _checks(result)
        summary.failed_runs += failed
        for result in results:
            if not result.success:
                for line in step_failures(result):
                    progress(line)
        summary.derived = "failed" if failed else "rebuilt"
        progress(f"derived tables {summary.derived} ({t1 - t0:.1f} s partitions, "
                 f"{time.perf_counter() - t1:.1f} s reports)")
        if not failed:
            status = DerivedStore(wh_home).status()
            summary.partitions_rebuilt = stale
            summary.build_errors = int(status["build_errors"].sum() or 0)
            names = ", ".join("/".join(k) for k in stale[:5]) + (f", +{len(stale) - 5} more" if len(stale) > 5 else "")
            progress(f"derived partitions rebuilt: {len(stale)} of {status.height}"
                     + (f" ({names})" if stale else "")
                     + (f"; {summary.build_errors} slice(s) not modelled: see table build_errors"
                        if summary.build_errors else ""))
            progress(partition_table(status, {slice_key(k) for k in stale}))
    if ahead:
        ahead.stop()
    summary.seconds = time.perf_counter() - started
    return summary
