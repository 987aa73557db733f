"""`draft_tasks`: the per-task graph for a batch of task partitions, what the sensor and the
below-quorum schedule launch."""

import dagster as dg

from drafts_pipeline.defs.loaded_settings import LOADED_PROVIDERS, drafting_providers
from drafts_pipeline.llm.provider_file import ProviderSpec

DRAFT_TASKS_JOB = "draft_tasks"
# The ballot and every asset it is made from: the per-task graph. (The voting group also holds
# whole-set assets, downstream of the ballot.)
PER_TASK_ASSETS = dg.AssetSelection.assets("voting_ballot").upstream()


def draft_tasks_selection(
    specs: tuple[ProviderSpec, ...], drafting: tuple[ProviderSpec, ...]
) -> dg.AssetSelection:
    """The per-task graph with the draft assets of the `drafting` providers only: the others
    of `specs` are defined, and drafted when a run selects them."""
    left_out = [spec.asset_name for spec in specs if spec not in drafting]
    return PER_TASK_ASSETS - dg.AssetSelection.assets(*left_out) if left_out else PER_TASK_ASSETS


def draft_tasks_description(drafting: tuple[ProviderSpec, ...]) -> str:
    return (
        "Prompts, provider drafts and ballots for a batch of task partitions, in one process "
        "(the providers of a batch still run concurrently inside their step). Drafts with: "
        f"{', '.join(spec.name for spec in drafting)} (DRAFTS_PROVIDERS, else the providers "
        "file's defaults, as the code location loaded)."
    )


_drafting = drafting_providers(LOADED_PROVIDERS)
draft_tasks_job = dg.define_asset_job(
    DRAFT_TASKS_JOB,
    selection=draft_tasks_selection(LOADED_PROVIDERS, _drafting),
    description=draft_tasks_description(_drafting),
)
