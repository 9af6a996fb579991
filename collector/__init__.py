"""perfwh GPU collector: benchmarks DSA / MLA attention modules on a real GPU and
writes raw logs (collector CSV + JSONL run logs) under ``data/raw``.

Never imported by warehouse/estimator/assets/pipelines. Needs torch (and triton on
the GPU); ``python -m collector --help`` lists the commands.
"""

FRAMEWORK = "perfwh"
# 0.2: MLA decode through kernels/mla_decode.py (issue 16); 0.1 rows (the first data set) stay as they are.
VERSION = "0.2"
