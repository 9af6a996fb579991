"""The one owner of the estimator's derived tables: built per (system, framework, version).

A partition's tables (`PARTITION_TABLES`: perf points, SOL calibration, grids,
build errors) are a pure function of that slice's perf points
(`build_partition`), persisted as

    derived/partitions/<system>/<framework>/<version>/<table>.parquet

with the partition's inputs hash in each file's Parquet footer
(`perfwh.inputs`): the sha256s of the raw logs that hold the slice's rows
(raw logs are content-addressed, so these name the content), the system spec
and the method versions. One freshness rule: a table whose footer hash differs
from the current one is rebuilt, alone with its partition, so a changed raw
log rebuilds only the slices it holds. The Dagster assets and `PerfDatabase`
both go through `DerivedStore`; there is no other fingerprint.

Every partition (and every op inside it) is built in its own try: a slice the
estimator cannot model (no system spec, too few points, a fit that does not
converge) lands in `build_errors` with its stage and reason, and only queries
for that slice fail (`SliceBuildError`), naming it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Callable
from urllib.parse import quote, unquote

import polars as pl

from warehouse.atomic import write_parquet_atomic
from warehouse.manifest import load_manifest
from warehouse.paths import WarehousePaths
from warehouse.schema import MEASUREMENT_SCHEMA, PERF_POINT_SCHEMA
from warehouse.tables import PARTITION, Store

from estimator.physics.calibrate import METHOD as CAL_METHOD
from estimator.grids.schema import METHOD as GRID_METHOD
from estimator.physics.specs import load_system
from estimator.derived.partition import (
    CALIBRATION_TABLE, ERRORS_TABLE, GRIDS_TABLE, INPUTS_KEY, LEDGER_KEY, LEGACY_FILES, MIN_FIT_POINTS,
    PARTITION_KEYS, POINTS_TABLE, SOURCES_SCHEMA, STORE_VERSION, SUB_SLICE, _table_names, _tables, _typed,
    build_partition, slice_key,
)


def _build_in_worker(home: str, key: tuple[str, str, str], shas: list[str], files: list[str]) -> tuple[str, str, str]:
    """One partition's build in a worker process (refresh with workers > 1); `files` are its
    raw logs' data files, so the worker need not load the ledger again."""
    DerivedStore(home, progress=False, say=lambda line: None).build(key, shas, files=files)
    return key


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """Pool initializer: end this worker when the process that started it is gone.

    A `perfwh materialize` killed with SIGKILL (no cleanup) left its two spawned build workers
    idle for good, each holding its imports (seen: still there minutes later). A daemon thread
    notices the new parent (init or a subreaper) within `every_s` and exits; a build it was in the
    middle of is lost, which is safe: partitions are written beside and renamed into place."""
    import os
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


# ---- persistence ------------------------------------------------------------------------------
def partition_dir(root: Path, key: tuple[str, str, str]) -> Path:
    """derived/partitions/<system>/<framework>/<version>: each part %-escaped (no '/' or '..' escapes)."""
    return root.joinpath(*(quote(str(k), safe="") or "%00" for k in key))


def inputs_hash(shas: list[str], system: str) -> str:
    """Identity of a partition's inputs: its raw logs' content, the system spec, the methods."""
    try:
        spec = repr(load_system(system))
    except Exception as exc:  # noqa: BLE001 - the missing spec is part of the identity
        spec = f"no spec: {exc}"
    h = hashlib.sha256()
    tables = [f"{t.name}:{t.version}" for t in _tables()]
    for part in (STORE_VERSION, CAL_METHOD, GRID_METHOD, str(MIN_FIT_POINTS), spec, *tables, *sorted(shas)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:20]


class DerivedStore:
    """The derived tables of one warehouse home, per (system, framework, version) partition."""

    def __init__(self, home=None, *, progress: bool | None = None, say: Callable[[str], None] | None = None):
        self.paths = WarehousePaths.at(home)
        self.root = self.paths.derived / "partitions"
        self.progress = progress  # tqdm bar: True always, None only on a terminal, False never
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._snapshot = None
        self._parts: dict | None = None

    # -- what the warehouse holds
    def _check_exists(self) -> Store:
        store = Store(self.paths.home)
        if not store.exists():
            raise FileNotFoundError(f"no warehouse at {self.paths.home}: run `perfwh ingest PATH` first "
                                    "(or pass --home / set PERFWH_HOME)")
        return store

    def _snap(self):
        if self._snapshot is None:
            self._check_exists()
            self._snapshot = load_manifest(self.paths).snapshot
        return self._snapshot

    def _files(self) -> pl.DataFrame:
        return self._snap().measurement_files

    def sources(self) -> pl.DataFrame:
        """(sha256, system, framework, version) of every live raw log: which partitions it feeds.

        Raw logs are content-addressed, so a log's partitions never change: only
        logs not seen before are read (three columns), and the index is kept in
        derived/partitions/_sources.parquet.
        """
        path = self.root / "_sources.parquet"
        try:
            cached = _typed(pl.read_parquet(path), SOURCES_SCHEMA) if path.exists() else None  # its columns, or rebuilt
            stamp = pl.read_parquet_metadata(path).get(LEDGER_KEY) if cached is not None else None
        except (pl.exceptions.PolarsError, OSError):  # a damaged index is rebuilt: it only caches the ledger
            cached = stamp = None
        if cached is not None and stamp == str(self._check_exists().table("ledger").version()):
            return cached  # fast path: the index already describes the current ledger version
        live = set(self._snap().live_shas) & set(self._files()["sha"].to_list())
        known = cached if cached is not None else pl.DataFrame(schema=SOURCES_SCHEMA)
        new = sorted(live - set(known["sha256"].to_list()))
        if new:
            files = self._files().filter(pl.col("sha").is_in(new))["path"].to_list()
            found = (pl.scan_parquet(files, hive_partitioning=True, hive_schema={PARTITION: pl.String},
                                     cast_options=pl.ScanCastOptions(categorical_to_string="allow"))
                     .select(pl.col(PARTITION).alias("sha256"),
                             *(pl.col(k).cast(pl.String) for k in PARTITION_KEYS))
                     .unique().collect())
            known = pl.concat([known, _typed(found, SOURCES_SCHEMA)])
        index = known.filter(pl.col("sha256").is_in(list(live))).sort(list(SOURCES_SCHEMA))
        write_parquet_atomic(index, path, metadata={LEDGER_KEY: str(self._snap().version)})
        return index

    def partitions(self) -> dict[tuple[str, str, str], list[str]]:
        """{(system, framework, version): sorted sha256s of the raw logs holding its rows}."""
        if self._parts is None:
            out: dict[tuple, list[str]] = {}
            for sha, *key in self.sources().iter_rows():
                out.setdefault(tuple(key), []).append(sha)
            self._parts = {k: sorted(v) for k, v in sorted(out.items())}
        return self._parts

    # -- freshness and reads
    def _path(self, key, table: str) -> Path:
        return partition_dir(self.root, key) / f"{table}.parquet"

    def _stored_hash(self, key, table: str) -> str | None:
        path = self._path(key, table)
        if not path.exists():
            return None
        try:
            return pl.read_parquet_metadata(path).get(INPUTS_KEY)
        except Exception:  # noqa: BLE001 - an unreadable file is a stale one
            return None

    def is_fresh(self, key, shas: list[str]) -> bool:
        want = inputs_hash(shas, key[0])
        return all(self._stored_hash(key, t) == want for t in _table_names())

    def stale(self) -> list[tuple[str, str, str]]:
        return [k for k, shas in self.partitions().items() if not self.is_fresh(k, shas)]

    def stale_inputs(self) -> dict[tuple[str, str, str], str]:
        """{stale partition: the inputs hash its rebuild will carry} (a run key that changes with its inputs)."""
        return {k: inputs_hash(shas, k[0]) for k, shas in self.partitions().items() if not self.is_fresh(k, shas)}

    def read(self, key, table: str) -> pl.DataFrame:
        return pl.read_parquet(self._path(key, table))

    def read_all(self, table: str) -> pl.DataFrame:
        """`table` over every live partition (call `refresh` first for current content)."""
        return self.read_many(self.partitions(), table)

    def read_many(self, keys, table: str) -> pl.DataFrame:
        """`table` over the partitions `keys` that have it (a slice no raw log feeds any more has none)."""
        schema = {t.name: t.schema for t in _tables()}[table]
        frames = [self.read(k, table) for k in keys if self._path(k, table).exists()]
        return _typed(pl.concat(frames, how="vertical_relaxed") if frames else None, schema)

    # -- builds
    def files_of(self, shas: list[str]) -> list[str]:
        """The data files of raw logs `shas`."""
        return self._files().filter(pl.col("sha").is_in(shas))["path"].to_list()

    def inputs_of(self, key) -> str | None:
        """The inputs hash of partition `key` as the warehouse holds it now (None: no such slice)."""
        shas = self.partitions().get(tuple(key))
        return None if shas is None else inputs_hash(shas, key[0])

    def points_of(self, shas: list[str], key, files: list[str] | None = None) -> pl.DataFrame:
        """The perf points of one partition, read from its raw logs' data files only."""
        from warehouse.read import perf_points_from  # pyarrow.dataset: only when building

        files = self.files_of(shas) if files is None else files
        if not files:
            return pl.DataFrame(schema=PERF_POINT_SCHEMA)
        lf = pl.scan_parquet(files, hive_partitioning=True, hive_schema={PARTITION: pl.String},
                             cast_options=pl.ScanCastOptions(categorical_to_string="allow"))
        lf = lf.select([pl.col(c).cast(t) for c, t in MEASUREMENT_SCHEMA.items()])
        for k, v in zip(PARTITION_KEYS, key):
            lf = lf.filter(pl.col(k) == v)
        return perf_points_from(lf)

    def build(self, key, shas: list[str], on_op: Callable[[str], None] | None = None,
              files: list[str] | None = None) -> dict[str, pl.DataFrame]:
        """Rebuild one partition from its raw logs and write its tables (build_errors last)."""
        tables = build_partition(self.points_of(shas, key, files), on_op)
        meta = {INPUTS_KEY: inputs_hash(shas, key[0])}
        for t in _tables():  # ERRORS_TABLE is last: a crash leaves the partition stale
            write_parquet_atomic(_typed(tables[t.name], t.schema), self._path(key, t.name), metadata=meta)
        return tables

    def refresh(self, keys=None, workers: int = 1) -> list[tuple[str, str, str]]:
        """Rebuild every stale partition (or the stale ones of `keys`); returns those rebuilt.

        Says so and shows a progress bar (stderr) when anything is rebuilt;
        removes the folders of partitions no live raw log feeds any more.
        `workers` > 1 builds that many partitions at once, each in its own
        process (partitions write disjoint folders, so builds never overlap).
        """
        parts = self.partitions()
        self._drop_dead(parts)
        todo = [k for k in (parts if keys is None else [k for k in keys if k in parts])
                if not self.is_fresh(k, parts[k])]
        if not todo:
            return []
        self.say(f"rebuilding derived tables of {len(todo)} of {len(parts)} partition(s) whose inputs changed"
                 + (f": {'/'.join(todo[0])}" if len(todo) == 1 else ""))
        from tqdm import tqdm

        bar = tqdm(todo, desc="derived", unit="partition", file=sys.stderr,
                   disable=None if self.progress is None else not self.progress)
        if workers > 1 and len(todo) > 1:
            self._build_parallel(todo, parts, workers, bar)
            return todo
        for key in bar:
            bar.set_postfix_str("/".join(key), refresh=False)
            self.build(key, parts[key], lambda op, key=key: bar.set_postfix_str(f"{'/'.join(key)} {op}"))
        bar.close()
        return todo

    def largest_first(self, keys, parts) -> list[tuple[str, str, str]]:
        """`keys` by the bytes of their raw logs' data files, largest first (ties by key).

        A partition's build time grows with its points, and its data files' size is known
        without reading them; starting the longest builds first keeps a short one, not a
        long one, for the end (less time with one worker busy and the others idle). The
        count of raw logs was a poor proxy: one published table can outweigh twenty logs."""
        size = dict(self._files().group_by("sha").agg(pl.col("bytes").sum()).iter_rows())
        return sorted(keys, key=lambda k: (-sum(size.get(s, 0) for s in parts[k]), k))

    def _build_parallel(self, todo, parts, workers: int, bar) -> None:
        """Largest partitions first (`largest_first`); spawned workers, as polars' thread pool
        does not survive fork."""
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        order = self.largest_first(todo, parts)
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                                 initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(_build_in_worker, str(self.paths.home), k, parts[k], self.files_of(parts[k]))
                       for k in order]
            for done in as_completed(futures):
                bar.set_postfix_str("/".join(done.result()), refresh=False)
                bar.update()
        bar.close()

    def slice_counts(self) -> pl.DataFrame:
        """(system, framework, version, op, points) of the built partitions (footer-cheap: perf points
        are counted, not recomputed from measurements; `refresh` first for current counts)."""
        cols = [*PARTITION_KEYS, "op"]
        scans = [pl.scan_parquet(self._path(k, POINTS_TABLE)).group_by(cols).agg(pl.len().alias("points"))
                 for k in self.partitions() if self._path(k, POINTS_TABLE).exists()]
        if not scans:
            return pl.DataFrame(schema={**{c: pl.String for c in cols}, "points": pl.UInt32})
        return pl.concat(pl.collect_all(scans)).sort(cols)

    def status(self) -> pl.DataFrame:
        """One row per live partition: key, current (inputs unchanged since its build), rows of
        perf points, slices not modelled (build_errors rows)."""
        rows = []
        for key, shas in self.partitions().items():
            fresh = self.is_fresh(key, shas)
            n = errs = None
            if self._path(key, POINTS_TABLE).exists():
                n = pl.scan_parquet(self._path(key, POINTS_TABLE)).select(pl.len()).collect().item()
            if self._path(key, ERRORS_TABLE).exists():
                errs = self.read(key, ERRORS_TABLE).height
            rows.append({"partition": slice_key(key), "current": fresh, "raw_logs": len(shas),
                         "perf_points": n, "build_errors": errs})
        return pl.DataFrame(rows, schema={"partition": pl.String, "current": pl.Boolean, "raw_logs": pl.Int64,
                                          "perf_points": pl.Int64, "build_errors": pl.Int64})

    def _drop_dead(self, parts) -> None:
        for name in LEGACY_FILES:  # whole-warehouse tables and fingerprint of the previous layout
            p = (self.paths.derived / name).resolve()
            if p.exists():
                p.unlink()
        if not self.root.exists():
            return
        live = {partition_dir(self.root, k) for k in parts}
        for leaf in self.root.glob("*/*/*"):
            if leaf.is_dir() and leaf not in live:
                shutil.rmtree(leaf, ignore_errors=True)

    def load(self, key, tables=(CALIBRATION_TABLE, GRIDS_TABLE, ERRORS_TABLE)) -> dict[str, pl.DataFrame]:
        """One partition's tables, rebuilt first when its inputs changed (only this partition)."""
        parts = self.partitions()
        if key not in parts:
            raise KeyError(f"no data for {'/'.join(key)} in the warehouse at {self.paths.home}")
        if not self.is_fresh(key, parts[key]):
            self.refresh([key])
        return {t: self.read(key, t) for t in tables}


def slice_error(errors: pl.DataFrame, op: str | None = None, **sub_slice) -> str | None:
    """The reason a partition (op None: its spec), one op of it, or one sub-slice of the op
    (`sub_slice`: architecture / gemm_type / kv_cache_dtype of a query; None: any) could not
    be built."""
    if errors.height == 0:
        return None
    hit = errors.filter((pl.col("op") == "") & (pl.col("stage") == "spec"))
    if hit.height == 0 and op is not None:
        hit = errors.filter(pl.col("op") == op)
        for col, value in sub_slice.items():
            if value is not None:
                hit = hit.filter(pl.col(col).is_null() | (pl.col(col) == value))
    if hit.height == 0:
        return None
    r = hit.row(0, named=True)
    what = "/".join(str(r[k]) for k in PARTITION_KEYS) + (f" {r['op']}" if r["op"] else "")
    detail = ", ".join(f"{c}={r[c]}" for c in SUB_SLICE if r.get(c) is not None)
    return f"{what}{f' ({detail})' if detail else ''} could not be modelled ({r['stage']} stage): {r['reason']}"


def partition_keys(root: Path) -> list[tuple[str, str, str]]:
    """The (system, framework, version) of every partition folder under `root` (for views)."""
    return [tuple(unquote(p) for p in leaf.relative_to(root).parts) for leaf in sorted(root.glob("*/*/*"))
            if leaf.is_dir()]
