"""Running the asset graph on a real (temporary) Dagster instance, for the tests."""

from collections.abc import Sequence

import dagster as dg

from drafts_pipeline.definitions import ASSETS, build_resources, task_assets
from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME, range_tags
from drafts_pipeline.llm.provider_file import ProviderSpec


def materialize_tasks(
    instance: dg.DagsterInstance,
    database_url: str,
    task_ids: Sequence[str],
    *,
    providers: dict[str, object] | None = None,
    run_config: dict | None = None,
    specs: tuple[ProviderSpec, ...] | None = None,
    mode: str = "offline",
) -> dg.ExecuteInProcessResult:
    """Materialise the whole graph (the per-task assets for all `task_ids` in one run, and
    the voting-ready set) with offline providers unless others are given; `specs` builds it
    for other providers than those the definitions loaded, in `mode`."""
    new = [k for k in task_ids if not instance.has_dynamic_partition(TASK_PARTITIONS_NAME, k)]
    instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, new)
    built = (
        build_resources(mode, database_url)
        if specs is None
        else build_resources(mode, database_url, specs)
    )
    resources = {**built, **(providers or {})}
    return dg.materialize(
        ASSETS if specs is None else task_assets(specs),
        instance=instance,
        resources=resources,
        tags=range_tags(task_ids[0], task_ids[-1]),
        run_config=run_config,
    )


# Retries and pace fast enough for a test against the fake provider server.
FAST = {"initial_delay_s": 0.01, "max_delay_s": 0.05, "requests_per_minute": 60_000}


def latest_metadata(instance: dg.DagsterInstance, asset: str, task_id: str) -> dict[str, object]:
    """What the UI shows for the partition: its latest materialisation's metadata, by value."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(dg.AssetKey(asset), asset_partitions=[task_id]), limit=1
    ).records
    materialisation = records[0].asset_materialization
    assert materialisation is not None
    return {"run_id": records[0].run_id} | {
        name: value.value for name, value in materialisation.metadata.items()
    }
