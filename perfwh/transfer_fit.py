"""`perfwh accuracy --fit-transfer-intervals`: the transfer tables of a warehouse
(estimator.derived.transfer_tables)."""

from __future__ import annotations

import sys

from estimator.derived.transfer_tables import all_pairs, protocol_rows, write_transfer_tables


def run_fit(args) -> int:
    """The CLI: every pair of the warehouse (or those of --transfer / --from), then the tables."""
    pairs = all_pairs(args.home)
    if args.transfer:
        pairs = [p for p in pairs if p[0] == args.transfer]
    if args.from_system:
        pairs = [p for p in pairs if p[1] == args.from_system]
    if not pairs:
        raise ValueError("no pair of systems with a spec shares a backend and version with module points"
                         + (" for the --transfer / --from given" if args.transfer or args.from_system else "")
                         + ": a transfer table needs at least two such systems (`perfwh coverage` lists them)")
    print(f"fitting transfer intervals on {len(pairs)} ordered pair(s) of systems", file=sys.stderr, flush=True)
    _, errors = protocol_rows(args.home, pairs)
    written = write_transfer_tables(args.home, errors)
    print("wrote " + ", ".join(f"{path} ({n} rows)" for path, n in written.values())
          + f" from {errors.height:,} protocol points; transferred answers now carry an 80% interval")
    return 0
