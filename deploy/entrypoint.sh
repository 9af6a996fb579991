#!/bin/sh
# Write $DAGSTER_HOME/dagster.yaml from the environment (Postgres when
# PERFWH_DAGSTER_PG_URL is set), then run the role given as the command.
set -eu
python -m pipelines.instance "$DAGSTER_HOME"
exec "$@"
