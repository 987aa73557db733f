"""The voting domain's definitions."""

import dagster as dg

from drafts_pipeline.defs.voting.assets import voting_ballot, voting_ready_set
from drafts_pipeline.defs.voting.jobs import publish_voting_set_job

defs = dg.Definitions(assets=[voting_ballot, voting_ready_set], jobs=[publish_voting_set_job])
