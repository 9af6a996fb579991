"""Settings: arguments, then environment variables, then documented defaults."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from pipelines import state
from pipelines.settings import warehouse_settings


def test_explicit_arguments_win(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFWH_HOME", str(tmp_path / "env_home"))
    monkeypatch.setenv("PERFWH_LANDING", str(tmp_path / "env_landing"))
    s = warehouse_settings(str(tmp_path / "wh"), str(tmp_path / "raw"))
    assert (s.home, s.landing) == (str(tmp_path / "wh"), str(tmp_path / "raw"))


def test_environment_then_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFWH_HOME", str(tmp_path / "env_home"))
    monkeypatch.setenv("PERFWH_LANDING", str(tmp_path / "env_landing"))
    monkeypatch.setenv("PERFWH_QUARANTINE_SHARE_MAX", "0.05")
    s = warehouse_settings()
    assert s.home == str(tmp_path / "env_home")
    assert isinstance(s.landing, dg.EnvVar) and s.landing.env_var_name == "PERFWH_LANDING"
    assert s.quarantine_share_max == 0.05 and s.spread_max == 0.25
    plain = warehouse_settings(use_env_var=False)
    assert plain.landing == str(tmp_path / "env_landing")


def test_bad_threshold_names_the_variable(monkeypatch):
    monkeypatch.setenv("PERFWH_SPREAD_MAX", "wide")
    with pytest.raises(ValueError, match="PERFWH_SPREAD_MAX"):
        warehouse_settings()


@pytest.mark.parametrize("text", ["nan", "inf", "-1", "-0.5"])
def test_a_threshold_that_would_switch_its_check_off_or_always_on_is_refused(monkeypatch, text):
    """$PERFWH_SPREAD_MAX=nan (every comparison false) passed `dagster definitions validate` and the
    repeat-spread check never fired; -1 made the quarantine check warn on every file."""
    for name in ("PERFWH_SPREAD_MAX", "PERFWH_QUARANTINE_SHARE_MAX", "PERFWH_MONOTONIC_TOLERANCE"):
        monkeypatch.setenv(name, text)
        with pytest.raises(ValueError, match=rf"^\${name} must be a finite number >= 0, got '{text}'$"):
            warehouse_settings()
        monkeypatch.delenv(name)
    monkeypatch.setenv("PERFWH_SPREAD_MAX", "0")
    assert warehouse_settings().spread_max == 0.0


def test_default_landing_prefers_repo_raw_logs(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    monkeypatch.setattr(state, "REPO_LANDING", raw)
    assert state.default_landing() == "aiconfigurator:h200_sxm,h100_sxm"
    raw.mkdir()
    (raw / "notes.md").write_text("not a raw log")
    assert state.default_landing() == "aiconfigurator:h200_sxm,h100_sxm"
    (raw / "dsa_context_module_perf.txt").write_text("x\n")
    assert state.default_landing() == str(raw)


def test_landing_folder_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERFWH_LANDING", raising=False)
    assert state.resolve_landing("raw") == str(Path(tmp_path / "raw").resolve())
    assert state.resolve_landing("aiconfigurator:h200_sxm") == "aiconfigurator:h200_sxm"


def test_a_home_inside_the_landing_folder_is_refused_by_the_sensor_and_the_scan(tmp_path):
    """With the warehouse inside the landing folder, each sensor tick found the warehouse's own new Parquet
    files as raw logs and requested an ingest of them: every measurement twice, then again."""
    from pipelines.sensors import landing_changes

    (tmp_path / "dsa_context_module_perf.txt").write_text("x\n")
    settings = warehouse_settings(str(tmp_path / "wh"), str(tmp_path), use_env_var=False)
    with pytest.raises(ValueError, match=f"the warehouse {tmp_path / 'wh'} lies inside the landing folder"):
        landing_changes(settings, {})
    with pytest.raises(ValueError, match="lies inside the landing folder"):
        settings.scan()
    outside = warehouse_settings(str(tmp_path.parent / f"{tmp_path.name}-wh"), str(tmp_path), use_env_var=False)
    assert [f.key for f in outside.scan()[1]] == ["dsa_context_module_perf.txt"]
