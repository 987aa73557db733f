"""Materialise the graph in this process, one Dagster run per batch of tasks."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import dagster as dg

from drafts_pipeline.partitions import TASK_PARTITIONS_NAME, range_tags


@dataclass(frozen=True)
class BatchRun:
    first: str
    last: str
    size: int
    success: bool
    run_id: str


def batches(keys: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def run_in_process(
    defs: dg.Definitions,
    task_ids: Sequence[str],
    *,
    batch_size: int,
    force: bool = False,
    log_level: str = "WARNING",
    instance: dg.DagsterInstance | None = None,
) -> list[BatchRun]:
    """Draft every task in `task_ids`, then publish the voting-ready set.

    Uses a fresh ephemeral instance unless one is given, so that the batch's partitions are
    added in order and each batch is one contiguous partition range.
    """
    instance = instance or dg.DagsterInstance.ephemeral()
    missing = [k for k in task_ids if not instance.has_dynamic_partition(TASK_PARTITIONS_NAME, k)]
    instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, missing)
    loggers = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    drafting_config = {**loggers, "ops": {"provider_drafts": {"config": {"force": force}}}}
    job = defs.resolve_job_def("draft_tasks")
    results = []
    for batch in batches(list(task_ids), batch_size):
        result = job.execute_in_process(
            instance=instance,
            tags=range_tags(batch[0], batch[-1]),
            run_config=drafting_config,
            raise_on_error=False,
        )
        results.append(BatchRun(batch[0], batch[-1], len(batch), result.success, result.run_id))
    defs.resolve_job_def("publish_voting_set").execute_in_process(
        instance=instance, run_config=loggers
    )
    return results
