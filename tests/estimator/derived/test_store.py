"""Per-slice isolation and partitioned derived builds (estimator.derived.store).

A slice the estimator cannot model (a system without a spec, an op with too
few points) is recorded in `build_errors`; only its own queries fail, with that
reason, and every other query answers exactly as in a warehouse without it.
A changed raw log rebuilds only the partition it feeds.
"""

import os
import sys

import polars as pl
import pytest

from perfwh.cli import main

from ..conftest import synthetic_points, write_collector_csv

SHAPES = [("dsa_context", 3, 100, 48), ("dsa_generation", 2, 300, 64), ("mla_context", 64, 4096, 128),
          ("mla_generation", 1, 70000, 32)]
TRT = ("h200_sxm", "trtllm", "1.0")
VLLM = ("h200_sxm", "vllm", "0.1")


def _good(raw):
    return write_collector_csv(synthetic_points(), raw / "h200_sxm" / "trtllm" / "1.0")


def _unknown_system(raw):
    """Rows of an H20 (a system the warehouse accepts but no spec describes)."""
    files = write_collector_csv(synthetic_points(ops=("mla_context",)), raw / "h20" / "trtllm" / "1.0")
    for f in files:
        f.write_text(f.read_text().replace("NVIDIA H200", "NVIDIA H20"))
    return files


def _broken(raw, scale=1.0):
    """vllm 0.1: mla_generation is fine except its nvfp4 GEMM rows (a precision the SOL model
    lacks), dsa_context has two points (too few to fit)."""
    pts = synthetic_points(ops=("mla_generation", "dsa_context")).with_columns(
        pl.lit("0.1").alias("version"), pl.col("latency_ms") * scale)
    mla = pts.filter(pl.col("op") == "mla_generation")
    pts = pl.concat([mla, mla.with_columns(pl.lit("nvfp4").alias("gemm_type")),
                     pts.filter(pl.col("op") == "dsa_context").head(2)])
    files = write_collector_csv(pts, raw / "h200_sxm" / "vllm" / "0.1")
    for f in files:
        f.write_text(f.read_text().replace("TRTLLM", "VLLM"))
    return files


def _ingest(files, home):
    from warehouse.ingest import ingest_paths

    report = ingest_paths(files, home)
    assert report.rows_quarantined == 0


def _answers(home) -> list:
    from estimator.lookup.database import PerfDatabase

    db = PerfDatabase("h200_sxm", "trtllm", home=home)
    out = [db.estimate(op, batch_size=b, s=s, num_heads=h) for op, b, s, h in SHAPES]
    frame = pl.DataFrame({"batch_size": [1, 7, 64], "isl": [50, 900, 20000], "num_heads": [16, 40, 128]})
    return [(e.latency_ms, e.source, e.sol_ms, e.neighbours) for e in out] + [db.estimate_many("dsa_context", frame)]


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    root = tmp_path_factory.mktemp("iso")
    raw = root / "raw"
    clean, mixed = root / "clean", root / "mixed"
    _ingest(_good(raw), clean)
    _ingest(_good(raw) + _unknown_system(raw) + _broken(raw), mixed)
    return clean, mixed, raw


def test_other_queries_answer_exactly_as_before(homes):
    clean, mixed, _ = homes
    want, got = _answers(clean), _answers(mixed)
    assert got[:-1] == want[:-1]
    assert got[-1].equals(want[-1])


def test_build_errors_name_the_slice_stage_and_reason(homes):
    from estimator.derived.store import DerivedStore

    _, mixed, _ = homes
    store = DerivedStore(mixed)
    store.refresh()
    errors = store.read_all("build_errors").sort("system", "op")
    assert errors.select("system", "framework", "version", "op", "gemm_type", "stage").rows() == [
        ("h20", "trtllm", "1.0", "", None, "spec"), ("h200_sxm", "vllm", "0.1", "dsa_context", None, "calibration"),
        ("h200_sxm", "vllm", "0.1", "mla_generation", "nvfp4", "sol")]
    assert "unknown system 'h20'" in errors["reason"][0] and "too few points" in errors["reason"][1]
    assert errors["reason"][2] == "KeyError: 'nvfp4'"
    assert store.read(VLLM, "grids")["op"].unique().to_list() == ["mla_generation"]  # the rest of the slice builds
    from warehouse.read import sql

    assert sql("select count(*) as n from build_errors", mixed)["n"][0] == 3  # the SQL view unions the partitions


def test_only_the_broken_slice_fails_with_its_reason(homes):
    from estimator.lookup.database import PerfDatabase
    from estimator.derived.partition import SliceBuildError

    _, mixed, _ = homes
    db = PerfDatabase("h200_sxm", "vllm", "0.1", home=mixed)
    assert db.estimate("mla_generation", batch_size=2, s=256, num_heads=64).source.value == "measured"
    with pytest.raises(SliceBuildError, match=r"h200_sxm/vllm/0.1 dsa_context could not be modelled "
                                              r"\(calibration stage\): too few points"):
        db.estimate("dsa_context", batch_size=2, s=300, num_heads=64)
    # the nvfp4 rows of mla_generation are a sub-slice: only a query for that precision is refused
    from estimator.derived.store import slice_error

    arch = {"architecture": "DeepseekV3ForCausalLM", "kv_cache_dtype": "bfloat16"}
    assert slice_error(db.build_errors, "mla_generation", gemm_type="bfloat16", **arch) is None
    assert slice_error(db.build_errors, "mla_generation", gemm_type="nvfp4", **arch) == (
        "h200_sxm/vllm/0.1 mla_generation (architecture=DeepseekV3ForCausalLM, gemm_type=nvfp4, "
        "kv_cache_dtype=bfloat16) could not be modelled (sol stage): KeyError: 'nvfp4'")


def test_cli_names_the_reason_in_one_line(homes, capsys):
    _, mixed, _ = homes
    argv = ["--home", str(mixed), "-b", "2", "-s", "64", "--num-heads", "64"]
    assert main(["query", "dsa_context", "--backend", "vllm"] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "could not be modelled (calibration stage): too few points" in err
    assert main(["query", "mla_context", "--system", "h20"] + argv) == 2
    assert "unknown system 'h20'" in capsys.readouterr().err
    assert main(["query", "mla_context"] + argv) == 0  # h200 / trtllm is served


def test_one_changed_file_rebuilds_only_its_partition(homes, tmp_path):
    from estimator.derived.partition import INPUTS_KEY
    from estimator.derived.store import DerivedStore

    _, mixed, _ = homes
    store = DerivedStore(mixed)
    store.refresh()
    assert store.stale() == []
    trt_files = {t: store._path(TRT, t) for t in ("grids", "sol_calibration", "perf_points")}
    before = {t: (p.stat().st_mtime_ns, pl.read_parquet_metadata(p)[INPUTS_KEY]) for t, p in trt_files.items()}
    vllm_before = pl.read_parquet_metadata(store._path(VLLM, "grids"))[INPUTS_KEY]
    changed = [f for f in _broken(tmp_path / "raw", scale=1.1) if "mla_generation" in f.name]
    _ingest(changed, mixed)
    store = DerivedStore(mixed)
    assert store.stale() == [VLLM]
    assert store.refresh() == [VLLM]
    assert {t: (p.stat().st_mtime_ns, pl.read_parquet_metadata(p)[INPUTS_KEY]) for t, p in trt_files.items()} == before
    assert pl.read_parquet_metadata(store._path(VLLM, "grids"))[INPUTS_KEY] != vllm_before
    assert store.refresh() == []


@pytest.mark.parametrize("damage", [lambda f: f.write_bytes(os.urandom(3000)), lambda f: f.write_bytes(b"PAR1"),
                                    lambda f: pl.DataFrame({"x": [1]}).write_parquet(f)],  # a Parquet, not the index
                         ids=["random", "magic-only", "other-columns"])
def test_a_damaged_sources_index_is_rebuilt_from_the_ledger(damage, tmp_path):
    """derived/partitions/_sources.parquet is a cache of the ledger; garbage in it made every
    PerfDatabase (and `perfwh query`) die with a polars ComputeError traceback."""
    from estimator.derived.store import DerivedStore

    home = tmp_path / "wh"
    _ingest(_good(tmp_path / "raw"), home)
    DerivedStore(home).refresh()
    index = home / "derived" / "partitions" / "_sources.parquet"
    want = DerivedStore(home).partitions()
    damage(index)
    assert DerivedStore(home).partitions() == want == {TRT: want[TRT]}
    assert pl.read_parquet(index).height == len(want[TRT])  # and written back whole


def test_a_table_added_to_partition_tables_is_built_for_every_partition(homes, monkeypatch):
    import estimator.derived.partition as partition_mod
    from estimator.lookup.database import PerfDatabase
    from estimator.derived.store import DerivedStore
    from estimator.derived.partition import PartitionTable

    _, mixed, _ = homes
    DerivedStore(mixed).refresh()

    def counts(points, tables):  # a stand-in for e.g. an interval model: one row per op with a grid
        if points["system"][0] == "h200_sxm" and points["framework"][0] == "vllm":
            raise RuntimeError("no held-out points")
        return tables["grids"].group_by("op").len().rename({"len": "cells"})

    extra = PartitionTable("op_cells", {"op": pl.String(), "cells": pl.UInt32()}, counts)
    monkeypatch.setattr(partition_mod, "PARTITION_TABLES", [*partition_mod.PARTITION_TABLES, extra])
    store = DerivedStore(mixed)
    assert sorted(store.stale()) == sorted(store.partitions())  # a new table: every partition is stale
    store.refresh()
    cells = store.read(TRT, "op_cells").sort("op")
    assert cells["op"].to_list() == ["dsa_context", "dsa_generation", "mla_context", "mla_generation"]
    errors = store.read(VLLM, "build_errors").filter(pl.col("stage") == "op_cells")
    assert errors["reason"].to_list() == ["RuntimeError: no held-out points"]
    # a failed added table does not take the partition's queries down
    db = PerfDatabase("h200_sxm", "vllm", "0.1", home=mixed)
    assert db.estimate("mla_generation", batch_size=2, s=256, num_heads=64).source.value == "measured"


def test_parallel_builds_start_with_the_largest_partition(homes):
    from pathlib import Path

    from estimator.derived.store import DerivedStore

    _, mixed, _ = homes
    store = DerivedStore(mixed)
    parts = store.partitions()
    order = store.largest_first(list(parts), parts)
    on_disk = [sum(Path(f).stat().st_size for f in store.files_of(parts[k])) for k in order]
    assert order[0] == TRT  # four ops of synthetic points; the others hold one or two
    assert sorted(order) == sorted(parts) and on_disk == sorted(on_disk, reverse=True) and on_disk[-1] < on_disk[0]


WORKER_SCRIPT = """
import multiprocessing as mp, os, time
from concurrent.futures import ProcessPoolExecutor
from estimator.derived.store import _exit_with_parent
if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_exit_with_parent,
                               initargs=(os.getpid(), 0.1))
    print(pool.submit(os.getpid).result(), flush=True)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_build_workers_exit_when_their_parent_is_killed(tmp_path):
    """`perfwh materialize` killed with SIGKILL used to leave its spawned build workers idle for good."""
    import signal
    import subprocess
    import time

    from tests.conftest import REPO

    script = tmp_path / "pool.py"
    script.write_text(WORKER_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    worker = int(parent.stdout.readline())
    assert _alive(worker)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 15
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker)
