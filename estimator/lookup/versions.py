"""Version ordering and per-op version choice (docs/limits.md, "Versions").

Backend versions sort by PEP 440 (`packaging.version`): `1.3.0rc23` < `1.3.0`
< `1.3.1.dev0` < `1.3.1`. Strings that are not PEP 440 (`main`, `nightly-x`)
sort below every PEP 440 version, among themselves in natural order (digit
runs as numbers), so they are never the default while a PEP 440 version has
data.
"""

from __future__ import annotations

import re
from functools import lru_cache

from packaging.version import InvalidVersion, Version


class VersionError(ValueError):
    """An explicit version without data for the asked op (the message lists the versions that have it)."""


@lru_cache(maxsize=1024)
def version_key(v: str) -> tuple:
    """Sort key: PEP 440 order; non-PEP-440 strings first, in natural order."""
    try:
        return (1, Version(v), ())
    except InvalidVersion:
        natural = tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                        for p in re.findall(r"\d+|[A-Za-z]+", str(v)))
        return (0, Version("0"), natural)


def sort_versions(versions) -> list[str]:
    return sorted(set(versions), key=version_key)
