"""Fixtures for the Dagster layer: a temp DAGSTER_HOME, a landing folder of small
raw logs (one dirty), settings pointing at tmp dirs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets.resources import WarehouseSettings
from pipelines.instance import write_instance_config
from tests.pipelines.fixtures import write_landing



def make_dagster_home(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    write_instance_config(path, environ={})
    return path


@pytest.fixture
def dagster_home(tmp_path, monkeypatch) -> Path:
    home = make_dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def landing(tmp_path) -> Path:
    root = tmp_path / "landing"
    write_landing(root)
    return root


@pytest.fixture
def settings(tmp_path, landing) -> WarehouseSettings:
    return WarehouseSettings(home=str(tmp_path / "wh"), landing=str(landing))


@pytest.fixture
def instance(dagster_home):
    with dg.instance_for_test(temp_dir=str(dagster_home)) as inst:
        yield inst
