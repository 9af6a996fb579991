"""Which Dagster executor runs the jobs' steps, chosen by settings.

| variable                 | values                               | default          |
|--------------------------|--------------------------------------|------------------|
| PERFWH_EXECUTOR          | in_process, multiprocess, k8s        | in_process       |
| PERFWH_MAX_CONCURRENT    | steps at once (multiprocess)         | the machine's cores |

`in_process` is the default because one step per process costs about 2 s
of start-up on these machines (DAGSTER_NOTES.md) and the derived build is
one step today. `multiprocess` runs independent steps (one per partition
once the derived assets are partitioned) in parallel. `k8s` runs each step
as a Kubernetes job through dagster-k8s (an optional dependency, extra
`deploy`); see deploy/ and docs/scale.md.
"""

from __future__ import annotations

import os

import dagster as dg

ENV_EXECUTOR = "PERFWH_EXECUTOR"
ENV_MAX_CONCURRENT = "PERFWH_MAX_CONCURRENT"
EXECUTORS = ("in_process", "multiprocess", "k8s")


def max_concurrent() -> int:
    text = os.environ.get(ENV_MAX_CONCURRENT) or str(os.cpu_count() or 1)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"${ENV_MAX_CONCURRENT} must be a positive integer, got {text!r}")
    return int(text)


def job_executor() -> dg.ExecutorDefinition:
    """The executor named by $PERFWH_EXECUTOR; ValueError names the valid ones."""
    name = os.environ.get(ENV_EXECUTOR) or "in_process"
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor.configured({"max_concurrent": max_concurrent()})
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError:
            raise ValueError(
                f"${ENV_EXECUTOR}=k8s needs dagster-k8s: pip install -e '.[deploy]'"
            ) from None
        return k8s_job_executor.configured({"max_concurrent": max_concurrent()})
    raise ValueError(f"${ENV_EXECUTOR} must be one of {', '.join(EXECUTORS)}, got {name!r}")
