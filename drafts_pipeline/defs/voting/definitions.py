"""The voting domain's definitions."""

import dagster as dg

from drafts_pipeline.defs.voting.assets import (
    labels_complete_and_unique,
    voting_ballot,
    voting_ready_set,
)
from drafts_pipeline.defs.voting.jobs import publish_voting_set_job

defs = dg.Definitions(
    assets=[voting_ballot, voting_ready_set],
    asset_checks=[labels_complete_and_unique],
    jobs=[publish_voting_set_job],
)
