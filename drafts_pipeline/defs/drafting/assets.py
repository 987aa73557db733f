"""The drafting assets: `pending_tasks`, and one `<provider>_draft` per configured provider.

The provider drafts are the specs of one multi-asset, made by one factory, so a batch's
providers run concurrently in one step (each at its own resource's limits) instead of one after
another; any subset can still be materialised on its own.
"""

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from drafts_pipeline.defs.drafting.partitions import task_partitions
from drafts_pipeline.defs.loaded_settings import LOADED_SETTINGS
from drafts_pipeline.drafting.provider_batch import ProviderBatchReport, draft_with_provider
from drafts_pipeline.errors import TaskValidationError
from drafts_pipeline.llm.keys import require_keys
from drafts_pipeline.llm.provider import LLMProvider
from drafts_pipeline.llm.providers import PROVIDER_SPECS, ProviderSpec
from drafts_pipeline.prompts.templates import BuiltPrompt, prompt_for
from drafts_pipeline.settings import Settings
from drafts_pipeline.store import DraftStore

# One run covers at most a batch of partitions, in backfills from the UI too.
BATCH_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=LOADED_SETTINGS.batch_size)


@dg.asset(
    partitions_def=task_partitions,
    backfill_policy=BATCH_POLICY,
    group_name="drafting",
    kinds={"python", "sql"},
    description="Documentation tasks in `drafting`, validated, with their prompt built and "
    "recorded (template version and hash). A task that cannot be drafted is marked `failed` "
    "with the reason; the rest of the batch goes on.",
)
def pending_tasks(context: dg.AssetExecutionContext, store: DraftStore) -> dg.MaterializeResult:
    store.require_current()
    keys = context.partition_keys
    tasks = store.tasks_by_id(keys)
    outcomes: Counter[str] = Counter()
    prompts: list[tuple[str, BuiltPrompt]] = []
    for key in keys:
        task = tasks.get(key)
        if task is None:
            context.log.warning(f"task {key}: no such task in the store; skipped")
            outcomes["missing"] += 1
            continue
        if task.status != "drafting":
            outcomes[f"already_{task.status}"] += 1
            continue
        try:
            prompt = prompt_for(task)
        except TaskValidationError as error:
            store.fail_task(task.id, str(error))
            context.log.error(str(error))
            outcomes["rejected"] += 1
            continue
        prompts.append((task.id, prompt))
        outcomes["ready"] += 1
    store.record_prompts(prompts)
    return dg.MaterializeResult(
        metadata={
            name: dg.MetadataValue.int(outcomes[name])
            for name in ("ready", "rejected", "missing", "already_voting", "already_failed")
        }
    )


class DraftConfig(dg.Config):
    force: bool = False
    """Regenerate (a new version) even where a reusable valid draft exists."""


def _metadata(report: ProviderBatchReport) -> dict[str, dg.MetadataValue]:
    """The same keys for every provider, so the UI plots them side by side."""
    counts = {
        name: dg.MetadataValue.int(report.outcomes[name])
        for name in ("valid", "invalid", "failed", "reused", "superseded", "claimed_elsewhere")
    }
    return {
        **counts,
        "model": dg.MetadataValue.text(report.model),
        "input_tokens": dg.MetadataValue.int(report.input_tokens),
        "output_tokens": dg.MetadataValue.int(report.output_tokens),
        "cost_usd": dg.MetadataValue.float(float(report.cost_usd))
        if report.cost_usd is not None
        else dg.MetadataValue.text("unknown price"),
        "latency_p50_ms": dg.MetadataValue.float(report.latency_quantile(0.5)),
        "latency_p95_ms": dg.MetadataValue.float(report.latency_quantile(0.95)),
    }


def _problems_table(problems: dict[str, str]) -> dg.MetadataValue:
    lines = ["| task | problem |", "|---|---|"]
    lines += [
        f"| {task} | {reason.replace('|', '/')[:300]} |"
        for task, reason in list(problems.items())[:20]
    ]
    return dg.MetadataValue.md("\n".join(lines))


def _check_results(spec: ProviderSpec, report: ProviderBatchReport) -> list[dg.AssetCheckResult]:
    key = dg.AssetKey(spec.asset_name)
    drafted = sum(report.outcomes[n] for n in ("valid", "invalid", "failed"))
    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name="drafts_valid",
            passed=not report.problems,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "drafted": dg.MetadataValue.int(drafted),
                "not_valid": dg.MetadataValue.int(len(report.problems)),
                "problems": _problems_table(report.problems),
            },
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="no_self_identification",
            passed=not report.leaks,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "leaking_drafts": dg.MetadataValue.int(len(report.leaks)),
                "leaks": _problems_table(report.leaks),
            },
        ),
    ]


def build_draft_assets(specs: tuple[ProviderSpec, ...] = PROVIDER_SPECS) -> dg.AssetsDefinition:
    """One `<provider>_draft` asset (and its checks) per provider spec."""
    asset_specs = [
        dg.AssetSpec(
            spec.asset_name,
            deps=[pending_tasks],
            group_name="drafting",
            kinds={spec.kind},
            skippable=True,
            description=f"The {spec.name} draft of each task: called, validated and stored with "
            "its provenance; a provider that still fails after its retries is stored as a "
            "`failed` draft, not raised.",
        )
        for spec in specs
    ]
    check_specs = [
        dg.AssetCheckSpec(name, asset=spec.asset_name, description=text)
        for spec in specs
        for name, text in (
            ("drafts_valid", "Every draft of the batch passed validation."),
            (
                "no_self_identification",
                "No draft speaks as a model or vendor, or names one its code does not use.",
            ),
        )
    ]
    by_asset = {dg.AssetKey(spec.asset_name): spec for spec in specs}

    @dg.multi_asset(
        name="provider_drafts",
        specs=asset_specs,
        check_specs=check_specs,
        partitions_def=task_partitions,
        backfill_policy=BATCH_POLICY,
        can_subset=True,
        required_resource_keys={"store", *(spec.resource_key for spec in specs)},
        pool="llm_providers",
    )
    def provider_drafts(
        context: dg.AssetExecutionContext, config: DraftConfig
    ) -> Iterator[dg.MaterializeResult]:
        # The providers were built for this mode when the code loaded (live if it was bad).
        settings = Settings.from_environment().require("llm_mode", "claim_lease_s")
        store: DraftStore = context.resources.store
        tasks = [
            task
            for task in store.tasks_by_id(context.partition_keys).values()
            if task.status == "drafting" and task.prompt
        ]
        chosen = [spec for key, spec in by_asset.items() if key in context.selected_asset_keys]
        providers: dict[ProviderSpec, LLMProvider] = {
            spec: getattr(context.resources, spec.resource_key) for spec in chosen
        }
        # Every unusable key named at once, before any claim or call.
        require_keys(providers.values())

        def run(spec: ProviderSpec) -> ProviderBatchReport:
            provider = providers[spec]
            # Runs drafting at the same time split each provider's rate.
            provider.share_pace(store.pace_book(provider.name))
            return draft_with_provider(
                store,
                provider,
                tasks,
                run_id=context.run.run_id,
                force=config.force,
                lease_s=settings.claim_lease_s,
            )

        with ThreadPoolExecutor(max_workers=len(chosen) or 1) as pool:
            reports = dict(zip(chosen, pool.map(run, chosen), strict=True))
        for spec, report in reports.items():
            for task_id, problem in report.problems.items():
                context.log.warning(f"task {task_id}: {problem}")
            yield dg.MaterializeResult(
                asset_key=spec.asset_name,
                metadata=_metadata(report),
                check_results=_check_results(spec, report),
            )

    return provider_drafts


provider_drafts = build_draft_assets()
