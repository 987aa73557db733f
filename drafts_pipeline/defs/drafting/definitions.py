"""The drafting domain's definitions, built for a set of providers."""

import dagster as dg

from drafts_pipeline.defs.drafting.assets import build_draft_assets, pending_tasks
from drafts_pipeline.defs.drafting.batch_sensors import build_provider_batches_sensor
from drafts_pipeline.defs.drafting.checks import build_draft_checks
from drafts_pipeline.defs.drafting.jobs import (
    DRAFT_TASKS_JOB,
    draft_tasks_description,
    draft_tasks_selection,
)
from drafts_pipeline.defs.drafting.schedules import below_quorum_schedule
from drafts_pipeline.defs.drafting.sensors import drafting_tasks_sensor
from drafts_pipeline.defs.loaded_settings import drafting_providers
from drafts_pipeline.llm.provider_file import ProviderSpec


def build_defs(specs: tuple[ProviderSpec, ...]) -> dg.Definitions:
    """Every provider's draft asset, checks and batches; the job drafts with those
    DRAFTS_PROVIDERS chooses (else the file's defaults)."""
    drafting = drafting_providers(specs)
    job = dg.define_asset_job(
        DRAFT_TASKS_JOB,
        selection=draft_tasks_selection(specs, drafting),
        description=draft_tasks_description(drafting),
    )
    return dg.Definitions(
        assets=[pending_tasks, build_draft_assets(specs)],
        asset_checks=[build_draft_checks(specs)],
        jobs=[job],
        sensors=[drafting_tasks_sensor, build_provider_batches_sensor(specs)],
        schedules=[below_quorum_schedule],
    )
