"""Estimator subcommands of `perfwh`; each submodule has `register(subparsers)`."""

from __future__ import annotations

import importlib

SUBMODULES = ("query", "accuracy", "models")


def register(sub) -> None:
    for name in SUBMODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(sub)
