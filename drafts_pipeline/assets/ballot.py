"""`voting_ballot`: quorum, blind labels and the one-way move `drafting -> voting`."""

import random
import string
from collections import Counter

import dagster as dg

from drafts_pipeline.drafting.ballot import cast_ballots
from drafts_pipeline.llm.providers import PROVIDER_SPECS
from drafts_pipeline.partitions import task_partitions
from drafts_pipeline.settings import batch_size
from drafts_pipeline.store import DraftStore


class BallotConfig(dg.Config):
    min_drafts: int = 2
    """Valid drafts a task needs before it goes to voting."""
    max_attempts: int = 3
    """Ballots below quorum before a task is marked `failed`."""


def labels_problem(labels: list[str]) -> str | None:
    """Why a ballot's labels are not A, B, C... each once; None when they are."""
    expected = list(string.ascii_uppercase[: len(labels)])
    if sorted(labels) != expected:
        return f"labels {sorted(labels)} are not {expected}"
    return None


@dg.asset(
    partitions_def=task_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=batch_size()),
    deps=[spec.asset_name for spec in PROVIDER_SPECS],
    group_name="voting",
    kinds={"python", "sql"},
    check_specs=[
        dg.AssetCheckSpec(
            "labels_complete_and_unique",
            asset="voting_ballot",
            description="Each task moved to voting has labels A, B, C... once each.",
        )
    ],
    description="Holds the ballot of each task: at quorum its valid drafts get random blind "
    "labels and the task moves to `voting` (once, atomically); below quorum the task stays in "
    "`drafting` with one more attempt, and becomes `failed` after `max_attempts`.",
)
def voting_ballot(
    context: dg.AssetExecutionContext, config: BallotConfig, store: DraftStore
) -> dg.MaterializeResult:
    rng = random.SystemRandom()
    outcomes: Counter[str] = Counter()
    moved: list[str] = []
    ballots = cast_ballots(
        store,
        context.partition_keys,
        min_drafts=config.min_drafts,
        max_attempts=config.max_attempts,
        rng=rng,
        run_id=context.run.run_id,
    )
    for key, outcome in zip(context.partition_keys, ballots, strict=True):
        outcomes[outcome.outcome] += 1
        if outcome.outcome == "voting":
            moved.append(key)
        elif outcome.outcome in ("drafting", "failed"):
            context.log.warning(
                f"task {key}: below quorum ({outcome.reason}); now {outcome.outcome}"
            )
    problems = {
        task_id: problem
        for task_id, labels in store.ballot_labels(moved).items()
        if (problem := labels_problem(labels))
    }
    return dg.MaterializeResult(
        metadata={
            "moved_to_voting": dg.MetadataValue.int(outcomes["voting"]),
            "below_quorum": dg.MetadataValue.int(outcomes["drafting"]),
            "failed": dg.MetadataValue.int(outcomes["failed"]),
            "unchanged": dg.MetadataValue.int(outcomes["unchanged"]),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="labels_complete_and_unique",
                passed=not problems,
                metadata={"bad_ballots": dg.MetadataValue.json(problems)},
            )
        ],
    )
