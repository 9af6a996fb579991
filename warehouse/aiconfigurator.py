"""Locate the published perf tables of aiconfigurator (`systems/data/` layout).

Layout: <root>/<system>/<group>/<backend>/<version>/<table>.parquet. Only the
tables this warehouse models (schema.TABLE_STEMS) are taken; the rest are
listed as skipped so nothing is left out silently.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from .schema import TABLE_STEMS


@dataclass
class PublishedTables:
    root: Path
    tables: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def installed_data_root() -> Path:
    """systems/data of the installed aiconfigurator-core package."""
    spec = importlib.util.find_spec("aiconfigurator_core")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "aiconfigurator-core is not installed: `pip install 'perf-warehouse[aic]'` "
            "or pass the path of a folder laid out like its systems/data/"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "systems" / "data"
    if not root.is_dir():
        raise FileNotFoundError(f"aiconfigurator-core has no systems/data folder at {root}")
    return root


def find_published_tables(
    root: str | Path | None = None, systems: tuple[str, ...] | list[str] | None = None
) -> PublishedTables:
    """Tables under `root` (default: the installed package), optionally only `systems`."""
    base = installed_data_root() if root is None else Path(root).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(f"no such folder: {base}")
    found = PublishedTables(root=base.resolve())
    for f in sorted(base.rglob("*.parquet")):
        system = f.relative_to(base).parts[0]
        if systems and system not in systems:
            continue
        (found.tables if f.stem in TABLE_STEMS else found.skipped).append(f)
    if systems and not found.tables and not found.skipped:
        present = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise ValueError(f"no tables for system(s) {', '.join(systems)} under {base}; present: {', '.join(present)}")
    if not found.tables:
        raise FileNotFoundError(
            f"{base}: no published tables named {', '.join(sorted(TABLE_STEMS))}"
        )
    return found
