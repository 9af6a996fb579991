"""Run a producer one step ahead of its consumer, in a background thread.

Ingest is read + hash -> parse -> validate -> encode per block. Polars and
hashlib release the GIL, so a thread that reads, hashes, parses and validates
the next blocks while the caller encodes the previous blocks' data files
keeps both cores busy.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


class Prefetch(Generic[T]):
    """Iterate `make()` in a thread, at most `depth` items ahead.

    An exception in the producer is re-raised in the consumer at the point
    the failed item would have been. `close()` stops the producer early
    (e.g. the file turned out to be ingested already).
    """

    def __init__(self, make: Callable[[], Iterable[T]], depth: int = 2):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make,), daemon=True, name="perfwh-prefetch")
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, make: Callable[[], Iterable[T]]) -> None:
        try:
            for item in make():
                if not self._put((True, item)):
                    return
        except BaseException as exc:  # handed to the consumer, never lost
            self._put((False, exc))
            return
        self._put((True, _DONE))

    def __iter__(self) -> Iterator[T]:
        while True:
            ok, item = self._q.get()
            if not ok:
                self.close()
                raise item
            if item is _DONE:
                self._thread.join()
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetch[T]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
