"""The sweep loop (parent process; never touches the GPU itself).

Shapes of the spec not yet in the output folder are sent one at a time to a
measurement worker (``worker.Worker``); results are appended to the raw logs
as they come; a failure is logged (``FAIL`` line in the run log) and written
to ``.failures.jsonl`` beside the raw logs (the warehouse skips dot-files, so
failures never reach it as bad rows), and the sweep goes on. Failed shapes
are not "done": the next run retries them.
"""
from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path

from .logs import RawLogWriter, done_keys, read_rows, shape_from_json
from .sweep import expand, load_spec
from .worker import Failure, Worker


def sweep(spec_path=None, out="data/raw", *, deadline_s: float = 1e9, ops=None, tag: str | None = "run",
          measurer: str = "collector.measure:GpuMeasurer", measurer_kwargs: dict | None = None,
          shape_timeout_s: float = 300.0, repeats: bool = True, log=print, clock=None,
          t0: float | None = None, run_id: str | None = None) -> dict:
    """Measure the spec's missing shapes into ``out``; returns a summary dict.

    ``tag``: the raw-log files of this run are ``<table>.<tag>.{txt,jsonl}``
    (``"run"`` = the run id; None = the plain ``<table>.txt`` names, appended).
    """
    t0 = time.time() if t0 is None else t0
    deadline = t0 + deadline_s
    spec = load_spec(spec_path)
    shapes = expand(spec, ops)  # a bad spec fails here, before a worker holds the GPU
    kwargs = {"timing": spec.get("timing", {})}
    kwargs.update(measurer_kwargs or {})
    run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    worker = Worker(measurer, kwargs, shape_timeout_s=shape_timeout_s, log=log)
    info = worker.start()
    from .config import system_of
    device = info["device"]
    system = system_of(device)
    file_tag = run_id if tag == "run" else tag
    cfg = kwargs.get("configs", {})
    writer = RawLogWriter(Path(out), system, device, run_id, info.get("env", {}), tag=file_tag,
                          dense_impl=cfg.get("dense_impl", "decode"), prologue=cfg.get("prologue", "eager"))
    torn: list[str] = []
    done = done_keys(Path(out), system, writer.version, writer.dense_impl, skipped=torn)
    if torn:
        log(f"resume: {len(torn)} unreadable line(s) in the raw logs (a run killed mid-write?), their shapes "
            f"are measured again: {', '.join(torn[:3])}{' ...' if len(torn) > 3 else ''}")
    todo = [s for s in shapes if s.key() not in done]
    log(f"sweep: {len(shapes)} shapes in spec, {len(shapes) - len(todo)} already measured, {len(todo)} to do; "
        f"device {device} -> {system}; run {run_id}; worker pid {info.get('worker_pid')}")
    every = spec.get("repeat", {}).get("every", 0) if repeats else 0
    repeat_list = [s for i, s in enumerate(shapes) if every and i % every == 0]
    reserve = 35.0 if repeat_list else 5.0
    failed: list[dict] = []
    n_ok = 0
    clock = clock or (lambda: None)

    def one(s, rep):
        res = worker.measure(s.asdict(), rep)
        if isinstance(res, Failure):
            failed.append({"shape": s.label(), "kind": res.kind, "error": res.error, "repeat": rep})
            writer.write_failure(s, res.kind, res.error, extra={"repeat": rep})
            log(f"  FAIL {s.label()}: [{res.kind}] {res.error}"
                + (" -- worker restarted for the next shape" if res.restarted else ""))
            return None
        writer.write(s, res["median_ms"], res["samples_ms"], clock(),
                     extra={"timing_method": res.get("timing_method"), "l2_flush": res.get("l2_flush"),
                            "repeat": rep})
        return res

    try:
        for i, s in enumerate(todo):
            if time.time() > deadline - reserve:
                log(f"deadline: stopping with {len(todo) - i} shapes left (resume with the same command)")
                break
            res = one(s, 0)
            if res is not None:
                n_ok += 1
                if n_ok % 50 == 0 or res["median_ms"] > 20:
                    log(f"  [{i + 1}/{len(todo)}] {s.label()}: {res['median_ms']:.4f} ms "
                        f"(n={len(res['samples_ms'])})")
        # repeats: re-measure a fixed subset (new graph, new inputs) for the run-to-run spread
        spreads = []
        if repeat_list:
            first: dict = {}
            for r in read_rows(Path(out), system):
                if not r.get("repeat"):
                    first.setdefault(shape_from_json(r).key(), r["latency_ms"])
            for s in repeat_list:
                if time.time() > deadline - 3:
                    break
                if s.key() not in first:
                    continue
                res = one(s, 1)
                if res is not None:
                    prev = first[s.key()]
                    spreads.append(abs(res["median_ms"] - prev) / ((res["median_ms"] + prev) / 2))
        if spreads:
            log(f"run-to-run spread over {len(spreads)} repeated shapes: median "
                f"{statistics.median(spreads) * 100:.2f}%, p90 "
                f"{sorted(spreads)[int(0.9 * (len(spreads) - 1))] * 100:.2f}%, max {max(spreads) * 100:.2f}%")
    finally:
        worker.close()
    log(f"sweep done: {n_ok} measured, {len(failed)} failed, worker started {worker.starts} time(s)")
    return {"run_id": run_id, "measured": n_ok, "failed": failed, "repeats": len(spreads),
            "spread_median": statistics.median(spreads) if spreads else None, "system": system,
            "device": device, "env": info.get("env"), "worker_starts": worker.starts,
            "left": max(0, len(todo) - n_ok - sum(1 for f in failed if not f["repeat"]))}
