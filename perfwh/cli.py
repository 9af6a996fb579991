"""`perfwh`: one command line over the warehouse, the estimator and the pipeline.

Each area registers its own subcommands (a module with `register(subparsers)`
whose handlers return an exit code); this module only dispatches. Modules keep
heavy imports (dagster, matplotlib) inside their handlers so that
`perfwh query` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "perfwh.warehouse",
    "perfwh.query",
    "perfwh.accuracy",
    "perfwh.models",
    "perfwh.pipeline",
)


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perfwh",
        description="Perf warehouse for DSA/MLA attention: ingest GPU benchmark logs, "
        "query them with SQL, and estimate latency for any shape or model.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (CliError, ValueError, KeyError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"perfwh {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # `python -m perfwh.cli`: run the imported module, so that its CliError is the one raised
    from perfwh.cli import main as _main

    sys.exit(_main())
