"""Property-based: randomly damaged collector logs never break the accounting."""

from __future__ import annotations

import tempfile
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
    kind = draw(st.sampled_from(["keep", "cut", "garble", "field", "junk", "header", "blank", "unicode"]))
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
    if kind == "unicode":
        return line.replace("default", draw(st.sampled_from(["défaut", "默认", "\ufeff"])))
    return line


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(damaged_line(), max_size=40),
    bom=st.booleans(),
    crlf=st.booleans(),
    trailing_newline=st.booleans(),
)
def test_random_damage_keeps_the_books_balanced(lines, bom, crlf, trailing_newline):
    nl = "\r\n" if crlf else "\n"
    text = nl.join([HEADER, *lines]) + (nl if trailing_newline else "")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "h200_sxm"
        d.mkdir()
        f = d / "dsa_context_module_perf.txt"
        f.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass"))
        chunks = list(read_collector_csv(f))
        data_rows = sum(c.frame.height for c in chunks)
        blanks = sum(c.blank_lines for c in chunks)
        headers = sum(c.header_lines for c in chunks)
        physical = text.count("\n") + (0 if text.endswith("\n") else 1)
        assert data_rows + blanks + headers == physical
        report = ingest_paths([f], Path(tmp) / "wh")
        (res,) = report.files
        assert res.status == "ingested"
        assert res.rows_read == data_rows
        assert res.rows_read == res.rows_accepted + res.rows_quarantined
