"""The checks of each provider's drafts: each task's newest draft is valid, and none speaks as
a model or vendor or names one its code does not use (which would tell voters who wrote it).

They are a definition of their own, which reads the draft store, so that each can run alone:
in a run that drafts, over the run's tasks, after the drafts are stored; executed from the
check's page in the Dagster UI, over the partition chosen there, or over every task when none
is. They need the store only, not the providers.
"""

from collections.abc import Collection, Iterator, Mapping

import dagster as dg

from drafts_pipeline.defs.drafting.partitions import run_task_ids
from drafts_pipeline.defs.loaded_settings import LOADED_PROVIDERS
from drafts_pipeline.drafting.validation import leak_in, problem_in
from drafts_pipeline.llm.provider_file import ProviderSpec
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.ballots import UnusableDraft

DRAFTS_VALID = "drafts_valid"
NO_SELF_IDENTIFICATION = "no_self_identification"
TABLE_ROWS = 20


def draft_check_specs(specs: tuple[ProviderSpec, ...]) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name, asset=spec.asset_name, description=text)
        for spec in specs
        for name, text in (
            (
                DRAFTS_VALID,
                "The newest draft of each task is valid (a provider that failed warns): over "
                "the run's tasks; run alone, over the partition chosen, or every task without one.",
            ),
            (
                NO_SELF_IDENTIFICATION,
                "No task's newest draft speaks as a model or vendor, or names one its code "
                "does not use: over the run's tasks; run alone, over the partition chosen, or "
                "every task without one.",
            ),
        )
    ]


def problems_table(problems: Mapping[str, str]) -> dg.MetadataValue:
    """The first problems as a Markdown table (task, problem)."""
    lines = ["| task | problem |", "|---|---|"]
    lines += [
        f"| {task} | {reason.replace('|', '/')[:300]} |"
        for task, reason in list(problems.items())[:TABLE_ROWS]
    ]
    return dg.MetadataValue.md("\n".join(lines))


def draft_check_results(
    asset_key: dg.AssetKey,
    names: Collection[str],
    checked: int,
    unusable: Mapping[str, UnusableDraft],
) -> list[dg.AssetCheckResult]:
    """The results of the checks `names` over `checked` tasks with a draft, given each one's
    newest draft where it is not valid (task id -> draft)."""
    problems = {
        task_id: problem
        for task_id, draft in sorted(unusable.items())
        if (problem := problem_in(draft.status, draft.validation))
    }
    leaks = {
        task_id: leak
        for task_id, draft in sorted(unusable.items())
        if (leak := leak_in(draft.validation))
    }
    results = []
    if DRAFTS_VALID in names:
        results.append(
            dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=DRAFTS_VALID,
                passed=not problems,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "checked": dg.MetadataValue.int(checked),
                    "not_valid": dg.MetadataValue.int(len(problems)),
                    "problems": problems_table(problems),
                },
            )
        )
    if NO_SELF_IDENTIFICATION in names:
        results.append(
            dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=NO_SELF_IDENTIFICATION,
                passed=not leaks,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "checked": dg.MetadataValue.int(checked),
                    "leaking_drafts": dg.MetadataValue.int(len(leaks)),
                    "leaks": problems_table(leaks),
                },
            )
        )
    return results


def build_draft_checks(specs: tuple[ProviderSpec, ...]) -> dg.AssetChecksDefinition:
    """Both checks of every provider's draft asset, in one step; any subset runs alone."""
    by_asset = {dg.AssetKey(spec.asset_name): spec for spec in specs}

    @dg.multi_asset_check(
        name="provider_draft_checks", specs=draft_check_specs(specs), can_subset=True
    )
    def provider_draft_checks(
        context: dg.AssetCheckExecutionContext, store: DraftStore
    ) -> Iterator[dg.AssetCheckResult]:
        store.require_current()
        task_ids = run_task_ids(context)
        for asset_key, spec in by_asset.items():
            names = {k.name for k in context.selected_asset_check_keys if k.asset_key == asset_key}
            if names:
                checked, unusable = store.newest_unusable_drafts(spec.name, task_ids)
                yield from draft_check_results(asset_key, names, checked, unusable)

    return provider_draft_checks


provider_draft_checks = build_draft_checks(LOADED_PROVIDERS)
