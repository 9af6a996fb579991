"""DSA/MLA latency estimator over the perf warehouse.

`from estimator import get_model` is resolved lazily so that importing the
package (e.g. for `perfwh query`) does not load the model roll-up.
"""

from __future__ import annotations

_LAZY = {
    "get_model": "estimator.models.model",
    "ModelConfig": "estimator.models.config",
    "PerfDatabase": "estimator.lookup.database",
    "Estimate": "estimator.lookup.estimate",
    "Source": "estimator.common",
    "KVCacheQuantMode": "estimator.common",
    "FMHAQuantMode": "estimator.common",
    "GEMMQuantMode": "estimator.common",
    "calibrate": "estimator.physics.calibrate",
    "build_grids": "estimator.grids.build",
    "run_accuracy": "estimator.accuracy.protocol",
    "OutOfRangeError": "estimator.lookup.limits",
    "VersionError": "estimator.lookup.versions",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'estimator' has no attribute {name!r}")
