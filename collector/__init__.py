"""perfwh GPU collector: benchmarks DSA / MLA attention modules on a real GPU and
writes raw logs (collector CSV + JSONL run logs) under ``data/raw``.

Never imported by warehouse/estimator/assets/pipelines. Needs torch (and triton on
the GPU); ``python -m collector --help`` lists the commands.
"""

FRAMEWORK = "perfwh"
VERSION = "0.1"
