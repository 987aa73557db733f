"""`draft_tasks`: the per-task graph for a batch of task partitions, what the sensor and the
below-quorum schedule launch."""

import dagster as dg

# The voting group's whole-set assets are not per task.
PER_TASK_ASSETS = dg.AssetSelection.groups("drafting", "voting") - dg.AssetSelection.assets(
    "voting_ready_set", "votes", "provider_leaderboard", "accepted_drafts"
)

draft_tasks_job = dg.define_asset_job(
    "draft_tasks",
    selection=PER_TASK_ASSETS,
    description="Prompts, provider drafts and ballots for a batch of task partitions, in one "
    "process (the providers of a batch still run concurrently inside their step).",
)
