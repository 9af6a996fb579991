"""`perfwh --help` / `--version`: every option names its default and, where fixed, its valid values."""

from __future__ import annotations

import argparse

import pytest

from perfwh.cli import build_parser, main


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_option_shows_its_default_and_choices(command):
    p = _subparsers()[command]
    text = " ".join(p.format_help().split())
    for action in p._actions:
        if not action.option_strings or action.nargs == 0 or action.required:
            continue  # flags (store_true, --help) and required options have no default to show
        shown = " ".join(p._get_formatter()._get_help_string(action).split()) % {"default": action.default}
        assert "default" in shown, f"perfwh {command} {action.option_strings[-1]}: help names no default"
        assert shown.split(" (default")[0][:40] in text, f"{action.option_strings[-1]} help not rendered"
        if action.choices is not None:
            assert "one of: " + ", ".join(map(str, action.choices)) in text


def test_query_help_renders_defaults():
    text = " ".join(_subparsers()["query"].format_help().split())
    assert "(default: h200_sxm)" in text and "(default: trtllm)" in text
    assert "(one of: interp, nearest) (default: interp)" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("perfwh ") and out.split()[1][0].isdigit()


def test_coverage_is_a_command():
    assert "coverage" in _subparsers()


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_command_has_a_description_and_every_option_a_help(command):
    """`perfwh verify --help`, `sql --help` and `tables --help` had no description; `accuracy --json` no help."""
    p = _subparsers()[command]
    assert p.description, f"perfwh {command} --help has no description"
    for action in p._actions:
        assert not action.option_strings or action.help, f"perfwh {command} {action.option_strings[-1]}: no help"


@pytest.mark.parametrize("command", ["query", "estimate", "compare", "support"])
def test_precisions_listed_in_help_are_the_ones_accepted(command):
    """query --help listed fp8_tensor and nvfp4 GEMMs and fp8_block / float32 caches, which the estimator
    refuses; compare --help left out float16 and fp8, and listed no perfwh backend."""
    import re

    from estimator.common import FMHAQuantMode, GEMMQuantMode, KVCacheQuantMode

    text = " ".join(_subparsers()[command].format_help().split())
    for label, enum in (("projection GEMM precision", GEMMQuantMode), ("KV cache precision", KVCacheQuantMode),
                        ("attention math precision", FMHAQuantMode)):
        listed = re.search(label + r": ([a-z0-9_, ]+?) \(default", text).group(1).split(", ")
        assert listed == [m.value for m in enum], (command, label, listed)
    if command != "query":
        assert "sglang, perfwh" in text
