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
    subpackages = {"estimator.physics", "estimator.grids", "estimator.derived", "estimator.lookup", "estimator.models",
                   "estimator.accuracy"}
    assert subpackages <= set(result["loaded"])
    assert {"estimator.lookup.database", "estimator.derived.store", "warehouse.ingest"} <= set(result["loaded"])
    bad = [m for m in result["modules"] if m.split(".")[0] in FORBIDDEN]
    assert bad == []


def test_the_app_does_load_the_libraries():
    # The probe above would pass vacuously if FORBIDDEN names were misspelt: the app loads them.
    probe = "import sys, perfwh.cli; perfwh.cli.build_parser(); print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    mods = set(out.stdout.split())
    assert {"perfwh.warehouse", "perfwh.pipeline", "perfwh.query", "warehouse.output"} <= mods


# Inside the estimator every module-level arrow points down this list (docs/architecture.md); imports
# inside functions may point up (PerfDatabase loads its partitions through estimator.derived).
ESTIMATOR_LAYERS = {
    "common": set(), "slices": {"physics"}, "physics": set(), "grids": {"physics"},
    "lookup": {"physics", "grids"}, "accuracy": {"physics", "grids", "lookup"},
    "derived": {"physics", "grids", "lookup", "accuracy"}, "models": {"lookup"},
}


def test_estimator_sub_packages_import_downwards_only():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "estimator"
    wrong = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if rel == ("__init__.py",):
            continue
        me = rel[0].removesuffix(".py")
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("estimator."):
                target = node.module.split(".")[1]
                if target not in (me, "common", "slices") and target not in ESTIMATOR_LAYERS[me]:
                    wrong.append(f"{'/'.join(rel)} imports {node.module}")
    assert set(ESTIMATOR_LAYERS) == {p.name.removesuffix(".py") for p in root.iterdir()
                                     if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert wrong == []
