"""Which ingest runs a sensor tick asks for: every new landing file of the tick in one run, bounded.

Many collectors drop many small logs at once, across many slice folders; a run
costs far more bookkeeping (run storage, events, process start) than ingesting
a small log, so the new files of a tick, whatever their folder, go to one run:
one contiguous range of new partitions, at most `max_files` files (more make
more such runs). A changed file that is already a partition is its own run
(a partition range cannot span it). A tick asks for at most `max_runs` runs;
changes beyond that stay out of the cursor and are picked up by the next tick,
so nothing is lost and no run is requested twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

DEFAULT_MAX_RUNS_PER_TICK = 20
DEFAULT_MAX_FILES_PER_RUN = 200


@dataclass(frozen=True)
class Batch:
    """One run's files: `new` are not yet partitions (added this tick, in this order, so they
    form one contiguous partition range); `known` is one file that already is a partition."""

    name: str  # "new" (or "new-2", ... past max_files), else the known file's key
    new: tuple[str, ...]
    known: tuple[str, ...]
    run_key: str


def _run_key(changes: dict[str, str], keys) -> str:
    h = hashlib.sha256()
    for k in sorted(keys):
        h.update(f"{k}\0{changes[k]}\n".encode())
    return h.hexdigest()


def plan_batches(
    changes: dict[str, str], known_partitions: set[str], max_runs: int = DEFAULT_MAX_RUNS_PER_TICK,
    max_files: int = DEFAULT_MAX_FILES_PER_RUN,
) -> tuple[list[Batch], dict[str, str]]:
    """(batches, deferred) for `changes` (key -> content token: sha256 or ETag), one run per batch.

    New keys (in key order) are cut into runs of at most `max_files`; then each changed
    known key is a run; runs are taken in that order until `max_runs` is spent.
    `deferred` are the changes left for the next tick."""
    if max_runs < 1 or max_files < 1:
        raise ValueError(f"max_runs and max_files must be >= 1, got {max_runs} and {max_files}")
    new = [k for k in sorted(changes) if k not in known_partitions]
    known = [k for k in sorted(changes) if k in known_partitions]
    chunks = [tuple(new[i : i + max_files]) for i in range(0, len(new), max_files)]
    batches = [Batch("new" if i == 0 else f"new-{i + 1}", c, (), _run_key(changes, c) + ":new")
               for i, c in enumerate(chunks)]
    batches += [Batch(k, (), (k,), f"{_run_key(changes, [k])}:{k}") for k in known]
    deferred = {k: changes[k] for b in batches[max_runs:] for k in (*b.new, *b.known)}
    return batches[:max_runs], deferred
