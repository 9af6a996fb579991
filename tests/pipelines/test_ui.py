"""`dagster dev` end to end: the code location loads, every asset and check is in
GraphQL, a raw log dropped into the landing folder is ingested by the sensor's
run, and headless Chromium renders the asset group page."""

from __future__ import annotations

import pytest

from tests.pipelines import dagster_dev as dev
from tests.pipelines.fixtures import write_dirty, write_dsa_context, write_dsa_generation
from tests.pipelines.test_definitions import ASSETS, CHECKS

pytestmark = [
    pytest.mark.ui,
    pytest.mark.slow,
    pytest.mark.skipif(dev.chromium() is None, reason="chromium is not installed (Debian: apt-get install -y chromium)"),
]

NEW_KEY = "h200_sxm/trtllm/1.0/dsa_generation_module_perf.txt"
FIRST_KEY = "h200_sxm/trtllm/1.0/dsa_context_module_perf.txt"  # the first of the two files there at start


def test_dagster_dev_sensor_run_and_screenshot(tmp_path):
    landing = tmp_path / "landing"
    write_dsa_context(landing)
    write_dirty(landing)
    env = {
        "PERFWH_HOME": str(tmp_path / "wh"),
        "PERFWH_LANDING": str(landing),
        "PERFWH_SENSOR_INTERVAL_S": "5",
    }
    log = tmp_path / "dagster-dev.log"
    with dev.dagster_dev(tmp_path / "dagster_home", env, log) as base:
        dev.wait_loaded(base, log)

        nodes = dev.graphql(base, dev.ASSET_NODES)["assetNodes"]
        assert {"/".join(n["assetKey"]["path"]) for n in nodes} == ASSETS
        checks = {
            ("/".join(n["assetKey"]["path"]), c["name"])
            for n in nodes
            for c in n["assetChecksOrError"]["checks"]
        }
        assert checks == CHECKS

        # the first tick's run (the two files already there) first: a new file that lands before that tick
        # would join its batch (one run over a range of partitions) instead of getting a run of its own
        first = dev.wait_run(base, ("dagster/asset_partition_range_start", FIRST_KEY))
        assert first["status"] == "SUCCESS", (first, log.read_text()[-3000:])
        write_dsa_generation(landing)
        run = dev.wait_run(base, ("perfwh/raw_log", NEW_KEY))
        assert run["status"] == "SUCCESS", (run, log.read_text()[-3000:])
        assert run["jobName"] == "ingest_job"
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/partition"] == NEW_KEY

        url = f"{base}/locations/{dev.LOCATION}/asset-groups/ingest"
        shot = dev.screenshot(url, tmp_path / "ingest.png", tmp_path)
        assert shot.stat().st_size > 10_000
        dom = dev.dump_dom(url, tmp_path)
        assert "raw_log_files" in dom and "measurements" in dom, dom[-2000:]
