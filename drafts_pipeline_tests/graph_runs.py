"""Running the asset graph on a real (temporary) Dagster instance, for the tests."""

from collections.abc import Sequence

import dagster as dg

from drafts_pipeline.definitions import ASSETS, build_resources
from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME, range_tags


def materialize_tasks(
    instance: dg.DagsterInstance,
    database_url: str,
    task_ids: Sequence[str],
    *,
    providers: dict[str, object] | None = None,
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialise the whole graph (the per-task assets for all `task_ids` in one run, and
    the voting-ready set) with offline providers unless others are given."""
    new = [k for k in task_ids if not instance.has_dynamic_partition(TASK_PARTITIONS_NAME, k)]
    instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, new)
    resources = {**build_resources("offline", database_url), **(providers or {})}
    return dg.materialize(
        ASSETS,
        instance=instance,
        resources=resources,
        tags=range_tags(task_ids[0], task_ids[-1]),
        run_config=run_config,
    )
