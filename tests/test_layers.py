"""Who may import whom: the libraries never load the app, the pipeline layer or dagster."""

import json
import subprocess
import sys

FORBIDDEN = ("dagster", "pipelines", "assets", "perfwh")

PROBE = """
import importlib, json, pkgutil, sys
import estimator, warehouse
loaded = []
for pkg in (estimator, warehouse):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(info.name)
        loaded.append(info.name)
print(json.dumps({"loaded": loaded, "modules": sorted(sys.modules)}))
"""


def test_libraries_import_neither_app_nor_pipelines_nor_dagster():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    # the walk reached every sub-package of the estimator (a new one is covered without editing this test)
    subpackages = {"estimator.physics", "estimator.grids", "estimator.lookup", "estimator.models", "estimator.accuracy"}
    assert subpackages <= set(result["loaded"])
    assert {"estimator.lookup.database", "estimator.grids.store", "warehouse.ingest"} <= set(result["loaded"])
    bad = [m for m in result["modules"] if m.split(".")[0] in FORBIDDEN]
    assert bad == []


def test_the_app_does_load_the_libraries():
    # The probe above would pass vacuously if FORBIDDEN names were misspelt: the app loads them.
    probe = "import sys, perfwh.cli; perfwh.cli.build_parser(); print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    mods = set(out.stdout.split())
    assert {"perfwh.warehouse", "perfwh.pipeline", "perfwh.query", "warehouse.output"} <= mods
