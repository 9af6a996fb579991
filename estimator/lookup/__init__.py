"""Lookup at run time: grids as arrays, interpolation, PerfDatabase and its Estimate, limits, versions, intervals."""
