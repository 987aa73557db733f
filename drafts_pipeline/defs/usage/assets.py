"""The usage assets: `daily_llm_usage` (attempts, tokens and cost per UTC day, from the
`llm_calls` table) and `provider_scorecard` (how each provider has done over every draft it
wrote)."""

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import dagster as dg

from drafts_pipeline.defs.loaded_settings import LOADED_SETTINGS
from drafts_pipeline.defs.metadata import markdown_table
from drafts_pipeline.llm.prompt_cache import cache_hit_rate
from drafts_pipeline.settings import Settings
from drafts_pipeline.store import DraftStore

if TYPE_CHECKING:
    import pandas as pd

# From the first day the settings give when the code loads (the default if that is bad: the
# runs then fail naming the variable).
usage_days = dg.DailyPartitionsDefinition(
    start_date=LOADED_SETTINGS.usage_start_date, timezone="UTC"
)

USAGE_COLUMNS = [
    "day",
    "provider",
    "model",
    "calls",
    "failures",
    "unfinished",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_hit_rate",
    "reasoning_tokens",
    "cost_usd",
]


def usage_frame(store: DraftStore, day: str) -> "pd.DataFrame":
    """One row per provider and model with calls on `day` (YYYY-MM-DD, UTC). Every HTTP
    attempt counts, retries included; `cached_tokens` and `cache_write_tokens` are parts of
    `input_tokens`, and `cache_hit_rate` is the first over the input (empty without input);
    `cost_usd` is exact (Decimal)."""
    import pandas as pd

    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    rows = store.usage_between(start, start + timedelta(days=1))
    return pd.DataFrame([{"day": day, **row} for row in rows], columns=USAGE_COLUMNS)


# Written by the provider calls of every run, not materialised by Dagster: an external asset,
# so the graph shows where `daily_llm_usage` reads from.
llm_calls = dg.AssetSpec(
    "llm_calls",
    group_name="usage",
    kinds={"sql"},
    description="The call log: the `llm_calls` table of the draft store, one row per HTTP "
    "attempt to a provider (task, provider, model, attempt, status code or error, request id, "
    "tokens, cost, latency, run), written just before the request is sent and completed on "
    "its answer. The provider calls of the drafting runs write it; Dagster does not "
    "materialise it.",
)


@dg.asset(
    partitions_def=usage_days,
    deps=[llm_calls],
    group_name="usage",
    kinds={"pandas"},
    description="Per UTC day, provider and model: HTTP attempts to the provider (retries "
    "included), failed attempts, unfinished attempts (written, never answered: the run died "
    "in the call or just before it went out), input, output, cached, cache-write and "
    "reasoning tokens, the cache hit rate (cached input tokens over input tokens), and cost "
    "in USD (exact decimals), from the `llm_calls` table.",
)
def daily_llm_usage(context: dg.AssetExecutionContext, store: DraftStore) -> dg.Output:
    Settings.from_environment().require("usage_start_date")
    frame = usage_frame(store, context.partition_key)
    cost = sum(frame["cost_usd"], Decimal(0))
    by_provider = {
        provider: f"{sum(group['cost_usd'], Decimal(0)):.6f}"
        for provider, group in frame.groupby("provider")
    }
    hit_rates = {provider: hit_rate_value(group) for provider, group in frame.groupby("provider")}
    return dg.Output(
        frame,
        metadata={
            "calls": dg.MetadataValue.int(int(frame["calls"].sum())),
            "failures": dg.MetadataValue.int(int(frame["failures"].sum())),
            "unfinished": dg.MetadataValue.int(int(frame["unfinished"].sum())),
            "input_tokens": dg.MetadataValue.int(int(frame["input_tokens"].sum())),
            "cached_tokens": dg.MetadataValue.int(int(frame["cached_tokens"].sum())),
            "cache_write_tokens": dg.MetadataValue.int(int(frame["cache_write_tokens"].sum())),
            "cache_hit_rate": _rate_metadata(hit_rate_value(frame)),
            "cache_hit_rate_by_provider": dg.MetadataValue.json(hit_rates),
            "cost_usd": dg.MetadataValue.float(float(cost)),
            "cost_usd_by_provider": dg.MetadataValue.json(by_provider),
            "rows": dg.MetadataValue.int(len(frame)),
        },
    )


def hit_rate_value(rows: "pd.DataFrame") -> float | None:
    """The cache hit rate over `rows`: their cached input tokens over their input tokens."""
    return cache_hit_rate(int(rows["cached_tokens"].sum()), int(rows["input_tokens"].sum()))


def _rate_metadata(rate: float | None) -> dg.MetadataValue:
    """A day without input tokens has no rate, shown as such rather than as zero."""
    return dg.MetadataValue.null() if rate is None else dg.MetadataValue.float(rate)


SCORECARD_COLUMNS = [
    "provider",
    "drafts",
    "valid",
    "invalid",
    "failed",
    "valid_rate",
    "repaired",
    "retries",
    "latency_p50_ms",
    "latency_p95_ms",
    "input_tokens",
    "output_tokens",
    "cost_usd",
]


def percentile(values: list[int], share: float) -> float | None:
    """The `share` percentile of `values` (nearest rank); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(share * len(ordered)) - 1)])


def scorecard_frame(store: DraftStore) -> "pd.DataFrame":
    import pandas as pd

    rows = []
    for row in store.scorecard_rows():
        latencies = row.pop("latencies_ms")
        rows.append(
            {
                **row,
                "valid_rate": row["valid"] / row["drafts"],
                "latency_p50_ms": percentile(latencies, 0.50),
                "latency_p95_ms": percentile(latencies, 0.95),
            }
        )
    return pd.DataFrame(rows, columns=SCORECARD_COLUMNS)


@dg.asset(
    deps=["voting_ballot"],
    group_name="usage",
    kinds={"pandas"},
    description="Per provider, over every draft version stored: drafts valid, invalid and "
    "failed, the valid rate, the drafts whose JSON was read only after a repair, retries, "
    "latency p50 and p95, tokens and cost (exact decimals). "
    "For the team choosing providers; the voting application never sees it.",
)
def provider_scorecard(store: DraftStore) -> dg.Output:
    frame = scorecard_frame(store)
    table = frame.assign(cost_usd=frame["cost_usd"].map(lambda cost: f"{cost:.6f}"))
    return dg.Output(
        frame,
        metadata={
            "providers": dg.MetadataValue.int(len(frame)),
            "drafts": dg.MetadataValue.int(int(frame["drafts"].sum())),
            "scorecard": dg.MetadataValue.md(markdown_table(table)),
        },
    )
