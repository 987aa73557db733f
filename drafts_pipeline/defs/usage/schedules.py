"""The usage jobs and their daily schedules: the last days' usage, then the scorecard."""

from datetime import UTC, date, timedelta

import dagster as dg

from drafts_pipeline.defs.loaded_settings import LOADED_SETTINGS
from drafts_pipeline.defs.usage.assets import daily_llm_usage, provider_scorecard

daily_llm_usage_job = dg.define_asset_job(
    "daily_llm_usage_job",
    selection=[daily_llm_usage],
)

# Days each tick materialises, counting back from yesterday. A batch's items count on the day it
# was submitted, and are collected up to a day later (the providers' window) plus the sensor's
# lag: the day before yesterday is materialised again, so that its partition includes them.
REFRESHED_DAYS = 2


@dg.schedule(
    cron_schedule="15 0 * * *",
    job=daily_llm_usage_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Each day at 00:15 UTC, yesterday's usage (the last complete day) and the day "
    "before's again, which batches collected since have added to. Older days: a backfill.",
)
def daily_llm_usage_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    today = context.scheduled_execution_time.astimezone(UTC).date()
    first = date.fromisoformat(LOADED_SETTINGS.usage_start_date)
    days = [today - timedelta(days=back) for back in range(1, REFRESHED_DAYS + 1)]
    return [
        dg.RunRequest(run_key=f"usage-{day}-{today}", partition_key=day.isoformat())
        for day in reversed(days)
        if day >= first
    ]


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
