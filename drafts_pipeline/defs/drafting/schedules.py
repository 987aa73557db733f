"""`below_quorum_schedule`: tasks a ballot left in `drafting`, that a daily budget held back
until a time now past, or that stalled there, get another run.

A ballot that finds fewer valid drafts than its quorum leaves the task in `drafting` with one
more attempt (and fails it after `max_attempts`). A task can also stall in `drafting` with no
attempt counted: its run died, or a ballot left it to another run that then died. The sensor
only picks up tasks it has not seen, so without this schedule such tasks would wait for a
manual backfill. Re-running one re-calls only the providers whose draft is not valid: valid
drafts are reused, and claims keep a run from calling for work another live run holds.
"""

import hashlib

import dagster as dg

from drafts_pipeline.defs.drafting.jobs import DRAFT_TASKS_JOB
from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME, range_tags
from drafts_pipeline.defs.runs import partitions_of_unfinished_runs
from drafts_pipeline.settings import Settings
from drafts_pipeline.store import DraftStore

RETRY_CRON = "*/15 * * * *"
# A task in `drafting` that no run holds and nothing has changed for this long is stalled.
STALLED_AFTER_S = 30 * 60


def plan_retries(
    tasks: list[tuple[str, int]], partition_order: dict[str, int], batch: int
) -> list[dg.RunRequest]:
    """Runs over `tasks` (id, attempts), each a range of partitions that are next to each other
    in the partitions' order, so that a run covers no task that is not below quorum, and of at
    most `batch` tasks. The run key names the tasks and their attempts. Dagster keeps a
    schedule's run keys apart per tick: the key keeps a tick that the daemon evaluates again
    from requesting a run twice, and a later tick asks again for the tasks still waiting: those
    whose run failed before drafting (a missing key) at every tick until one drafts. Tasks whose
    run is still queued or going are left out before this (`partitions_of_unfinished_runs`)."""
    ordered = sorted(tasks, key=lambda task: partition_order[task[0]])
    groups: list[list[tuple[str, int]]] = []
    for task in ordered:
        group = groups[-1] if groups else None
        if (
            group is not None
            and len(group) < batch
            and partition_order[task[0]] == partition_order[group[-1][0]] + 1
        ):
            group.append(task)
        else:
            groups.append([task])
    requests = []
    for group in groups:
        signature = ",".join(f"{task_id}:{attempts}" for task_id, attempts in group)
        digest = hashlib.sha256(signature.encode()).hexdigest()[:16]
        requests.append(
            dg.RunRequest(
                run_key=f"below-quorum-{digest}", tags=range_tags(group[0][0], group[-1][0])
            )
        )
    return requests


@dg.schedule(
    cron_schedule=RETRY_CRON,
    job_name=DRAFT_TASKS_JOB,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 15 minutes, another run for the tasks that a ballot left in `drafting` "
    "below quorum, that a daily budget held back until a time now past, or that stalled there "
    "(no live claim, unchanged for 30 minutes: their run died), at most DRAFTS_BATCH_SIZE of "
    "them a tick; only the providers whose draft is not valid are called again.",
)
def below_quorum_schedule(
    context: dg.ScheduleEvaluationContext, store: DraftStore
) -> dg.SkipReason | list[dg.RunRequest]:
    batch = Settings.from_environment().require("batch_size").batch_size
    store.require_current()
    tasks = store.retry_candidates(batch, stalled_after_s=STALLED_AFTER_S)
    if not tasks:
        return dg.SkipReason("no task below quorum or stalled")
    # A task drafted by `drafts-pipeline run` has no partition on this instance yet; adding
    # one that exists is a no-op.
    context.instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, [task_id for task_id, _ in tasks])
    keys = context.instance.get_dynamic_partitions(TASK_PARTITIONS_NAME)
    # A run queued or going for a task will ballot it: another would only cost a run start.
    waiting = partitions_of_unfinished_runs(context.instance, keys)
    tasks = [task for task in tasks if task[0] not in waiting]
    if not tasks:
        return dg.SkipReason("every task below quorum or stalled has a run queued or going")
    order = {key: index for index, key in enumerate(keys)}
    return plan_retries(tasks, order, batch)
