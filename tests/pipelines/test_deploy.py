"""The deployment files in deploy/ stay in step with the repo (they cannot be run here:
no container runtime or cluster in CI), and the gRPC workspace they use validates."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from pipelines.event_log import DEFAULT_EVENT_BATCH_SIZE

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def test_dockerfile_copies_only_paths_that_exist():
    sources = []
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if m := re.match(r"COPY\s+(.+)\s+\S+$", line):
            sources += m.group(1).split()
    assert sources, "no COPY lines parsed"
    missing = [s for s in sources if not (REPO / s).exists()]
    assert missing == []


def test_compose_roles_share_one_image_and_postgres_storage():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "code", "webserver", "daemon"}
    for role in ("code", "webserver", "daemon"):
        env = services[role]["environment"]
        assert env["PERFWH_DAGSTER_PG_URL"].startswith("postgresql://"), role
        assert services[role]["image"] == "perf-warehouse:latest"
    for role in ("webserver", "daemon"):
        assert "deploy/workspace.grpc.yaml" in services[role]["command"]


def test_helm_values_name_the_code_location_module():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("-m") + 1]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["PERFWH_EXECUTOR"] == "k8s"
    assert env["DAGSTER_EVENT_BATCH_SIZE"] == str(DEFAULT_EVENT_BATCH_SIZE)
    out = subprocess.run(
        [sys.executable, "-c", f"import {module} as m; print(type(m.{args[args.index('-a') + 1]}).__name__)"],
        cwd=REPO, env={**os.environ, "PERFWH_EXECUTOR": "in_process"}, capture_output=True, text=True, timeout=120,
    )
    assert out.stdout.strip() == "Definitions", out.stderr


def test_entrypoint_writes_the_instance_config(tmp_path):
    home = tmp_path / "dh"
    out = subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), "true"],
        cwd=REPO, env={**os.environ, "DAGSTER_HOME": str(home), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load((home / "dagster.yaml").read_text())["telemetry"] == {"enabled": False}
