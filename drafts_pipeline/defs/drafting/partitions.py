"""The partitions of the per-task assets: one dynamic partition per documentation task."""

import dagster as dg

TASK_PARTITIONS_NAME = "documentation_tasks"
task_partitions = dg.DynamicPartitionsDefinition(name=TASK_PARTITIONS_NAME)

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def run_task_ids(context: dg.AssetCheckExecutionContext) -> list[str] | None:
    """The tasks a check's run covers: its partitions, or None (every task) for a run without
    any, as when a check is executed alone from the UI.

    Read from the run's partition tags: a run of checks only, with a partition chosen, has them
    but no partitioned asset, so `context.partition_keys` is not available to it.
    """
    if not (context.has_partition_key or context.has_partition_key_range):
        return None
    key_range = context.partition_key_range
    if key_range.start == key_range.end:
        return [key_range.start]
    with dg.partition_loading_context(dynamic_partitions_store=context.instance):
        return list(task_partitions.get_partition_keys_in_range(key_range))


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run cover every partition added from `first` to `last`."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}
