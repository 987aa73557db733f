"""The Dagster `Definitions` of drafts_pipeline: what `dagster dev` serves."""

import os

import dagster as dg

from drafts_pipeline import settings
from drafts_pipeline.assets.ballot import voting_ballot
from drafts_pipeline.assets.drafts import build_draft_assets
from drafts_pipeline.assets.scorecard import (
    provider_scorecard,
    provider_scorecard_job,
    provider_scorecard_schedule,
)
from drafts_pipeline.assets.tasks import pending_tasks
from drafts_pipeline.assets.usage import (
    daily_llm_usage,
    daily_llm_usage_job,
    daily_llm_usage_schedule,
)
from drafts_pipeline.assets.voting_set import voting_ready_set
from drafts_pipeline.jobs import draft_tasks_job, publish_voting_set_job
from drafts_pipeline.llm.providers import provider_resources
from drafts_pipeline.schedules import below_quorum_schedule
from drafts_pipeline.sensors import drafting_tasks_sensor
from drafts_pipeline.store import DraftStore

# The task graph (per-task partitions and the voting-ready set). The usage assets are beside it:
# `daily_llm_usage` has daily partitions, `provider_scorecard` reads every draft.
ASSETS = [pending_tasks, build_draft_assets(), voting_ballot, voting_ready_set]


def build_resources(mode: str | None = None, database_url: str | None = None) -> dict[str, object]:
    """The store and one resource per provider, configured from the environment.

    A database URL taken from `DRAFTS_DATABASE_URL` stays a `dg.EnvVar`: Dagster resolves it when
    a run or tick starts, and the UI's resource page shows the variable's name, never the URL and
    the password it may hold.
    """
    if database_url is None and os.environ.get(settings.DATABASE_URL_ENV):
        url: str | dg.EnvVar = dg.EnvVar(settings.DATABASE_URL_ENV)
    else:
        url = database_url or settings.database_url()
    return {
        "store": DraftStore(database_url=url),
        **provider_resources(mode or settings.llm_mode()),
    }


defs = dg.Definitions(
    assets=[*ASSETS, daily_llm_usage, provider_scorecard],
    jobs=[draft_tasks_job, publish_voting_set_job, daily_llm_usage_job, provider_scorecard_job],
    sensors=[drafting_tasks_sensor],
    schedules=[below_quorum_schedule, daily_llm_usage_schedule, provider_scorecard_schedule],
    resources=build_resources(),
)
