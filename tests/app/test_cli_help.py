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
