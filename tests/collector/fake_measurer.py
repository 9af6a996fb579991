"""Measurers for the fault-isolation tests (no GPU): they behave like the GPU
measurer except on chosen shapes, where they fail the way a GPU run can.

Like a real CUDA context, a FaultyMeasurer whose "device" broke stays broken:
every later shape in the same process fails too, so a sweep that reuses the
process after a device error cannot pass the tests.
"""
import os
import time

from collector.sweep import Shape


class DeviceError(RuntimeError):
    pass


class FaultyMeasurer:
    def __init__(self, timing=None, faults=None, fail_start=False, **_):
        if fail_start:
            raise ValueError("no GPU here (injected start failure)")
        self.faults = dict(faults or {})  # shape label -> device | abort | hang | error
        self.broken = False

    def info(self):
        return {"device": "NVIDIA H200", "env": {"fake": True, "pid": os.getpid()}}

    def measure(self, shape, rep=0):
        s = Shape(**shape)
        if self.broken:
            raise DeviceError("CUDA error: an illegal memory access was encountered (context still broken)")
        mode = self.faults.get(s.label())
        if mode == "device":
            self.broken = True
            raise DeviceError("CUDA error: an illegal memory access was encountered")
        if mode == "abort":
            os.abort()
        if mode == "hang":
            time.sleep(3600)
        if mode == "error":
            raise ValueError(f"bad shape {s.label()}")
        ms = 0.01 * s.batch_size + 1e-6 * s.prefix
        return {"median_ms": ms, "samples_ms": [ms] * 5, "timing_method": "fake", "l2_flush": True}

    def classify(self, exc):
        if self.broken or isinstance(exc, DeviceError):
            return "device"
        return "error"
