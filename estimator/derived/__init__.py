"""Derived tables: a partition's calibration, grids and interval model built from its perf points
(`partition.py`, pure) and persisted with one freshness rule (`store.py`, the one owner)."""
