"""The Dagster `Definitions` of drafts_pipeline (what `dagster dev` serves): the domains'
definitions merged, with the resources they share and one executor for every job."""

import dagster as dg

from drafts_pipeline.defs.drafting import definitions as drafting
from drafts_pipeline.defs.drafting.assets import build_draft_assets, pending_tasks
from drafts_pipeline.defs.drafting.checks import build_draft_checks
from drafts_pipeline.defs.loaded_settings import LOADED_PROVIDERS, LOADED_SETTINGS
from drafts_pipeline.defs.usage import definitions as usage
from drafts_pipeline.defs.voting import definitions as voting
from drafts_pipeline.defs.voting.assets import (
    build_voting_ballot,
    labels_complete_and_unique,
    voting_ready_set,
)
from drafts_pipeline.llm.provider_file import ProviderSpec
from drafts_pipeline.llm.providers import provider_resources
from drafts_pipeline.log_format import use_log_format
from drafts_pipeline.settings import DATABASE_URL_ENV, Settings
from drafts_pipeline.store import DraftStore


def task_assets(specs: tuple[ProviderSpec, ...]) -> list[object]:
    """The task graph for `specs`: the per-task assets, their checks and the voting-ready set
    they feed."""
    return [
        pending_tasks,
        build_draft_assets(specs),
        build_draft_checks(specs),
        build_voting_ballot(specs),
        labels_complete_and_unique,
        voting_ready_set,
    ]


ASSETS = task_assets(LOADED_PROVIDERS)


def build_resources(
    mode: str | None = None,
    database_url: str | None = None,
    specs: tuple[ProviderSpec, ...] = LOADED_PROVIDERS,
) -> dict[str, object]:
    """The store and one resource per provider of `specs`.

    A database URL taken from `DRAFTS_DATABASE_URL` stays a `dg.EnvVar`: Dagster resolves it when
    a run or tick starts, and the UI's resource page shows the variable's name, never the URL and
    the password it may hold.
    """
    settings = Settings.from_environment()
    if database_url is None and settings.database_url_env:
        url: str | dg.EnvVar = dg.EnvVar(DATABASE_URL_ENV)
    else:
        url = database_url or settings.database_url
    providers = provider_resources(mode or settings.llm_mode, specs)
    return {"store": DraftStore(database_url=url), **providers}


# The project's log lines in the runs and ticks of this code location (a bad value: text).
use_log_format(LOADED_SETTINGS.log_format)


def build_definitions(specs: tuple[ProviderSpec, ...] = LOADED_PROVIDERS) -> dg.Definitions:
    """The definitions for the providers `specs` (those of the providers file when the code
    location loads). Every job, the implicit asset job of UI materialisations and backfills
    included, runs its steps in the run's own process: a subprocess per step costs more than a
    batch's step work."""
    return dg.Definitions.merge(
        drafting.build_defs(specs),
        voting.build_defs(specs),
        usage.defs,
        dg.Definitions(executor=dg.in_process_executor, resources=build_resources(specs=specs)),
    )


defs = build_definitions()
