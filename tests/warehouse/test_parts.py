"""warehouse/parts.py: the reader whose hash is fed from the bytes it hands out."""

from __future__ import annotations

import hashlib

import pytest

from warehouse.parts import FileChangedError, HashingReader


def test_blocks_concatenate_to_the_file_and_hash_to_its_sha256(tmp_path):
    f = tmp_path / "log.txt"
    f.write_bytes(bytes(range(256)) * 41)
    with HashingReader(f) as reader:
        blocks = []
        while not reader.done:
            blocks.append(reader.read(1000))
        assert reader.read(1000) == b""
        assert b"".join(blocks) == f.read_bytes() and len(blocks) == 11
        assert reader.hexdigest() == hashlib.sha256(f.read_bytes()).hexdigest()


def test_hash_is_refused_before_the_last_byte(tmp_path):
    f = tmp_path / "log.txt"
    f.write_bytes(b"x" * 100)
    with HashingReader(f) as reader:
        reader.read(99)
        with pytest.raises(RuntimeError, match="99 of 100 bytes"):
            reader.hexdigest()


def test_file_truncated_between_reads_is_a_file_changed_error(tmp_path):
    f = tmp_path / "log.txt"
    f.write_bytes(b"y" * 5000)
    with HashingReader(f) as reader:
        reader.read(2000)
        with open(f, "r+b") as fh:
            fh.truncate(3000)
        with pytest.raises(FileChangedError, match="changed while it was read"):
            reader.read(2000)
