"""`publish_voting_set`: the voting-ready set, after the batches have balloted."""

import dagster as dg

publish_voting_set_job = dg.define_asset_job(
    "publish_voting_set", selection=dg.AssetSelection.assets("voting_ready_set")
)
