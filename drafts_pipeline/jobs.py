"""The job the sensor and schedules launch: the per-task graph for a batch of tasks."""

import dagster as dg

PER_TASK_ASSETS = dg.AssetSelection.groups("drafting", "voting") - dg.AssetSelection.assets(
    "voting_ready_set"
)

draft_tasks_job = dg.define_asset_job(
    "draft_tasks",
    selection=PER_TASK_ASSETS,
    executor_def=dg.in_process_executor,
    description="Prompts, provider drafts and ballots for a batch of task partitions, in one "
    "process (the providers of a batch still run concurrently inside their step).",
)

publish_voting_set_job = dg.define_asset_job(
    "publish_voting_set",
    selection=dg.AssetSelection.assets("voting_ready_set"),
    executor_def=dg.in_process_executor,
)
