"""Property-based: randomly damaged collector logs never break the accounting,
and the fast path reads them exactly as the line path does."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import HEADER, dsa_context_row
from warehouse.ingest import ingest_paths
from warehouse.readers import read_collector_csv

good_line = st.builds(
    dsa_context_row,
    batch=st.integers(1, 512),
    isl=st.integers(1, 1 << 17),
    step=st.integers(0, 4096),
    latency=st.floats(1e-3, 1e3),
)


@st.composite
def damaged_line(draw):
    line = draw(good_line)
    kind = draw(st.sampled_from(
        ["keep", "cut", "garble", "field", "junk", "header", "blank", "unicode", "lone_cr", "header_like"]
    ))  # fmt: skip
    if kind == "cut":
        return line[: draw(st.integers(0, len(line)))]
    if kind == "garble":
        i = draw(st.integers(0, len(line) - 1))
        return line[:i] + draw(st.sampled_from([",", "x", "-", ".", '"', "\r", " "])) + line[i + 1 :]
    if kind == "field":
        fields = line.split(",")
        i = draw(st.integers(0, len(fields) - 1))
        fields[i] = draw(st.sampled_from(["", "nan", "inf", "-1", "0", "1e400", "abc", "NaN", "+3", " 7 "]))
        return ",".join(fields)
    if kind == "junk":
        return draw(st.text(alphabet=st.characters(blacklist_characters="\n\x00"), max_size=40))
    if kind == "header":
        return HEADER
    if kind == "blank":
        return draw(st.sampled_from(["", "  ", "\r"]))
    if kind == "lone_cr":  # a field ending in \r that is not a CRLF line end
        fields = line.split(",")
        i = draw(st.integers(0, len(fields) - 2))
        fields[i] += "\r"
        return ",".join(fields)
    if kind == "header_like":  # a data row the line path takes for a header
        return line.replace("default", "latency").replace("DeepseekV32ForCausalLM", "batch_size")
    if kind == "unicode":
        return line.replace("default", draw(st.sampled_from(["défaut", "默认", "\ufeff"])))
    return line


@contextmanager
def _log(lines: list[str], crlf: bool, trailing_newline: bool, bom: bool = False):
    """(path of a collector log holding HEADER + lines, its text) in a temporary h200_sxm folder."""
    nl = "\r\n" if crlf else "\n"
    text = nl.join([HEADER, *lines]) + (nl if trailing_newline else "")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "h200_sxm"
        d.mkdir()
        f = d / "dsa_context_module_perf.txt"
        f.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass"))
        yield f, text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(damaged_line(), max_size=40),
    bom=st.booleans(),
    crlf=st.booleans(),
    trailing_newline=st.booleans(),
)
def test_random_damage_keeps_the_books_balanced(lines, bom, crlf, trailing_newline):
    with _log(lines, crlf, trailing_newline, bom) as (f, text):
        chunks = list(read_collector_csv(f))
        data_rows = sum(c.frame.height for c in chunks)
        blanks = sum(c.blank_lines for c in chunks)
        headers = sum(c.header_lines for c in chunks)
        physical = text.count("\n") + (0 if text.endswith("\n") else 1)
        assert data_rows + blanks + headers == physical
        report = ingest_paths([f], f.parent.parent / "wh")
        (res,) = report.files
        assert res.status == "ingested"
        assert res.rows_read == data_rows
        assert res.rows_read == res.rows_accepted + res.rows_quarantined


def _read_and_validate(f: Path, *, exact: bool, chunk_bytes: int | None = None, workers: int = 2):
    """(measurements, quarantine rows) as ingest would write them, without a warehouse."""
    import polars as pl

    from warehouse import readers
    from warehouse.ingest import validate_chunk
    from warehouse.validate import context_for

    fast = readers._parse_block_fast
    if exact:
        readers._parse_block_fast = lambda *a: None
    try:
        kw = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
        out = [validate_chunk(c, context_for(f)) for c in read_collector_csv(f, workers=workers, **kw)]
    finally:
        readers._parse_block_fast = fast
    good = pl.concat([g.with_columns(pl.col(pl.Categorical).cast(pl.String)) for g, _ in out], how="vertical_relaxed")
    bad = pl.concat([b for _, b in out])
    return good.sort("source_line"), sorted(bad.rows())


# Mostly clean logs: damage must also land inside otherwise clean blocks (the
# fast path's territory), not only in blocks the line path takes anyway.
mostly_clean_line = st.integers(0, 9).flatmap(lambda k: good_line if k < 8 else damaged_line())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(mostly_clean_line, max_size=40),
    crlf=st.booleans(),
    trailing_newline=st.booleans(),
    chunk_bytes=st.sampled_from([None, 64, 150, 700]),
    workers=st.integers(1, 3),
)
def test_fast_path_at_any_block_size_equals_the_exact_path(lines, crlf, trailing_newline, chunk_bytes, workers):
    with _log(lines, crlf, trailing_newline) as (f, _):
        want_good, want_bad = _read_and_validate(f, exact=True)
        got_good, got_bad = _read_and_validate(f, exact=False, chunk_bytes=chunk_bytes, workers=workers)
        assert got_bad == want_bad
        assert got_good.equals(want_good)
