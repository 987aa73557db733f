"""What the votes say: `votes` (the votes table observed: counts per day and voter),
`provider_leaderboard` (Bradley-Terry strengths with bootstrap intervals, overall and per
language and template) and `accepted_drafts` (each task's winning draft, once clear).

The voting page and the votes import write the table; Dagster only reads it, so these assets
hold what the table said when they last ran. They name providers and models: they are for the
team running the pipeline, never for voters.
"""

from dataclasses import asdict
from typing import TYPE_CHECKING

import dagster as dg

from drafts_pipeline.defs.metadata import markdown_table
from drafts_pipeline.settings import Settings
from drafts_pipeline.store import DraftStore
from drafts_pipeline.voting.acceptance import current_verdicts
from drafts_pipeline.voting.leaderboard import (
    DEFAULT_ROUNDS,
    DEFAULT_SEED,
    current_leaderboard,
    display_frame,
)

if TYPE_CHECKING:
    import pandas as pd

RECENT_DAYS = 14
PREVIEW_ROWS = 20
VOTE_COUNT_COLUMNS = ["day", "voter", "current", "replaced"]
ACCEPTED_COLUMNS = [
    "task_id",
    "symbol",
    "source_path",
    "language",
    "label",
    "provider",
    "model",
    "draft_id",
    "votes",
    "first_places",
    "reason",
    "content",
]


@dg.asset(
    deps=["voting_ready_set"],
    group_name="voting",
    kinds={"pandas", "sql"},
    description="The `votes` table of the draft store, observed: votes per UTC day and voter, "
    "current and replaced (a voter's newer vote on a task replaces the older, kept as "
    "history). The voting page and the votes import write the table; this asset only counts. "
    "`votes_sensor` materialises it, with the leaderboard and the accepted drafts, when votes "
    "arrive.",
)
def votes(store: DraftStore) -> dg.Output:
    import pandas as pd

    store.require_current()
    counts = store.vote_counts()
    frame = pd.DataFrame([asdict(count) for count in counts], columns=VOTE_COUNT_COLUMNS)
    per_day = (
        frame.groupby("day")
        .agg(votes=("current", "sum"), replaced=("replaced", "sum"), voters=("voter", "nunique"))
        .reset_index()
        .tail(RECENT_DAYS)
    )
    return dg.Output(
        frame,
        metadata={
            "votes": dg.MetadataValue.int(int(frame["current"].sum())),
            "replaced": dg.MetadataValue.int(int(frame["replaced"].sum())),
            "voters": dg.MetadataValue.int(frame["voter"].nunique()),
            "newest_vote_row": dg.MetadataValue.int(store.vote_rows_after(0).newest),
            "recent_days": dg.MetadataValue.md(markdown_table(per_day)),
        },
    )


class LeaderboardConfig(dg.Config):
    bootstrap_rounds: int = DEFAULT_ROUNDS
    """Refits on resampled votes behind each 95% interval."""
    seed: int = DEFAULT_SEED
    """Seed of the resampling: the same votes and seed give the same intervals."""


def _provider_entries(overall: "pd.DataFrame") -> dict[str, dg.MetadataValue]:
    """Numeric entries per provider under keys that stay the same from run to run, so the
    asset's plots follow each provider."""
    entries: dict[str, dg.MetadataValue] = {}
    for row in overall.itertuples(index=False):
        entries[f"strength_{row.provider}"] = dg.MetadataValue.float(round(row.strength, 1))
        entries[f"ci_low_{row.provider}"] = dg.MetadataValue.float(round(row.ci_low, 1))
        entries[f"ci_high_{row.provider}"] = dg.MetadataValue.float(round(row.ci_high, 1))
        if row.win_rate is not None and row.win_rate == row.win_rate:
            entries[f"win_rate_{row.provider}"] = dg.MetadataValue.float(round(row.win_rate, 4))
        entries[f"votes_{row.provider}"] = dg.MetadataValue.int(int(row.votes))
    return entries


@dg.asset(
    deps=[votes],
    group_name="voting",
    kinds={"pandas", "scipy"},
    description="The providers ranked by Bradley-Terry strength on an Elo-like scale (mean "
    "1000; 400 points = 10-to-1 odds) fitted to every pairwise outcome the current votes imply, "
    "with 95% bootstrap intervals (votes resampled), win rates (ties half), votes, first "
    "places, models and cost per valid draft; over all votes, then per language and per "
    "template (column `scope`). See docs/voting.md, 'The leaderboard's statistics'.",
)
def provider_leaderboard(config: LeaderboardConfig, store: DraftStore) -> dg.Output:
    store.require_current()
    frame = current_leaderboard(store, rounds=config.bootstrap_rounds, seed=config.seed)
    overall = frame[frame["scope"] == "all"]
    tables = {
        f"by_{scope}": dg.MetadataValue.md(
            markdown_table(display_frame(frame[frame["scope"] == scope], with_group=True))
        )
        for scope in ("language", "template")
    }
    return dg.Output(
        frame,
        metadata={
            "leaderboard": dg.MetadataValue.md(markdown_table(display_frame(overall))),
            **tables,
            "providers": dg.MetadataValue.int(len(overall)),
            "bootstrap_rounds": dg.MetadataValue.int(config.bootstrap_rounds),
            "seed": dg.MetadataValue.int(config.seed),
            **_provider_entries(overall),
        },
    )


@dg.asset(
    deps=[votes],
    group_name="voting",
    kinds={"pandas", "sql"},
    description="Per task, its accepted draft: once the task has at least DRAFTS_MIN_VOTES "
    "current votes (default 3) and more than half of them put one draft first; ties and "
    "`all_bad` votes count as votes but put no draft first, so an even split stays open. One "
    "row per accepted task with the draft, its label, provider and model, and the task's "
    "source path and symbol: what `drafts-pipeline apply` writes into the source.",
)
def accepted_drafts(store: DraftStore) -> dg.Output:
    import pandas as pd

    min_votes = Settings.from_environment().require("min_votes").min_votes
    store.require_current()
    verdicts = current_verdicts(store, min_votes)  # as `drafts-pipeline apply` reads them
    winners = {v.task_id: v.winner for v in verdicts if v.winner is not None}
    by_task = {v.task_id: v for v in verdicts}
    rows = [
        {
            **asdict(draft),
            "votes": by_task[draft.task_id].votes,
            "first_places": dict(by_task[draft.task_id].first_places)[draft.provider],
            "reason": by_task[draft.task_id].reason,
        }
        for draft in store.winning_drafts(winners)
    ]
    frame = pd.DataFrame(rows, columns=ACCEPTED_COLUMNS)
    undecided = pd.DataFrame(
        [
            {"task_id": v.task_id, "status": v.status, "votes": v.votes, "reason": v.reason}
            for v in verdicts
            if v.winner is None
        ],
        columns=["task_id", "status", "votes", "reason"],
    )
    statuses = [v.status for v in verdicts]
    return dg.Output(
        frame,
        metadata={
            "accepted": dg.MetadataValue.int(len(frame)),
            "open": dg.MetadataValue.int(statuses.count("open")),
            "needs_votes": dg.MetadataValue.int(statuses.count("needs_votes")),
            "min_votes": dg.MetadataValue.int(min_votes),
            "accepted_preview": dg.MetadataValue.md(
                markdown_table(
                    frame.head(PREVIEW_ROWS)[["task_id", "label", "provider", "votes", "reason"]]
                )
            ),
            "open_preview": dg.MetadataValue.md(
                markdown_table(undecided[undecided["status"] == "open"].head(PREVIEW_ROWS))
            ),
        },
    )
