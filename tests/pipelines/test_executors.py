"""Executor choice by settings: the definitions validate under each, bad values are one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRINT_EXECUTORS = (
    "from pipelines.definitions import defs; "
    "j = [defs.resolve_job_def(n) for n in ('ingest_job', 'derived_job')]; "
    "s = lambda e: e.config_schema.resolve_config({}).value['config']['max_concurrent'] "
    "if type(e.config_schema).__name__ == 'ConfiguredDefinitionConfigSchema' else None; "
    "print(*[(x.executor_def.name, s(x.executor_def)) for x in j], sep='|')"
)


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "DAGSTER_HOME": str(tmp_path), "PERFWH_HOME": str(tmp_path / "wh"), **env}
    return subprocess.run(args, cwd=REPO, env=full, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("executor", "expected"),
    [
        ("in_process", "('in_process', None)"),
        ("multiprocess", "('multiprocess', 3)"),
        ("k8s", "('k8s', 3)"),
    ],
)
def test_jobs_use_the_configured_executor(tmp_path, executor, expected):
    if executor == "k8s":
        pytest.importorskip("dagster_k8s")
    out = _run([sys.executable, "-c", PRINT_EXECUTORS], tmp_path, PERFWH_EXECUTOR=executor, PERFWH_MAX_CONCURRENT="3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{expected}|{expected}"


def test_k8s_deployment_definitions_validate(tmp_path):
    """The configuration docs/scale.md describes for Kubernetes passes `dagster definitions validate`."""
    pytest.importorskip("dagster_k8s")
    dagster = Path(sys.executable).with_name("dagster")
    out = _run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], tmp_path, PERFWH_EXECUTOR="k8s")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


@pytest.mark.parametrize(("name", "value"), [("PERFWH_EXECUTOR", "celery"), ("PERFWH_MAX_CONCURRENT", "0")])
def test_bad_executor_settings_fail_naming_the_variable(tmp_path, name, value):
    env = {"PERFWH_EXECUTOR": "multiprocess", name: value}
    out = _run([sys.executable, "-c", "import pipelines.definitions"], tmp_path, **env)
    assert out.returncode != 0
    assert f"${name} must be" in out.stderr
