"""System specs: one YAML per GPU, in SI units, covering every system the
published aiconfigurator tables hold."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from estimator.physics.specs import SystemSpec, load_system, system_names

SPECS = Path(__file__).resolve().parents[3] / "estimator" / "physics" / "specs"
REQUIRED = {"name", "peak_bf16_flops_per_s", "peak_fp8_flops_per_s", "hbm_bytes_per_s", "memory_bytes", "sm_count", "family"}
OPTIONAL = {"peak_fp4_flops_per_s", "sm_clock_hz", "sources", "host", "memory"}
FAMILIES = {"ampere", "ada", "hopper", "blackwell", "xe2"}


@pytest.mark.parametrize("name", system_names())
def test_spec_loads_with_sane_si_values(name):
    raw = yaml.safe_load((SPECS / f"{name}.yaml").read_text())
    assert REQUIRED <= set(raw) and set(raw) <= REQUIRED | OPTIONAL, set(raw) ^ REQUIRED
    spec = load_system(name)
    assert isinstance(spec, SystemSpec) and spec.name == name and spec.family in FAMILIES
    # Dense tensor-core peaks in FLOP/s (not TFLOP/s, not sparse-doubled beyond any GPU made).
    assert 50e12 <= spec.peak_bf16_flops_per_s <= 3e15
    assert spec.peak_bf16_flops_per_s <= spec.peak_fp8_flops_per_s <= 2.5 * spec.peak_bf16_flops_per_s
    if spec.peak_fp4_flops_per_s is not None:
        assert spec.family == "blackwell"
        assert spec.peak_fp8_flops_per_s < spec.peak_fp4_flops_per_s <= 4 * spec.peak_fp8_flops_per_s
    assert 0.2e12 <= spec.hbm_bytes_per_s <= 10e12  # bytes/s: 200 GB/s .. 10 TB/s
    assert 16e9 <= spec.memory_bytes <= 300e9  # bytes
    assert 16 <= spec.sm_count <= 200
    if spec.sm_clock_hz is not None:
        assert 1.0e9 <= spec.sm_clock_hz <= 3.0e9  # Hz, not MHz
    assert spec.sources and all(isinstance(s, str) and s for s in spec.sources)
    assert spec.host in {"x86", "grace"}  # the CPU that launches the kernels (transfer interval relation)
    assert spec.memory in {"hbm", "gddr"}  # device memory kind (transfer_terms.sibling_class)
    bandwidth_line = next(x for x in (SPECS / f"{name}.yaml").read_text().splitlines() if x.startswith("hbm_bytes"))
    assert (spec.memory == "gddr") == ("GDDR" in bandwidth_line)  # the key agrees with the datasheet note


def test_h100_and_h200_differ_only_in_memory():
    h100, h200 = load_system("h100_sxm"), load_system("h200_sxm")
    assert (h100.peak_bf16_flops_per_s, h100.peak_fp8_flops_per_s, h100.sm_count, h100.sm_clock_hz) == (
        h200.peak_bf16_flops_per_s, h200.peak_fp8_flops_per_s, h200.sm_count, h200.sm_clock_hz,
    )  # fmt: skip
    assert h200.hbm_bytes_per_s / h100.hbm_bytes_per_s == pytest.approx(4.8 / 3.35)


def test_every_system_with_published_tables_has_a_spec():
    spec = importlib.util.find_spec("aiconfigurator_core")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("aiconfigurator-core is not installed")
    data = Path(next(iter(spec.submodule_search_locations))) / "systems" / "data"
    published = sorted(p.name for p in data.iterdir() if p.is_dir())
    assert published, data
    assert sorted(set(published) - set(system_names())) == []


def test_grace_superchips_say_their_host_and_hgx_boards_default_to_x86():
    assert {n: load_system(n).host for n in ("gb200", "gb300", "b200_sxm", "h100_sxm")} == {
        "gb200": "grace", "gb300": "grace", "b200_sxm": "x86", "h100_sxm": "x86"}
