"""What the sensors and schedules ask of Dagster's runs: how many of a job are queued or
going, and which task partitions such runs cover."""

from collections.abc import Sequence

import dagster as dg

from drafts_pipeline.defs.drafting.partitions import RANGE_END_TAG, RANGE_START_TAG

PARTITION_TAG = "dagster/partition"

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


def partitions_of_unfinished_runs(
    instance: dg.DagsterInstance, partitions: Sequence[str]
) -> set[str]:
    """The task partitions that runs queued, starting or going cover, of any job (the UI's
    backfills too): a range tag covers every partition between its ends in `partitions` (the
    instance's, in the order they were added), a partition tag one."""
    index = {key: position for position, key in enumerate(partitions)}
    covered: set[str] = set()
    for run in instance.get_runs(dg.RunsFilter(statuses=UNFINISHED_RUN_STATUSES)):
        tags = run.tags
        first, last = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
        if first in index and last in index:
            covered.update(partitions[index[first] : index[last] + 1])
        elif (single := tags.get(PARTITION_TAG)) is not None:
            covered.add(single)
    return covered
