"""`drafting_tasks_sensor`: new `drafting` tasks become partitions and batched runs."""

from collections.abc import Mapping, Sequence

import dagster as dg

from drafts_pipeline.defs.drafting.jobs import DRAFT_TASKS_JOB
from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME, range_tags
from drafts_pipeline.defs.loaded_settings import LOADED_SETTINGS
from drafts_pipeline.defs.runs import unfinished_runs
from drafts_pipeline.runner import batch_sizes, contiguous_batches
from drafts_pipeline.settings import Settings
from drafts_pipeline.store import DraftStore


def plan_runs(
    new_tasks: list[tuple[int, str]],
    batch: int,
    newest_partitions: Sequence[str],
    *,
    ramp_up: bool = True,
    ramp_down: bool = True,
    partition_order: Mapping[str, int] | None = None,
) -> list[dg.RunRequest]:
    """Runs of at most `batch` tasks read past the cursor, each a range of partition keys, sized
    as `drafts-pipeline run` sizes them (`runner.batch_sizes`: small at both ends, so that the
    first run calls the providers soonest and the last finishes soon after its last answer).
    `ramp_up=False` when drafting runs are already queued or going (they call the providers
    while these get ready); `ramp_down=False` when the tick left tasks for the next one.

    Tasks past the cursor are rows inserted since the last tick, so their partitions are
    usually new: added in this tick, in this order, and `newest_partitions` (the instance's
    last `len(new_tasks)` partitions, oldest first) are exactly them. A `drafts-pipeline run` on
    the same instance may have added some before, in its own order, and a task re-queued by
    `tasks retry` has the partition it had: then the runs are cut where that order has a gap,
    and the tasks whose partitions are older than the newest ones get runs of their own, over
    neighbours in `partition_order` (every partition of the instance) when it is given, else
    one each, so that no range covers a partition of no task of this tick.
    """
    order = {key: index for index, key in enumerate(newest_partitions)}
    row_ids = {key: row_id for row_id, key in new_tasks}
    keys = [key for _, key in new_tasks]
    runs = contiguous_batches(
        [key for key in keys if key in order], order, batch, ramp_up=ramp_up, ramp_down=ramp_down
    )
    older = [key for key in keys if key not in order]
    if partition_order is None:
        runs += [[key] for key in older]
    else:
        runs += contiguous_batches(
            older, partition_order, batch, ramp_up=ramp_up and not runs, ramp_down=ramp_down
        )
    return [
        dg.RunRequest(
            run_key=f"tasks-{row_ids[run[0]]}-{row_ids[run[-1]]}",
            tags=range_tags(run[0], run[-1]),
        )
        for run in runs
    ]


def without_runt(
    new_tasks: list[tuple[int, str]], batch: int, *, ramp_up: bool
) -> list[tuple[int, str]]:
    """A tick's tasks less its last run's when more tasks follow and that run would be short of
    a batch: they go with the next tick's, so that a small run does not come between two full
    ones (through the daemon, a run that sends for less time than the next takes to start
    leaves the providers idle). A tick whose tasks make one run keeps them all."""
    sizes = batch_sizes(len(new_tasks), batch, ramp_up=ramp_up, ramp_down=False)
    if len(sizes) > 1 and sizes[-1] < batch:
        return new_tasks[: len(new_tasks) - sizes[-1]]
    return new_tasks


@dg.sensor(
    job_name=DRAFT_TASKS_JOB,
    minimum_interval_seconds=LOADED_SETTINGS.sensor_interval_s,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reads `drafting` tasks past its cursor, new or re-queued by `tasks retry` (at "
    "most DRAFTS_SENSOR_MAX_TASKS a tick), adds their partitions and requests runs of at most "
    "DRAFTS_BATCH_SIZE tasks.",
)
def drafting_tasks_sensor(
    context: dg.SensorEvaluationContext, store: DraftStore
) -> dg.SensorResult:
    settings = Settings.from_environment().require(
        "batch_size", "sensor_max_tasks", "sensor_interval_s"
    )
    store.require_current()
    cursor = int(context.cursor or 0)
    # One more than a tick takes, to know whether tasks are left for the next tick.
    new_tasks = store.drafting_after(cursor, settings.sensor_max_tasks + 1)
    more_follow = len(new_tasks) > settings.sensor_max_tasks
    new_tasks = new_tasks[: settings.sensor_max_tasks]
    if not new_tasks:
        return dg.SensorResult(skip_reason=f"no new drafting tasks past #{cursor}")
    drafting_runs = unfinished_runs(context.instance, DRAFT_TASKS_JOB)
    if more_follow:
        new_tasks = without_runt(new_tasks, settings.batch_size, ramp_up=drafting_runs == 0)
    # Added here in one statement, not returned as an AddDynamicPartitionsRequest: the daemon
    # checks such a request key by key, one query (and, on PostgreSQL, one connection) each,
    # which took 3 s for 300 tasks. Adding is idempotent, so a tick that fails after this line
    # loses nothing: the next one reads the same tasks again.
    context.instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, [key for _, key in new_tasks])
    newest = context.instance.get_paginated_dynamic_partitions(
        TASK_PARTITIONS_NAME, limit=len(new_tasks), ascending=False
    ).results
    # Tasks re-queued by `tasks retry` keep their partitions, older than the newest. Several of
    # them (a retry of many failed tasks) are worth one listing of the partitions, as the
    # below-quorum schedule makes, to batch neighbours instead of requesting a run for each.
    older = {key for _, key in new_tasks} - set(newest)
    order = None
    if len(older) > 1:
        keys = context.instance.get_dynamic_partitions(TASK_PARTITIONS_NAME)
        order = {key: index for index, key in enumerate(keys)}
    return dg.SensorResult(
        run_requests=plan_runs(
            new_tasks,
            settings.batch_size,
            newest[::-1],
            ramp_up=drafting_runs == 0,
            ramp_down=not more_follow,
            partition_order=order,
        ),
        cursor=str(new_tasks[-1][0]),
    )
