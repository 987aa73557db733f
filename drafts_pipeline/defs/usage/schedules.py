"""The usage jobs and their daily schedules: yesterday's usage, then the scorecard."""

import dagster as dg

from drafts_pipeline.defs.usage.assets import daily_llm_usage, provider_scorecard

daily_llm_usage_job = dg.define_asset_job(
    "daily_llm_usage_job",
    selection=[daily_llm_usage],
)

# Each day at 00:15 UTC, yesterday's partition (the last complete day). Older days: a backfill.
daily_llm_usage_schedule = dg.build_schedule_from_partitioned_job(
    daily_llm_usage_job,
    name="daily_llm_usage_schedule",
    hour_of_day=0,
    minute_of_hour=15,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


provider_scorecard_job = dg.define_asset_job(
    "provider_scorecard_job",
    selection=[provider_scorecard],
)

provider_scorecard_schedule = dg.ScheduleDefinition(
    name="provider_scorecard_schedule",
    job=provider_scorecard_job,
    cron_schedule="20 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Refreshes the scorecard each day at 00:20 UTC; materialise it any time in the UI.",
)
