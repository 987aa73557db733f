"""`draft_tasks`: the per-task graph for a batch of task partitions, what the sensor and the
below-quorum schedule launch."""

import dagster as dg

# The ballot and every asset it is made from: the per-task graph. (The voting group also holds
# whole-set assets, downstream of the ballot.)
PER_TASK_ASSETS = dg.AssetSelection.assets("voting_ballot").upstream()

draft_tasks_job = dg.define_asset_job(
    "draft_tasks",
    selection=PER_TASK_ASSETS,
    description="Prompts, provider drafts and ballots for a batch of task partitions, in one "
    "process (the providers of a batch still run concurrently inside their step).",
)
