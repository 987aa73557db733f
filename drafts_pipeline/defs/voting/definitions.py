"""The voting domain's definitions."""

import dagster as dg

from drafts_pipeline.defs.voting.assets import (
    labels_complete_and_unique,
    voting_ballot,
    voting_ready_set,
)
from drafts_pipeline.defs.voting.jobs import publish_voting_set_job, refresh_vote_results_job
from drafts_pipeline.defs.voting.results import accepted_drafts, provider_leaderboard, votes
from drafts_pipeline.defs.voting.sensors import votes_sensor

defs = dg.Definitions(
    assets=[voting_ballot, voting_ready_set, votes, provider_leaderboard, accepted_drafts],
    asset_checks=[labels_complete_and_unique],
    jobs=[publish_voting_set_job, refresh_vote_results_job],
    sensors=[votes_sensor],
)
