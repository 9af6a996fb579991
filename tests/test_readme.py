"""The README's shell, Python and SQL blocks run as written, in order, on what `make demo` builds.

The module fixture does what `make demo` does (`perfwh materialize` on the
embedded data set) in a scratch copy of the checkout (every top-level entry
linked, `var/` its own), so `$PWD/var/warehouse` in the README is that fresh
warehouse. Then every ```sh block runs in `bash -e`, every ```python block in
the project's Python, every ```sql statement through `perfwh sql`'s reader.
A block may be marked on the line before its fence:

    <!-- readme-test: setup ... -->   the set-up commands the fixture stands in for (not run)
    <!-- readme-test: skip (why) -->  not run (a server, the test suite itself)
    <!-- readme-test: loads aiconfigurator ... -->  loads the published tables; it and every
                                       block after it skip when aiconfigurator-core is absent
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARK = re.compile(r"<!--\s*readme-test:\s*(\w+)")
TIMEOUT = 300


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    mark: str | None  # setup | skip | loads | None
    after_load: bool  # at or after the block that loads the aiconfigurator tables

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang}"


def readme_blocks(text: str) -> list[Block]:
    blocks, lines, i, loaded = [], text.splitlines(), 0, False
    while i < len(lines):
        m = re.match(r"^```(\w+)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        mark = MARK.search(prev)
        mark = mark.group(1) if mark else None
        loaded = loaded or mark == "loads"
        if lang in ("sh", "python", "sql"):
            blocks.append(Block(start + 1, lang, "\n".join(lines[start + 1:end]) + "\n", mark, loaded))
        i = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text())


def _has_aiconfigurator() -> bool:
    try:
        import aiconfigurator_core  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A scratch checkout with a fresh `make demo` warehouse in var/warehouse; the env the README sets."""
    work = tmp_path_factory.mktemp("clone")
    for entry in REPO.iterdir():
        if entry.name not in ("var", ".venv", ".git"):
            (work / entry.name).symlink_to(entry)
    bindir = Path(sys.executable).parent
    if (REPO / ".venv" / "bin" / "activate").exists():
        (work / ".venv").symlink_to(REPO / ".venv")
    else:  # a checkout whose venv lives elsewhere (a worktree): activate the interpreter running the tests
        (work / ".venv" / "bin").mkdir(parents=True)
        (work / ".venv" / "bin" / "activate").write_text(f'export PATH="{bindir}:$PATH"\n')
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "PERFWH_HOME": str(work / "var" / "warehouse"),  # what the walk-through exports
        "DAGSTER_HOME": str(work / "var" / "dagster"),  # as the Makefile sets it
        "MPLBACKEND": "Agg",
    }
    env.pop("PERFWH_LANDING", None)
    done = subprocess.run([sys.executable, "-m", "perfwh.cli", "materialize"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    return work, env


def test_the_walkthrough_comes_first_and_the_setup_is_make_demo():
    assert BLOCKS[0].mark == "setup" and "make demo" in BLOCKS[0].code and "make test" in BLOCKS[0].code
    walk = BLOCKS[1]
    assert walk.lang == "sh" and walk.mark is None
    assert ". .venv/bin/activate" in walk.code and "export PERFWH_HOME=$PWD/var/warehouse" in walk.code
    assert sum(b.mark == "loads" for b in BLOCKS) == 1


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block(block: Block, demo):
    if block.mark in ("setup", "skip"):
        pytest.skip(f"README line {block.line}: marked {block.mark}")
    if block.after_load and not _has_aiconfigurator():
        pytest.skip("aiconfigurator-core is not installed: the TensorRT-LLM examples need its tables")
    work, env = demo
    if block.lang == "sql":
        _run_sql(block, env)
        return
    argv = ["bash", "-e", "-o", "pipefail", "-c", block.code] if block.lang == "sh" else [sys.executable, "-c", block.code]
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"README line {block.line} ({block.lang}) failed:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    assert "Warning" not in done.stderr, f"a library warning reached the terminal:\n{done.stderr}"


def _run_sql(block: Block, env) -> None:
    from warehouse.read import sql

    body = "\n".join(ln for ln in block.code.splitlines() if not ln.lstrip().startswith("--"))
    statements = [s.strip() for s in body.split(";") if s.strip()]
    assert statements
    for n, statement in enumerate(statements):
        frame = sql(statement, env["PERFWH_HOME"])
        if n == 0:  # the worked example must answer, not return an empty table without notice
            assert frame.height > 0, f"README line {block.line}: the first example returned no rows"
