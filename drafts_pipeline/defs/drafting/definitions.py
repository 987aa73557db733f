"""The drafting domain's definitions."""

import dagster as dg

from drafts_pipeline.defs.drafting.assets import pending_tasks, provider_drafts
from drafts_pipeline.defs.drafting.batch_sensors import provider_batches_sensor
from drafts_pipeline.defs.drafting.checks import provider_draft_checks
from drafts_pipeline.defs.drafting.jobs import draft_tasks_job
from drafts_pipeline.defs.drafting.schedules import below_quorum_schedule
from drafts_pipeline.defs.drafting.sensors import drafting_tasks_sensor

defs = dg.Definitions(
    assets=[pending_tasks, provider_drafts],
    asset_checks=[provider_draft_checks],
    jobs=[draft_tasks_job],
    sensors=[drafting_tasks_sensor, provider_batches_sensor],
    schedules=[below_quorum_schedule],
)
