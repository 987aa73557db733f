"""What the sensors ask of Dagster's runs: how many of a job are queued or going."""

import dagster as dg

# A run in one of these has not finished: it is about to start or is running.
UNFINISHED_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def unfinished_runs(instance: dg.DagsterInstance, job_name: str) -> int:
    """Runs of `job_name` queued, starting or going."""
    return instance.get_runs_count(
        dg.RunsFilter(job_name=job_name, statuses=UNFINISHED_RUN_STATUSES)
    )
