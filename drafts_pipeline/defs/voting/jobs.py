"""`publish_voting_set`: the voting-ready set, after the batches have balloted;
`refresh_vote_results`: what the votes say, when they arrive."""

import dagster as dg

publish_voting_set_job = dg.define_asset_job(
    "publish_voting_set", selection=dg.AssetSelection.assets("voting_ready_set")
)

refresh_vote_results_job = dg.define_asset_job(
    "refresh_vote_results",
    selection=dg.AssetSelection.assets("votes", "provider_leaderboard", "accepted_drafts"),
    description="Counts the votes, refits the leaderboard and decides the accepted drafts from "
    "the votes table as it is now; `votes_sensor` launches it when votes arrive.",
)
