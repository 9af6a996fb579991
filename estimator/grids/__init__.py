"""Grids: the per-slice grid build (rules chosen per op), the grid table schema and the store of derived tables."""
