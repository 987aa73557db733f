"""`daily_llm_usage`: what the providers were asked and what it cost, per UTC day."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import dagster as dg

from drafts_pipeline.settings import usage_start_date
from drafts_pipeline.store import DraftStore

if TYPE_CHECKING:
    import pandas as pd

usage_days = dg.DailyPartitionsDefinition(start_date=usage_start_date(), timezone="UTC")

USAGE_COLUMNS = [
    "day",
    "provider",
    "model",
    "calls",
    "failures",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
]


def usage_frame(store: DraftStore, day: str) -> "pd.DataFrame":
    """One row per provider and model with calls on `day` (YYYY-MM-DD, UTC). Every HTTP
    attempt counts, retries included; `cost_usd` is exact (Decimal)."""
    import pandas as pd

    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    rows = store.usage_between(start, start + timedelta(days=1))
    return pd.DataFrame([{"day": day, **row} for row in rows], columns=USAGE_COLUMNS)


@dg.asset(
    partitions_def=usage_days,
    group_name="usage",
    kinds={"pandas"},
    description="Per UTC day, provider and model: HTTP attempts to the provider (retries "
    "included), failed attempts, input, output, cached and reasoning tokens, and cost in USD "
    "(exact decimals), from the `llm_calls` table.",
)
def daily_llm_usage(context: dg.AssetExecutionContext, store: DraftStore) -> dg.Output:
    frame = usage_frame(store, context.partition_key)
    cost = sum(frame["cost_usd"], Decimal(0))
    by_provider = {
        provider: f"{sum(group['cost_usd'], Decimal(0)):.6f}"
        for provider, group in frame.groupby("provider")
    }
    return dg.Output(
        frame,
        metadata={
            "calls": dg.MetadataValue.int(int(frame["calls"].sum())),
            "failures": dg.MetadataValue.int(int(frame["failures"].sum())),
            "cost_usd": dg.MetadataValue.float(float(cost)),
            "cost_usd_by_provider": dg.MetadataValue.json(by_provider),
            "rows": dg.MetadataValue.int(len(frame)),
        },
    )


daily_llm_usage_job = dg.define_asset_job(
    "daily_llm_usage_job",
    selection=[daily_llm_usage],
    executor_def=dg.in_process_executor,
)

# Each day at 00:15 UTC, yesterday's partition (the last complete day). Older days: a backfill.
daily_llm_usage_schedule = dg.build_schedule_from_partitioned_job(
    daily_llm_usage_job,
    name="daily_llm_usage_schedule",
    hour_of_day=0,
    minute_of_hour=15,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
