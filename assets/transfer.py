"""Transfer tables: what a transferred answer (a system without data) needs beyond the source's grids.

On demand only (its own group and job, no automation condition): the leave-one-system-out protocol
over every pair of systems takes minutes on a many-system warehouse and says nothing new until
another system's data lands. The work is estimator.derived.transfer_tables; this is the Dagster face."""

import dagster as dg

from estimator.accuracy.transfer import format_transfer_table
from estimator.derived.transfer_tables import all_pairs, protocol_rows, write_transfer_tables

from .constants import TRANSFER
from .grids import interpolation_grids, perf_points, sol_calibration
from .resources import WarehouseSettings


@dg.asset(group_name=TRANSFER, deps=[perf_points, sol_calibration, interpolation_grids], kinds={"parquet", "polars"})
def transfer_tables(context: dg.AssetExecutionContext, settings: WarehouseSettings) -> dg.MaterializeResult:
    """80% intervals, launch-overhead ratios and proxy shapes of transferred answers, from every pair of systems."""
    home = settings.home_path()
    pairs = all_pairs(home, say=context.log.warning)
    if not pairs:
        raise dg.Failure(description="no two systems with a spec share a backend and version with module "
                         "points: a transfer table needs at least two (`perfwh coverage` lists them)")
    context.log.info(f"leave-one-system-out protocol on {len(pairs)} ordered pair(s) of systems")
    summary, errors = protocol_rows(home, pairs, say=context.log.info)
    written = write_transfer_tables(home, errors)
    tables = {}
    for name, (path, rows) in written.items():
        tables[name] = dg.MetadataValue.path(str(path))
        tables[f"{name}_rows"] = dg.MetadataValue.int(rows)
    return dg.MaterializeResult(
        metadata={
            "pairs": dg.MetadataValue.int(len(pairs)),
            "protocol_points": dg.MetadataValue.int(errors.height),
            **tables,
            "protocol": dg.MetadataValue.md(format_transfer_table(summary)),
        }
    )


TRANSFER_ASSETS = [transfer_tables]
