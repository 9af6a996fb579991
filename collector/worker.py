"""Fault isolation: shapes are measured in a worker process.

A CUDA error such as an illegal memory access leaves the process's CUDA
context unusable: every later kernel launch fails too. So the sweep (the
parent, which never touches the GPU) sends one shape at a time to a worker
process (``multiprocessing`` spawn context) that holds the CUDA context, and
restarts that worker whenever

* the worker reports a device error (it exits at once after reporting it),
* the worker dies (segfault, abort, killed by the OOM killer, ...), or
* one shape runs past its time limit (the worker is killed).

Every failure comes back as a ``Failure(kind, error)``; the parent records it
and goes on with the next shape. Kinds: ``device`` (CUDA error, worker
restarted), ``died`` (worker process ended, restarted), ``timeout``
(killed, restarted), ``oom`` (out of memory; worker kept, caches freed),
``error`` (any other exception; worker kept).

The measuring code is a *measurer*: a class named ``"module:Class"``,
constructed in the worker with keyword arguments; it has ``info() -> dict``
(device name, environment) and ``measure(shape_dict, rep) -> dict``
(``median_ms``, ``samples_ms``, ...) and ``classify(exc) -> kind``. The GPU
measurer is ``collector.measure:GpuMeasurer``; tests use fakes that raise or
abort on chosen shapes.
"""
from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import signal
from dataclasses import dataclass

RESTART_KINDS = ("device", "died", "timeout")


@dataclass
class Failure:
    kind: str    # device | died | timeout | oom | error
    error: str   # one line

    @property
    def restarted(self) -> bool:
        return self.kind in RESTART_KINDS


def load_object(target: str):
    mod, _, name = target.partition(":")
    if not mod or not name:
        raise ValueError(f"measurer {target!r}: expected 'module:Class'")
    return getattr(importlib.import_module(mod), name)


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:limit]


def _worker_main(conn, target: str, kwargs: dict) -> None:  # runs in the child
    try:
        measurer = load_object(target)(**kwargs)
        conn.send(("ready", measurer.info(), os.getpid()))
    except BaseException as exc:  # noqa: BLE001 - report, then end the worker
        conn.send(("start_failed", one_line(exc)))
        return
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg[0] == "stop":
            return
        _, shape, rep = msg
        try:
            res = measurer.measure(shape, rep)
            res["worker_pid"] = os.getpid()
            conn.send(("ok", res))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
            kind = measurer.classify(exc)
            conn.send(("error", kind, one_line(exc)))
            if kind == "device":
                conn.close()
                os._exit(3)  # the CUDA context is broken: never measure in it again


def _death(proc) -> str:
    code = proc.exitcode
    if code is None:
        return "worker stopped answering"
    if code < 0:
        try:
            return f"worker died with signal {signal.Signals(-code).name}"
        except ValueError:
            return f"worker died with signal {-code}"
    return f"worker exited with code {code}"


class Worker:
    """Parent-side handle: measure(shape) -> result dict or Failure; restarts as needed."""

    def __init__(self, target: str = "collector.measure:GpuMeasurer", kwargs: dict | None = None,
                 shape_timeout_s: float = 300.0, start_timeout_s: float = 300.0, log=print):
        self.target, self.kwargs = target, dict(kwargs or {})
        self.shape_timeout_s, self.start_timeout_s = shape_timeout_s, start_timeout_s
        self.log = log
        self.ctx = mp.get_context("spawn")
        self.proc = None
        self.conn = None
        self.info: dict | None = None
        self.starts = 0

    # ----------------------------------------------------------------- process
    def start(self) -> dict:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker_main, args=(child, self.target, self.kwargs), daemon=True)
        proc.start()
        child.close()
        self.starts += 1
        if not parent.poll(self.start_timeout_s):
            proc.kill()
            proc.join(10)
            raise RuntimeError(f"measurement worker did not start within {self.start_timeout_s:.0f} s")
        try:
            msg = parent.recv()
        except EOFError:
            proc.join(10)
            raise RuntimeError(f"measurement worker failed to start: {_death(proc)}") from None
        if msg[0] != "ready":
            proc.join(10)
            raise RuntimeError(f"measurement worker failed to start: {msg[1]}")
        self.proc, self.conn, self.info = proc, parent, msg[1]
        self.info["worker_pid"] = msg[2]
        return self.info

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def _discard(self, kill: bool) -> None:
        if self.proc is not None:
            if kill and self.proc.is_alive():
                self.proc.kill()
            self.proc.join(30)
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None

    def close(self) -> None:
        if self.alive():
            try:
                self.conn.send(("stop",))
                self.proc.join(30)
            except (BrokenPipeError, OSError):
                pass
        self._discard(kill=True)

    # --------------------------------------------------------------- measuring
    def measure(self, shape: dict, rep: int = 0):
        if not self.alive():
            if self.proc is not None:
                self._discard(kill=True)
            self.start()
        try:
            self.conn.send(("measure", shape, rep))
            if not self.conn.poll(self.shape_timeout_s):
                self._discard(kill=True)
                return Failure("timeout", f"no result within {self.shape_timeout_s:.0f} s (worker killed)")
            msg = self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            self.proc.join(30)
            why = _death(self.proc)
            self._discard(kill=True)
            return Failure("died", why)
        if msg[0] == "ok":
            return msg[1]
        _, kind, err = msg
        if kind == "device":
            self._discard(kill=False)  # it exits by itself
        return Failure(kind, err)
