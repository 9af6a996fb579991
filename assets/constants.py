"""Names shared by assets and pipelines: groups, partitions, derived tables."""

from __future__ import annotations

import dagster as dg

INGEST = "ingest"
GRIDS = "grids"
REPORTS = "reports"

# One partition per raw log file, keyed by its path relative to the landing folder.
RAW_LOG_PARTITIONS = dg.DynamicPartitionsDefinition(name="raw_log_file")

PREVIEW_ROWS = 20
