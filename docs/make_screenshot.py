"""Regenerate docs/dagster-ui.png: materialize the asset graph on small fixture
logs into a temp DAGSTER_HOME, start `dagster dev`, shoot one asset group page
with headless Chromium, stop everything.

    .venv/bin/python docs/make_screenshot.py [--group grids] [--out docs/dagster-ui.png]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.pipelines import dagster_dev as dev  # noqa: E402
from tests.pipelines.fixtures import write_landing  # noqa: E402

MAX_BYTES = 300 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", default="grids", help="asset group page to shoot (ingest, grids, reports)")
    parser.add_argument("--path", default=None, help="UI path instead of the group page, e.g. /asset-groups")
    parser.add_argument("--also", nargs="*", default=[], metavar="PATH=OUT", help="more pages to shoot in the same session")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "dagster-ui.png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    if dev.chromium() is None:
        print("chromium is not installed (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="perfwh-shot-") as tmp_name:
        tmp = Path(tmp_name)
        landing = tmp / "landing"
        write_landing(landing)
        extra = {"PERFWH_HOME": str(tmp / "wh"), "PERFWH_LANDING": str(landing)}
        env = dev.dagster_env(tmp / "dagster_home", extra)
        perfwh = str(Path(sys.executable).parent / "perfwh")
        subprocess.run([perfwh, "materialize"], env=env, check=True, cwd=REPO)
        log = tmp / "dagster-dev.log"
        with dev.dagster_dev(tmp / "dagster_home", extra, log) as base:
            dev.wait_loaded(base, log)
            path = args.path or f"/locations/{dev.LOCATION}/asset-groups/{args.group}"
            shot = dev.screenshot(base + path, tmp / "shot.png", tmp, args.width, args.height)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_bytes(shot.read_bytes())
            for spec in args.also:
                extra_path, out = spec.rsplit("=", 1)
                Path(out).write_bytes(dev.screenshot(base + extra_path, tmp / "extra.png", tmp, args.width, args.height).read_bytes())
    size = args.out.stat().st_size
    print(f"{args.out}: {size / 1024:.0f} KB")
    if size > MAX_BYTES:
        print(f"larger than {MAX_BYTES // 1024} KB: shoot a smaller window", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
