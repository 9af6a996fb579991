"""Which ingest runs a sensor tick asks for: changed landing files batched by slice, bounded.

A landing keeps one folder per (system, framework, version) slice
(`<system>/<framework>/<version>/<table>.txt`), so the folder of a key names its
batch. Many collectors drop many small logs at once; one run per file would
start hundreds of run processes, so one run ingests a whole batch. A tick asks
for at most `max_runs` runs; changes beyond that stay out of the cursor and are
picked up by the next tick, so nothing is lost and no run is requested twice.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass

DEFAULT_MAX_RUNS_PER_TICK = 20


@dataclass(frozen=True)
class Batch:
    """Files of one slice folder for one run: `new` are not yet partitions (added this tick,
    in this order, so they form one contiguous partition range); `known` already are."""

    folder: str
    new: tuple[str, ...]
    known: tuple[str, ...]
    run_key: str


def batch_folder(key: str) -> str:
    return posixpath.dirname(key)


def _run_key(changes: dict[str, str], keys: list[str]) -> str:
    h = hashlib.sha256()
    for k in sorted(keys):
        h.update(f"{k}\0{changes[k]}\n".encode())
    return h.hexdigest()


def plan_batches(
    changes: dict[str, str], known_partitions: set[str], max_runs: int = DEFAULT_MAX_RUNS_PER_TICK
) -> tuple[list[Batch], dict[str, str]]:
    """(batches, deferred) for `changes` (key -> content token: sha256 or ETag).

    Each batch costs one run, plus one per `known` key beyond the first when it
    also has `new` keys (a partition range only spans contiguous partitions);
    batches are taken folder by folder in key order until `max_runs` is spent.
    `deferred` are the changes left for the next tick."""
    if max_runs < 1:
        raise ValueError(f"max_runs must be >= 1, got {max_runs}")
    by_folder: dict[str, list[str]] = {}
    for key in sorted(changes):
        by_folder.setdefault(batch_folder(key), []).append(key)
    batches: list[Batch] = []
    deferred: dict[str, str] = {}
    runs = 0
    for folder, keys in by_folder.items():
        new = tuple(k for k in keys if k not in known_partitions)
        known = tuple(k for k in keys if k in known_partitions)
        cost = (1 if new else 0) + len(known)
        if runs + cost > max_runs and batches:
            deferred.update({k: changes[k] for k in keys})
            continue
        runs += cost
        batches.append(Batch(folder, new, known, _run_key(changes, keys)))
    return batches, deferred
