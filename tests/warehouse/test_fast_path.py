"""The fast ingest path (parallel block reader, `certify`, Categorical storage)
must give exactly what the exact path gives, and hand anything unusual to it."""

from __future__ import annotations

import threading

import duckdb
import polars as pl
import pytest

from tests.conftest import HEADER, dsa_context_row, dsa_generation_row, write_log
from warehouse.certify import certify
from warehouse.ingest import ingest_paths
from warehouse.manifest import load_manifest
from warehouse.paths import WarehousePaths
from warehouse.prefetch import Prefetch
from warehouse.read import read_measurements
from warehouse.readers import read_collector_csv
from warehouse.validate import context_for, validate

KERNEL_HEADER = "framework,version,device,op_name,kernel_source,mla_dtype,kv_cache_dtype,num_heads,batch_size,isl,tp_size,step,latency"


def _fast_frame(path):
    (chunk,) = read_collector_csv(path)
    assert chunk.block is not None, "expected the fast reader to take this log"
    return chunk.frame


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(pl.Categorical).cast(pl.String))


CLEAN_LOGS = {
    "context, mixed dtypes": (
        "dsa_context_module_perf.txt", HEADER,
        [dsa_context_row(batch=b, isl=16 << b, step=s, kv=kv, gemm=g, latency=0.1 + b)
         for b in range(1, 6) for s in (0, 128) for kv in ("bfloat16", "fp8") for g in ("bfloat16", "fp8_block")],
    ),
    "generation": (
        "dsa_generation_module_perf.txt", HEADER,
        [dsa_generation_row(batch=b, kv_len=1024 * b, heads=h) for b in (1, 8, 64) for h in (16, 128)],
    ),
    "skip_indexer variant": (
        "dsa_context_module_perf.txt", HEADER,
        [dsa_context_row(isl=i).replace("dsa_context_module,", "dsa_context_module_skip_indexer,") for i in (512, 1024)],
    ),
    "kernel table, no gemm/model columns": (
        "context_mla_perf.txt", KERNEL_HEADER,
        [f"TRTLLM,1.0,NVIDIA H200,mla_context,default,bfloat16,bfloat16,{h},1,{i},1,0,0.0{h}" for h in (64, 128) for i in (16, 32)],
    ),
    "upper-case dtypes, extra power column, unknown device (folder says the system)": (
        "dsa_context_module_perf.txt", HEADER + ",power",
        [dsa_context_row(isl=i, kv="BFloat16").replace("NVIDIA H200", "Some GPU") + ",650.5" for i in (128, 256)],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", CLEAN_LOGS)
def test_certify_equals_exact_validation(raw_dir, name):
    stem, header, lines = CLEAN_LOGS[name]
    f = write_log(raw_dir / stem, lines, header=header)
    frame = _fast_frame(f)
    ctx = context_for(f)
    fast, rest = certify(frame, ctx)
    assert rest.height == 0, "certify handed back rows of a clean log"
    exact, bad = validate(_as_text(frame), ctx)
    assert bad.height == 0 and fast.height == len(lines)
    assert _as_text(fast).equals(exact)


BAD_LINES = [
    dsa_context_row(batch=0),                          # out of range
    dsa_context_row(latency="-1.5"),                   # non-positive
    dsa_context_row(latency="nan"),                    # NaN parses as a float
    dsa_context_row(kv="int4"),                        # unknown dtype
    dsa_context_row().replace("dsa_context_module,", "foo_module,"),  # unknown op
    dsa_context_row().replace("TRTLLM", "Tensor RT"),  # invalid framework name
    dsa_context_row(batch=0, kv="int4"),               # two faults in one row
]  # fmt: skip


@pytest.mark.parametrize("line", BAD_LINES)
def test_certify_hands_back_only_the_rows_that_break_a_rule(raw_dir, line):
    lines = [dsa_context_row(isl=i) for i in (128, 256, 512)] + [line]
    f = write_log(raw_dir / "dsa_context_module_perf.txt", lines)
    good, rest = certify(_fast_frame(f), context_for(f))
    assert good.get_column("source_line").to_list() == [2, 3, 4]
    assert rest.get_column("source_line").to_list() == [5]


def _ingest_result(f, home, monkeypatch, *, exact=False, chunk_bytes=None):
    """(rows read, accepted measurements, quarantine) of ingesting `f` into a fresh `home`,
    by the fast path or the exact line path, with an optional block size."""
    import functools

    from warehouse import ingest, readers
    from warehouse.read import sql

    with monkeypatch.context() as m:
        if exact:
            m.setattr(readers, "_parse_block_fast", lambda *a: None)
        if chunk_bytes:
            m.setitem(ingest.READERS, "csv", functools.partial(read_collector_csv, chunk_bytes=chunk_bytes))
        report = ingest_paths([f], home)
    assert not report.failed, report.failed
    assert report.rows_read == report.rows_accepted + report.rows_quarantined
    q = sql("select source_line, raw, reason from quarantine order by source_line", home)
    return report.rows_read, read_measurements(home).drop("ingested_at").sort("source_line"), q


def _assert_same_everywhere(f, tmp_path, monkeypatch, chunk_sizes=(None, 64, 200)):
    """Fast and exact path, at every block size, give the same rows and reasons."""
    want = _ingest_result(f, tmp_path / "exact", monkeypatch, exact=True)
    for i, chunk in enumerate(chunk_sizes):
        for exact in (False, True):
            got = _ingest_result(f, tmp_path / f"wh{i}{exact}", monkeypatch, exact=exact, chunk_bytes=chunk)
            assert got[0] == want[0] and got[1].equals(want[1]) and got[2].equals(want[2]), (chunk, exact)
    return want


def test_sprinkled_bad_rows_give_what_the_line_path_gives(raw_dir, tmp_path, monkeypatch):
    """Same measurements and the same quarantine reasons, row for row."""
    lines = [dsa_context_row(batch=1 + i % 5, isl=16 * (i + 1), latency=0.5 + i) for i in range(200)]
    for k, bad in enumerate(BAD_LINES):
        lines[7 + 25 * k] = bad
    f = write_log(raw_dir / "dsa_context_module_perf.txt", lines)
    read, good, quarantined = _assert_same_everywhere(f, tmp_path, monkeypatch, chunk_sizes=(None,))
    assert quarantined.height == len(BAD_LINES) and good.height == 200 - len(BAD_LINES)


# Inputs found by an adversarial review where the fast path, or the exact path
# at another block size, gave other rows than the exact path.
def _renamed(header: str, old: str, new: str) -> str:
    return header.replace(f",{old}", f",{new}")


ODD_LOGS = {
    "lone CR after a number": [
        HEADER, dsa_context_row(batch="3\r"), ",".join(dsa_context_row(batch=2).split(",")[:-2] + ["0\r", "1.0"]),
    ],
    "data row that looks like a header, mid-block": [
        HEADER, dsa_context_row(batch=1),
        dsa_context_row(batch=2).replace("default", "latency").replace("DeepseekV32ForCausalLM", "batch_size_arch"),
        dsa_context_row(batch=3),
    ],
    "header with a \\x1c next to latency": [_renamed(HEADER, "latency", "\x1clatency"), dsa_context_row(), dsa_context_row(batch=2)],
    "header renaming latency mid-file": [HEADER, dsa_context_row(batch=1), _renamed(HEADER, "latency", "latency_ms"), dsa_context_row(batch=2)],
    "header renaming mla_dtype mid-file": [HEADER, dsa_context_row(batch=1), _renamed(HEADER, "mla_dtype", "attn_dtype"), dsa_context_row(batch=2)],
    "header dropping a column, then the full header": [
        HEADER, dsa_context_row(batch=1), HEADER.rsplit(",", 2)[0] + ",latency",
        ",".join(dsa_context_row(batch=2).split(",")[:-2] + ["1.0"]), HEADER, dsa_context_row(batch=3),
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", ODD_LOGS)
def test_odd_logs_read_the_same_by_every_path_and_block_size(raw_dir, tmp_path, monkeypatch, name):
    f = raw_dir / "dsa_context_module_perf.txt"
    f.write_bytes(("\n".join(ODD_LOGS[name]) + "\n").encode())
    _assert_same_everywhere(f, tmp_path, monkeypatch)


@pytest.mark.parametrize("tail", ["   ", "\r", "\n\r"])
def test_blank_unterminated_last_line_marks_no_row_truncated(raw_dir, tmp_path, monkeypatch, tail):
    f = raw_dir / "dsa_context_module_perf.txt"
    f.write_bytes(("\n".join([HEADER, dsa_context_row(batch=1), dsa_context_row(batch=2)]) + "\n" + tail).encode())
    read, good, quarantined = _assert_same_everywhere(f, tmp_path, monkeypatch)
    assert (read, good.height, quarantined.height) == (2, 2, 0)


def test_lone_cr_is_quarantined_not_parsed(raw_dir, tmp_path, monkeypatch):
    f = raw_dir / "dsa_context_module_perf.txt"
    f.write_bytes(("\n".join(ODD_LOGS["lone CR after a number"]) + "\n").encode())
    read, good, quarantined = _ingest_result(f, tmp_path / "wh", monkeypatch)
    assert quarantined.get_column("reason").to_list() == ["batch_size: not an integer (3\r)", "step: not an integer (0\r)"]


def test_bom_only_file_is_ingested_empty(home, raw_dir):
    f = raw_dir / "dsa_context_module_perf.txt"
    f.write_bytes(b"\xef\xbb\xbf")
    report = ingest_paths([f], home)
    assert not report.failed and report.rows_read == 0


def test_certify_declines_mixed_phases(raw_dir):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(), dsa_generation_row()])
    assert certify(_fast_frame(f), context_for(f)) is None


def test_certify_hands_back_generation_row_with_isl(raw_dir):
    f = write_log(raw_dir / "dsa_generation_module_perf.txt", [dsa_generation_row(), dsa_generation_row(isl=4)])
    good, rest = certify(_fast_frame(f), context_for(f))
    assert (good.height, rest.get_column("source_line").to_list()) == (1, [3])


def test_parallel_reader_follows_a_header_change(raw_dir):
    """Blocks parsed ahead under the old header are re-parsed under the new one."""
    def swap(row: str) -> str:  # batch_size <-> isl: still parses under the old header
        f = row.split(",")
        f[11], f[12] = f[12], f[11]
        return ",".join(f)

    lines = [dsa_context_row(batch=2, isl=16 * (i + 1), step=128, latency=0.5 + i) for i in range(400)]
    lines = lines[:150] + [swap(HEADER)] + [swap(r) for r in lines[150:]]
    f = write_log(raw_dir / "dsa_context_module_perf.txt", lines)
    ctx = context_for(f)

    def read(**kw):
        from warehouse.ingest import validate_chunk

        goods = [validate_chunk(c, ctx)[0] for c in read_collector_csv(f, **kw)]
        return _as_text(pl.concat(goods)).sort("source_line")

    whole = read()
    assert whole.height == 400 and whole.get_column("batch_size").unique().to_list() == [2]
    for workers in (1, 2, 4):
        assert read(chunk_bytes=2000, workers=workers).equals(whole)


def test_parts_store_dictionary_text_and_read_back_as_strings(home, raw_dir):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(isl=i) for i in (128, 256)])
    ingest_paths([f], home)
    part = WarehousePaths.at(home).home / load_manifest(WarehousePaths.at(home)).live_parts()[0]
    assert pl.read_parquet_schema(part)["model"] == pl.Categorical
    frame = read_measurements(home)
    assert frame.schema["model"] == pl.String and frame.get_column("framework").to_list() == ["trtllm"] * 2
    assert duckdb.sql(f"select distinct typeof(model) from '{part}'").fetchall() == [("VARCHAR",)]


def test_parts_written_as_plain_strings_still_read(home, raw_dir):
    """Warehouses written before Categorical storage mix with new parts."""
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(isl=128)])
    ingest_paths([f], home)
    paths = WarehousePaths.at(home)
    old = paths.home / load_manifest(paths).live_parts()[0]
    pl.read_parquet(old).with_columns(pl.col(pl.Categorical).cast(pl.String)).write_parquet(old)
    g = write_log(raw_dir / "dsa_generation_module_perf.txt", [dsa_generation_row()])
    ingest_paths([g], home)
    assert sorted(read_measurements(home).get_column("op").to_list()) == ["dsa_context", "dsa_generation"]


def test_prefetch_keeps_order_and_reraises():
    def items():
        yield from range(5)
        raise ValueError("boom at 5")

    seen = []
    with pytest.raises(ValueError, match="boom at 5"):
        for x in Prefetch(items):
            seen.append(x)
    assert seen == [0, 1, 2, 3, 4]


def test_prefetch_close_stops_the_producer():
    produced = []
    started = threading.Event()

    def items():
        for i in range(10_000):
            produced.append(i)
            started.set()
            yield i

    p = Prefetch(items, depth=2)
    started.wait(5)
    p.close()
    assert len(produced) <= 4  # depth items queued, one in hand, one blocked


def test_number_too_wide_for_the_fast_parser_is_quarantined_exactly(home, raw_dir):
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(), dsa_context_row(isl=3_000_000_000)])
    (chunk,) = read_collector_csv(f)
    assert chunk.block is None  # Int32 parse failed: the line path took the block
    report = ingest_paths([f], home)
    assert (report.rows_accepted, report.rows_quarantined) == (1, 1)
    reason = duckdb.connect(str(WarehousePaths.at(home).duckdb), read_only=True).sql(
        "select reason from quarantine"
    ).fetchall()
    assert reason == [("isl: 3000000000 outside [1, 16777216]",)]


def test_progress_reports_rows_within_a_big_file(home, raw_dir, monkeypatch):
    import functools

    from warehouse import ingest

    monkeypatch.setitem(ingest.READERS, "csv", functools.partial(read_collector_csv, chunk_bytes=2000))
    f = write_log(raw_dir / "dsa_context_module_perf.txt", [dsa_context_row(isl=16 * (i + 1)) for i in range(300)])
    seen = []
    ingest_paths([f], home, progress=lambda n, total, path, result: seen.append(result and (result.status, result.rows_read)))
    running = [rows for status, rows in filter(None, seen) if status == "running"]
    assert seen[0] is None and seen[-1] == ("ingested", 300)
    assert len(running) > 5 and running == sorted(running) and running[-1] == 300


@pytest.mark.parametrize("step", [1, 3, 16, 1 << 20])
def test_raw_line_of_a_quarantined_row_is_found_through_the_slice_index(step, monkeypatch):
    """RawChunk.raw_lines finds a line from per-slice newline counts, whatever the slice size."""
    from warehouse import readers

    monkeypatch.setattr(readers, "NEWLINE_STEP", step)
    monkeypatch.setattr(readers._count_newlines, "__defaults__", (step,))
    monkeypatch.setattr(readers._newline_offset, "__defaults__", (step,))
    block = "\n".join(["h,a", "", "1,x\r", "22,,y", "", "", "333,z", "4"]).encode()
    chunk = readers.RawChunk(frame=pl.DataFrame(), block=block, block_first_line=10)
    chunk.newlines = readers._count_newlines(block)
    assert chunk.raw_lines([10, 11, 12, 13, 16, 17]) == ["h,a", "", "1,x", "22,,y", "333,z", "4"]
