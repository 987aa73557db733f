"""`drafting_tasks_sensor`: new `drafting` tasks become partitions and batched runs."""

import dagster as dg

from drafts_pipeline.jobs import draft_tasks_job
from drafts_pipeline.partitions import TASK_PARTITIONS_NAME, range_tags
from drafts_pipeline.settings import batch_size, sensor_max_tasks_per_tick
from drafts_pipeline.store import DraftStore


def plan_tick(
    instance: dg.DagsterInstance,
    new_tasks: list[tuple[int, str]],
    batch: int,
) -> tuple[list[str], list[dg.RunRequest]]:
    """Partitions to add and runs to request for tasks read past the cursor.

    Keys added in this tick are contiguous in the partition order, so a batch of them is one
    partition range and one run. A task whose partition already exists (a re-imported id) gets
    a run of its own, since a range over older keys could cover unrelated tasks.
    """
    fresh: list[tuple[int, str]] = []
    known: list[tuple[int, str]] = []
    for seq, key in new_tasks:
        exists = instance.has_dynamic_partition(TASK_PARTITIONS_NAME, key)
        (known if exists else fresh).append((seq, key))
    requests = [
        dg.RunRequest(
            run_key=f"tasks-{chunk[0][0]}-{chunk[-1][0]}",
            tags=range_tags(chunk[0][1], chunk[-1][1]),
        )
        for chunk in (fresh[i : i + batch] for i in range(0, len(fresh), batch))
    ]
    requests += [
        dg.RunRequest(run_key=f"tasks-{seq}-{seq}", partition_key=key) for seq, key in known
    ]
    return [key for _, key in fresh], requests


@dg.sensor(
    job=draft_tasks_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reads `drafting` tasks past its cursor (at most DRAFTS_SENSOR_MAX_TASKS a "
    "tick), adds their partitions and requests one run per DRAFTS_BATCH_SIZE tasks.",
)
def drafting_tasks_sensor(
    context: dg.SensorEvaluationContext, store: DraftStore
) -> dg.SensorResult:
    cursor = int(context.cursor or 0)
    new_tasks = store.drafting_after(cursor, sensor_max_tasks_per_tick())
    if not new_tasks:
        return dg.SensorResult(skip_reason=f"no new drafting tasks past #{cursor}")
    keys, requests = plan_tick(context.instance, new_tasks, batch_size())
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=(
            [dg.AddDynamicPartitionsRequest(TASK_PARTITIONS_NAME, keys)] if keys else []
        ),
        cursor=str(new_tasks[-1][0]),
    )
