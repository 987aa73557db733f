"""`provider_scorecard`: how each provider has done over every draft it wrote."""

import math
from typing import TYPE_CHECKING

import dagster as dg

from drafts_pipeline.assets.ballot import voting_ballot
from drafts_pipeline.assets.metadata import markdown_table
from drafts_pipeline.store import DraftStore

if TYPE_CHECKING:
    import pandas as pd

SCORECARD_COLUMNS = [
    "provider",
    "drafts",
    "valid",
    "invalid",
    "failed",
    "valid_rate",
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
    deps=[voting_ballot],
    group_name="usage",
    kinds={"pandas"},
    description="Per provider, over every draft version stored: drafts valid, invalid and "
    "failed, the valid rate, retries, latency p50 and p95, tokens and cost (exact decimals). "
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


provider_scorecard_job = dg.define_asset_job(
    "provider_scorecard_job",
    selection=[provider_scorecard],
    executor_def=dg.in_process_executor,
)

provider_scorecard_schedule = dg.ScheduleDefinition(
    name="provider_scorecard_schedule",
    job=provider_scorecard_job,
    cron_schedule="20 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Refreshes the scorecard each day at 00:20 UTC; materialise it any time in the UI.",
)
