"""The voting domain's definitions, built for a set of providers."""

import dagster as dg

from drafts_pipeline.defs.voting.assets import (
    build_voting_ballot,
    labels_complete_and_unique,
    voting_ready_set,
)
from drafts_pipeline.defs.voting.jobs import publish_voting_set_job, refresh_vote_results_job
from drafts_pipeline.defs.voting.results import accepted_drafts, provider_leaderboard, votes
from drafts_pipeline.defs.voting.sensors import votes_sensor
from drafts_pipeline.llm.provider_file import ProviderSpec


def build_defs(specs: tuple[ProviderSpec, ...]) -> dg.Definitions:
    """The ballot after the drafts of `specs`, and what follows it."""
    return dg.Definitions(
        assets=[
            build_voting_ballot(specs),
            voting_ready_set,
            votes,
            provider_leaderboard,
            accepted_drafts,
        ],
        asset_checks=[labels_complete_and_unique],
        jobs=[publish_voting_set_job, refresh_vote_results_job],
        sensors=[votes_sensor],
    )
