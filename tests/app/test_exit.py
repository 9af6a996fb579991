"""A `perfwh` process skips the exit-time garbage collection of what it leaves alive (perfwh.cli)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

CYCLE = """
import sys
class Cycle:
    def __del__(self):
        sys.stdout.write("collected at exit\\n")
c = Cycle(); c.self = c
"""


def _exit_output(imports: str) -> str:
    code = imports + CYCLE
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout


def test_cli_process_leaves_its_objects_to_the_os_at_exit():
    assert "collected at exit" in _exit_output("")  # what the interpreter does by default
    assert _exit_output("import perfwh.cli\n") == ""
