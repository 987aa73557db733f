"""The usage domain's definitions."""

import dagster as dg

from drafts_pipeline.defs.usage.assets import daily_llm_usage, llm_calls, provider_scorecard
from drafts_pipeline.defs.usage.schedules import (
    daily_llm_usage_job,
    daily_llm_usage_schedule,
    provider_scorecard_job,
    provider_scorecard_schedule,
)

defs = dg.Definitions(
    assets=[llm_calls, daily_llm_usage, provider_scorecard],
    jobs=[daily_llm_usage_job, provider_scorecard_job],
    schedules=[daily_llm_usage_schedule, provider_scorecard_schedule],
)
