"""The landing sensor and `perfwh ingest` follow one rule for links (readers.walk_raw_logs)."""

from __future__ import annotations

import json

from tests.pipelines.fixtures import write_dsa_context
from tests.pipelines.test_sensor_schedule import KEY, sensor_defs, tick  # noqa: F401 (fixture)
from warehouse.ingest import ingest_paths
from warehouse.landing import scan_landing_all


def test_link_to_outside_is_skipped_and_reported_and_the_tick_goes_on(sensor_defs, instance, tmp_path):  # noqa: F811
    landing, settings, defs = sensor_defs
    write_dsa_context(landing)
    outside = write_dsa_context(tmp_path / "elsewhere")
    link = landing / "h200_sxm" / "mla_context_module_perf.txt"
    link.symlink_to(outside)

    result = tick(defs, instance, None)
    assert [r.partition_key for r in result.run_requests] == [KEY]
    assert list(json.loads(result.cursor)) == [KEY]
    files, skipped = scan_landing_all(landing)
    assert [f.key for f in files] == [KEY]
    assert skipped == [(link, f"symlink to outside the folder (-> {outside})")]

    report = ingest_paths([landing], settings.home)  # the same rule from the command line
    assert {(r.path, r.status, r.message) for r in report.files if r.status != "ingested"} == {
        (str(link), "skipped-path", f"symlink to outside the folder (-> {outside})")
    }
