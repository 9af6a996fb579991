"""`perfwh`: one command line over the warehouse, the estimator and the pipeline.

Each area registers its own subcommands (a module with `register(subparsers)`
whose handlers return an exit code); this module only dispatches. Modules keep
heavy imports (dagster, matplotlib) inside their handlers so that
`perfwh query` starts fast.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import sys
from pathlib import Path

COMMAND_MODULES = (
    "perfwh.warehouse",
    "perfwh.query",
    "perfwh.accuracy",
    "perfwh.models",
    "perfwh.pipeline",
    "perfwh.coverage",
    "perfwh.plan",
)


# At exit the interpreter's last garbage collections walk every object still alive (Dagster's
# definitions, polars, the estimator: ~0.8 s CPU after `perfwh materialize`); a command that is done
# needs none of them collected, so they are frozen out of those collections. Registered at import:
# it runs once, when the process that ran the command ends.
atexit.register(gc.freeze)


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def json_text(obj, **kw) -> str:
    """JSON with NaN / inf as null: json.dumps wrote NaN (an answer with no interval model has NaN bounds),
    which strict parsers (jq, JavaScript's JSON.parse) reject."""
    import json
    import math

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), allow_nan=False, **kw)


def check_out_file(flag: str, path: str | Path, what: str = "the file to write") -> None:
    """Refuse an output path that is a folder or lies in a missing folder, before the work whose
    answer it would hold (else that work is lost to a raw '[Errno 2]' / '[Errno 21]' at the end)."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise CliError(f"{flag} {path} is a folder; give {what}")
    if not target.resolve().parent.is_dir():
        raise CliError(f"{flag} {path}: folder {target.parent} does not exist")


class DefaultsFormatter(argparse.HelpFormatter):
    """`--help` names every option's default and, where argparse knows them, its valid values."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.help is argparse.SUPPRESS or not action.option_strings or action.nargs == 0:
            return text
        if action.choices is not None and "one of" not in text:
            text += f" (one of: {', '.join(map(str, action.choices))})"
        if "default" not in text and action.default not in (None, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("perf-warehouse")
    except PackageNotFoundError:  # run from a checkout without `pip install -e .`
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perfwh",
        description="Perf warehouse for DSA/MLA attention: ingest GPU benchmark logs, "
        "query them with SQL, and estimate latency for any shape or model.",
    )
    parser.add_argument("--version", action="version", version=f"perfwh {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for p in (parser, *sub.choices.values()):
        p.formatter_class = DefaultsFormatter
    return parser


def _check_home(args) -> None:
    """An empty --home/--landing, or a home that is a file: say so, before any command trips over it."""
    for flag in ("home", "landing"):  # an empty value (an unset shell variable) would mean the default
        value = getattr(args, flag, None)
        if value is not None and not str(value).strip():
            raise CliError(f"--{flag} is empty: give a folder, or leave the option out for the default")
    if not hasattr(args, "home"):
        return
    from warehouse.paths import ENV_HOME, resolve_home

    home = resolve_home(args.home)
    if isinstance(home, Path) and home.exists() and not home.is_dir():
        via = "--home" if args.home else f"${ENV_HOME}"
        raise CliError(f"{via} {home} is a file, not a warehouse folder: pass a folder (it is created if absent)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_home(args)
        return int(args.handler(args) or 0)
    except (CliError, ValueError, KeyError, FileNotFoundError, NotADirectoryError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"perfwh {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"perfwh {args.command}: interrupted (what was committed stays; the next run does the rest)",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # storage out of reach (an s3:// home's endpoint, bucket, credentials)
        from warehouse.location import one_line

        print(f"perfwh {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # `python -m perfwh.cli`: run the imported module, so that its CliError is the one raised
    from perfwh.cli import main as _main

    sys.exit(_main())
