"""Names shared by assets and pipelines: groups, partitions, derived tables."""

from __future__ import annotations

import dagster as dg

INGEST = "ingest"
GRIDS = "grids"
REPORTS = "reports"
TRANSFER = "transfer"  # on demand: transfer_tables (every pair of systems, minutes)

# One partition per raw log file, keyed by its path relative to the landing folder.
RAW_LOG_PARTITIONS = dg.DynamicPartitionsDefinition(name="raw_log_file")

# One partition per derived slice, keyed system|framework|version (estimator.derived.partition.slice_key);
# registered by `perfwh materialize` and the derived_slices sensor as ingests bring new slices.
SLICE_PARTITIONS = dg.DynamicPartitionsDefinition(name="derived_slice")
# Steps that write one warehouse-wide file (perf.duckdb) run one at a time across runs.
VIEWS_POOL = "warehouse_views"

PREVIEW_ROWS = 20

# eager() without its "no dependency missing" clause: the landing sensor registers a partition
# for every landed file, also those whose content the warehouse already holds (never
# materialized), and warehouse_views reads raw_log_files, which only `perfwh materialize` and
# the UI build. So: run after any dependency updated, once none is in progress.
DERIVED_AUTOMATION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after any upstream update")
