"""The voting assets: `voting_ballot` (quorum, blind labels and the one-way move
`drafting -> voting`) with its labels check, which reads the store and so runs alone too, and
`voting_ready_set` (what the voting application shows)."""

import random
import string
from collections import Counter
from collections.abc import Iterator
from typing import Any

import dagster as dg

from drafts_pipeline.defs.drafting.assets import BATCH_POLICY
from drafts_pipeline.defs.drafting.partitions import run_task_ids, task_partitions
from drafts_pipeline.defs.loaded_settings import LOADED_PROVIDERS
from drafts_pipeline.defs.metadata import markdown_table
from drafts_pipeline.drafting.ballot import MAX_LABELS, cast_ballots
from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.export_records import write_export_records
from drafts_pipeline.llm.provider_file import ProviderSpec
from drafts_pipeline.settings import Settings
from drafts_pipeline.store import DraftStore
from drafts_pipeline.voting_set import export_voting_set, voting_set

PREVIEW_ROWS = 10


class BallotConfig(dg.Config):
    min_drafts: int | None = None
    """Valid drafts a task needs before it goes to voting (1 to 26); unset: DRAFTS_MIN_DRAFTS,
    default 2."""
    max_attempts: int = 3
    """Ballots below quorum before a task is marked `failed`."""


def labels_problem(labels: list[str]) -> str | None:
    """Why a ballot's labels are not A, B, C... each once; None when they are."""
    if not labels:
        return "no labelled drafts"
    expected = list(string.ascii_uppercase[: len(labels)])
    if sorted(labels) != expected:
        return f"labels {sorted(labels)} are not {expected}"
    return None


def quorum(config: BallotConfig) -> int:
    """The run config's `min_drafts`, else DRAFTS_MIN_DRAFTS; one that no ballot of 1 to 26
    labels can meet is a `ConfigurationError`."""
    if config.min_drafts is None:
        return Settings.from_environment().require("min_drafts").min_drafts
    if not 1 <= config.min_drafts <= MAX_LABELS:
        raise ConfigurationError(
            f"voting_ballot config min_drafts={config.min_drafts} must be 1 to {MAX_LABELS}"
        )
    return config.min_drafts


def build_voting_ballot(specs: tuple[ProviderSpec, ...]) -> dg.AssetsDefinition:
    """The ballot, after the drafts of every provider of `specs` that its run drafts."""

    @dg.asset(
        partitions_def=task_partitions,
        backfill_policy=BATCH_POLICY,
        deps=[spec.asset_name for spec in specs],
        group_name="voting",
        kinds={"python", "sql"},
        description="Holds the ballot of each task: at quorum (`min_drafts`, else "
        "DRAFTS_MIN_DRAFTS) its valid drafts get random blind labels and the task moves to "
        "`voting` (once, atomically); below quorum the task stays in `drafting` with one more "
        "attempt, and becomes `failed` after `max_attempts`. A task a daily budget held back is "
        "left as it is, with no attempt counted.",
    )
    def voting_ballot(
        context: dg.AssetExecutionContext, config: BallotConfig, store: DraftStore
    ) -> dg.MaterializeResult:
        rng = random.SystemRandom()
        outcomes: Counter[str] = Counter()
        ballots = cast_ballots(
            store,
            context.partition_keys,
            min_drafts=quorum(config),
            max_attempts=config.max_attempts,
            rng=rng,
            run_id=context.run.run_id,
        )
        for key, outcome in zip(context.partition_keys, ballots, strict=True):
            outcomes[outcome.outcome] += 1
            if outcome.outcome in ("drafting", "failed"):
                context.log.warning(
                    f"task {key}: below quorum ({outcome.reason}); now {outcome.outcome}",
                    extra={"task_id": key},
                )
        # The batch's counts belong to the run, not to each task's partition.
        context.log.info(
            f"{len(context.partition_keys)} ballots: {outcomes['voting']} moved to voting, "
            f"{outcomes['drafting']} below quorum, {outcomes['failed']} failed, "
            f"{outcomes['held']} held by a daily budget, {outcomes['unchanged']} unchanged"
        )
        return dg.MaterializeResult()

    return voting_ballot


voting_ballot = build_voting_ballot(LOADED_PROVIDERS)


@dg.asset_check(
    asset="voting_ballot",
    name="labels_complete_and_unique",
    description="Each task in voting has labels A, B, C... once each: over the run's tasks; "
    "run alone, over the partition chosen, or every task without one.",
)
def labels_complete_and_unique(
    context: dg.AssetCheckExecutionContext, store: DraftStore
) -> dg.AssetCheckResult:
    store.require_current()
    labels = store.voting_labels(run_task_ids(context))
    problems = {
        task_id: problem
        for task_id, task_labels in sorted(labels.items())
        if (problem := labels_problem(task_labels))
    }
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "checked": dg.MetadataValue.int(len(labels)),
            "bad_ballots": dg.MetadataValue.json(dict(list(problems.items())[:50])),
        },
    )


def stats_metadata(stats: dict[str, Any]) -> dict[str, dg.MetadataValue]:
    """The export's stats as tables: valid rates by provider, language and template, and the
    most frequent reasons a draft was not valid. They name providers: the team's view."""
    import pandas as pd

    tables = {
        f"valid_rate_by_{dimension}": pd.DataFrame(
            [{dimension: group, **rates} for group, rates in stats[f"by_{dimension}"].items()],
            columns=[dimension, "drafts", "valid", "invalid", "failed", "valid_rate"],
        )
        for dimension in ("provider", "language", "template")
    }
    tables["top_failure_reasons"] = pd.DataFrame(
        stats["top_failure_reasons"], columns=["reason", "drafts", "example"]
    )
    return {name: dg.MetadataValue.md(markdown_table(table)) for name, table in tables.items()}


@dg.asset(
    deps=[voting_ballot],
    group_name="voting",
    kinds={"pandas", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            "no_provider_or_model_names",
            asset="voting_ready_set",
            description="No provider or model column, and no labelled draft that speaks as a "
            "model or vendor or names one its code does not use (the rule of draft validation).",
        )
    ],
    description="Every task in `voting` with its blind-labelled drafts (one row per task and "
    "label), without provider or model. Also written to `voting_ready_set.parquet` in the data "
    "folder for the voting application, with its manifest and stats beside it (for the team: "
    "they name providers). A draft whose text would tell voters who wrote it is left out, and "
    "the check fails naming it. The metadata holds the stats: valid rates by provider, "
    "language and template, and the top reasons drafts were not valid.",
)
def voting_ready_set(
    context: dg.AssetExecutionContext, store: DraftStore
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    settings = Settings.from_environment().require("llm_mode")
    published = voting_set(store)
    frame = published.frame
    export_path = settings.ensure_data_dir() / "voting_ready_set.parquet"
    export_voting_set(frame, "parquet", export_path)
    records = write_export_records(
        store, published, "parquet", export_path, llm_mode=settings.llm_mode
    )
    if published.withheld:
        context.log.error(
            f"{len(published.withheld)} labelled draft(s) left out of the voting-ready set: "
            "their text would tell voters who wrote them (see the no_provider_or_model_names "
            f"check); first: {published.withheld[0]}"
        )
    preview = frame.head(PREVIEW_ROWS)[["task_id", "label", "content"]].copy()
    preview["content"] = preview["content"].str.split("\n").str[0]
    yield dg.Output(
        frame,
        metadata={
            "tasks": dg.MetadataValue.int(frame["task_id"].nunique()),
            "drafts": dg.MetadataValue.int(len(frame)),
            "withheld": dg.MetadataValue.int(len(published.withheld)),
            "export": dg.MetadataValue.path(str(export_path)),
            "preview": dg.MetadataValue.md(markdown_table(preview)),
            "rows_sha256": dg.MetadataValue.text(records.manifest["export"]["rows_sha256"]),
            "manifest": dg.MetadataValue.path(str(records.manifest_path)),
            "stats": dg.MetadataValue.path(str(records.stats_path)),
            **stats_metadata(records.stats),
        },
    )
    yield dg.AssetCheckResult(
        check_name="no_provider_or_model_names",
        passed=not published.leaks,
        metadata={"leaks": dg.MetadataValue.json(published.leaks[:50])},
    )
