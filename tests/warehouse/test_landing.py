"""warehouse.landing: keys, hashes, pending files, the sensor cursor, fingerprints."""

from __future__ import annotations

import json

import pytest

from tests.pipelines.fixtures import write_dsa_context, write_dsa_generation
from warehouse.ingest import FileResult, ingest_paths
from warehouse.landing import (
    changed_since,
    decode_cursor,
    encode_cursor,
    file_key,
    fingerprint,
    ingest_frame,
    landing_frame,
    landing_source,
    pending,
    scan_landing,
)
from warehouse.manifest import load_manifest
from warehouse.paths import WarehousePaths


def test_scan_keys_are_relative_posix_and_sorted(tmp_path):
    write_dsa_generation(tmp_path)
    write_dsa_context(tmp_path)
    (tmp_path / "README.md").write_text("not a raw log")
    files = scan_landing(tmp_path)
    assert [f.key for f in files] == [
        "h200_sxm/trtllm/1.0/dsa_context_module_perf.txt",
        "h200_sxm/trtllm/1.0/dsa_generation_module_perf.txt",
    ]
    assert all(len(f.sha256) == 64 and f.size_bytes > 0 for f in files)
    with pytest.raises(ValueError, match="not under the landing folder"):
        file_key(tmp_path / "a", tmp_path / "b" / "x.txt")


def test_pending_and_fingerprint_follow_the_manifest(tmp_path):
    f = write_dsa_context(tmp_path / "landing")
    home = tmp_path / "wh"
    files = scan_landing(tmp_path / "landing")
    before = load_manifest(WarehousePaths.at(home))
    assert pending(files, before) == files
    ingest_paths([f], home)
    after = load_manifest(WarehousePaths.at(home))
    assert pending(files, after) == []
    assert fingerprint(after) != fingerprint(before) and len(fingerprint(after)) == 16
    assert landing_frame(files, after)["ingested"].to_list() == [True]


def test_cursor_round_trip_and_changes(tmp_path):
    write_dsa_context(tmp_path)
    files = scan_landing(tmp_path)
    assert changed_since(files, {}) == files
    cursor = encode_cursor(files, {"old.txt": "ab"})
    seen = decode_cursor(cursor)
    assert seen == {"old.txt": "ab", files[0].key: files[0].sha256}
    assert changed_since(files, seen) == []
    assert changed_since(files, {files[0].key: "0" * 64}) == files
    assert decode_cursor(None) == {} and decode_cursor("") == {}
    with pytest.raises(ValueError, match="JSON object"):
        decode_cursor(json.dumps({"a": 1}))


def test_landing_source_folder_and_errors(tmp_path):
    assert landing_source(str(tmp_path)) == (tmp_path.resolve(), None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        landing_source(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="names no system"):
        landing_source("aiconfigurator:")


def test_ingest_frame_uses_keys():
    frame = ingest_frame([FileResult("/x/a.txt", "ingested", 3, 2, 1)], {"/x/a.txt": "a.txt"})
    assert frame.row(0) == ("a.txt", "ingested", 3, 2, 1, 0.0)


def test_an_empty_or_non_path_home_is_refused_not_the_default():
    """PerfDatabase(home='') read the default warehouse (~/.local/share/perfwh) and home=3 died in pathlib;
    the CLI refused --home '' but the library took it."""
    from pathlib import Path

    from warehouse.paths import resolve_home

    for empty in ("", "  "):
        with pytest.raises(ValueError, match=r"is empty: give a folder, or None for \$PERFWH_HOME / the default"):
            resolve_home(empty)
    with pytest.raises(TypeError, match="home must be a folder path, got int 3"):
        resolve_home(3)
    assert resolve_home("/tmp/x") == Path("/tmp/x")
