"""The `perfwh` application: the command line over the warehouse, the estimator and the pipeline.

The libraries (`warehouse`, `estimator`) never import this package; it imports them.
"""
