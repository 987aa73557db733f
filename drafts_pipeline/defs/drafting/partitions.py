"""The partitions of the per-task assets: one dynamic partition per documentation task."""

import dagster as dg

TASK_PARTITIONS_NAME = "documentation_tasks"
task_partitions = dg.DynamicPartitionsDefinition(name=TASK_PARTITIONS_NAME)

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run cover every partition added from `first` to `last`."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}
