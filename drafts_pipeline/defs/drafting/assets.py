"""The drafting assets: `pending_tasks`, and one `<provider>_draft` per configured provider.

The provider drafts are the specs of one multi-asset, made by one factory, so a batch's
providers run concurrently in one step (each at its own resource's limits) instead of one after
another; any subset can still be materialised on its own.

A step covers a batch of task partitions. What belongs to one task goes on that task's
partition; what belongs to the batch (counts, totals) goes to the step's log, not onto every
partition.
"""

import enum
import queue
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import dagster as dg

from drafts_pipeline.defs.drafting.partitions import task_partitions
from drafts_pipeline.defs.loaded_settings import LOADED_PROVIDERS, LOADED_SETTINGS
from drafts_pipeline.drafting.batch_collect import collect_batches
from drafts_pipeline.drafting.batch_submit import submit_batch
from drafts_pipeline.drafting.estimates import (
    PromptedTask,
    call_estimator,
    daily_budgets,
    estimate_requests,
    requests_to_call,
)
from drafts_pipeline.drafting.provider_batch import (
    OnTask,
    ProviderBatchReport,
    TaskDraft,
    draft_with_provider,
)
from drafts_pipeline.drafting.regenerate import (
    Regeneration,
    regeneration,
    tagged_regeneration,
    with_model,
)
from drafts_pipeline.errors import ConfigurationError, TaskValidationError
from drafts_pipeline.llm.budget import DailyBudget
from drafts_pipeline.llm.estimate import CallEstimator, ProviderEstimate
from drafts_pipeline.llm.keys import require_keys
from drafts_pipeline.llm.provider import LiveProvider, LLMProvider
from drafts_pipeline.llm.provider_file import ProviderSpec
from drafts_pipeline.llm.providers import selected_providers
from drafts_pipeline.prompts.context_budget import PromptLimits
from drafts_pipeline.prompts.templates import BuiltPrompt, prompt_for
from drafts_pipeline.settings import SUBMIT_MODES, Settings
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DocumentationTask

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
    build_prompts(context, store, context.partition_keys)
    return dg.MaterializeResult()


def build_prompts(context: dg.AssetExecutionContext, store: DraftStore, keys: list[str]) -> None:
    """Validate each task of `keys` still in `drafting` and record the prompt its template
    builds; a task whose prompt cannot be built is failed with the reason."""
    tasks = store.tasks_by_id(keys)
    outcomes: Counter[str] = Counter()
    prompts: list[tuple[str, BuiltPrompt]] = []
    # DRAFTS_CONTEXT_BUDGET_TOKENS and DRAFTS_MAX_PROMPT_TOKENS; a bad value fails the step.
    limits = PromptLimits.from_environment()
    for key in keys:
        task = tasks.get(key)
        if task is None:
            context.log.warning(
                f"task {key}: no such task in the store; skipped", extra={"task_id": key}
            )
            outcomes["missing"] += 1
            continue
        if task.status != "drafting":
            outcomes[f"already {task.status}"] += 1
            continue
        try:
            prompt = prompt_for(task, limits)
        except TaskValidationError as error:
            store.fail_task(task.id, str(error))
            context.log.error(str(error), extra={"task_id": task.id})
            outcomes["rejected"] += 1
            continue
        prompts.append((task.id, prompt))
        outcomes["ready"] += 1
    store.record_prompts(prompts)
    context.log.info(f"{len(keys)} tasks: " + ", ".join(f"{n} {o}" for o, n in outcomes.items()))


# What a draft partition shows from the start of its run's drafting step until its figures come.
IN_PROGRESS = {"this_run": dg.MetadataValue.text("in progress")}
# What a draft partition shows when a daily budget kept its call from being sent.
HELD = "held, daily budget reached"


class SubmitMode(enum.Enum):
    """How a run sends its prompts: one request at a time, or as one batch per provider."""

    live = "live"
    batch = "batch"


# A run tag that picks the submission mode: Dagster's backfill dialog takes tags, not config.
SUBMIT_TAG = "drafts/submit"


class RegenerateConfig(dg.Config):
    """Redraft the run's tasks on purpose, as new versions (`drafting/regenerate.py`)."""

    providers: list[str] | None = None
    """The providers to call again (their draft assets must be in the run); None: every
    provider the run materialises. The others are not called: a task reopened from `voting`
    gets their labelled drafts carried into its new ballot."""
    model: str | None = None
    """The model to ask instead of each regenerated provider's own (priced from the price
    table); None: the configured model."""
    template: str | None = None
    """The prompt template the tasks use from now on (their `template`); None: theirs."""


class DraftConfig(dg.Config):
    force: bool = False
    """Regenerate (a new version) even where a reusable valid draft exists."""
    submit: SubmitMode | None = None
    """`batch` sends each provider's prompts as one batch of its batch API (half price,
    answered within a day, collected by `provider_batches_sensor`); `live` calls at once.
    Unset: the run's `drafts/submit` tag, else DRAFTS_SUBMIT_MODE."""
    collect: bool = False
    """Collect the finished provider batches that hold these tasks instead of drafting (what
    `provider_batches_sensor` asks for)."""
    regenerate: RegenerateConfig | None = None
    """Regenerate the tasks on purpose, reopening those in `voting`; unset: the run's
    `drafts/regenerate*` tags, else no regenerate."""


def requested_regeneration(
    config: DraftConfig, tags: Mapping[str, str], selected: list[str]
) -> Regeneration | None:
    """The run config's regenerate, else the run's tags', checked; None when neither asks."""
    if config.regenerate is not None:
        asked = config.regenerate
        return regeneration(asked.providers, asked.model, asked.template, selected)
    tagged = tagged_regeneration(tags)
    return None if tagged is None else regeneration(*tagged, selected)


def prepare_regeneration(
    context: dg.AssetExecutionContext,
    store: DraftStore,
    keys: list[str],
    request: Regeneration,
    providers: list[str],
) -> None:
    """Before a regenerate's calls: reopen its tasks in `voting` (the labelled drafts of the
    `providers` not regenerated carried into the new ballot), give the tasks the template
    override, and build their prompts as `pending_tasks` does."""
    found = store.tasks_by_id(keys)
    voting = [key for key in keys if key in found and found[key].status == "voting"]
    carry = [name for name in providers if name not in request.providers]
    reopened = store.reopen_tasks(
        voting, "regenerate", reason=request.reason(), run_id=context.run.run_id, carry=carry
    )
    left = [key for key in keys if key in found and found[key].status in ("failed", "retired")]
    context.log.info(
        f"{request.reason()}: {len(reopened.ballots)} task(s) reopened from voting"
        + (f", their {', '.join(carry)} drafts carried forward" if carry and voting else "")
        + (f"; {len(left)} failed or retired task(s) left alone" if left else "")
    )
    if request.template is not None:
        store.set_templates(keys, request.template)
    build_prompts(context, store, keys)


def submit_mode(config: DraftConfig, tags: Mapping[str, str], setting: str) -> str:
    """`live` or `batch`: the run config's choice, else the run's tag, else the setting."""
    if config.submit is not None:
        return config.submit.value
    tagged = tags.get(SUBMIT_TAG)
    if tagged is None:
        return setting
    if tagged.strip().lower() not in SUBMIT_MODES:
        raise ConfigurationError(
            f"run tag {SUBMIT_TAG}={tagged!r} is not one of {', '.join(SUBMIT_MODES)}"
        )
    return tagged.strip().lower()


def task_draft_metadata(task: TaskDraft) -> dict[str, dg.MetadataValue]:
    """One task's partition: what this run did for it and its newest draft by the provider,
    with the same keys for every provider so the UI plots them side by side. A task without a
    draft shows no figures, never zeros."""
    said = HELD if task.outcome == "held" else task.outcome.replace("_", " ")
    outcome = task.detail or said
    metadata: dict[str, dg.MetadataValue] = {"this_run": dg.MetadataValue.text(outcome)}
    draft = task.draft
    if draft is None:
        return {**metadata, "status": dg.MetadataValue.text("no draft")}
    metadata |= {
        "status": dg.MetadataValue.text(draft.status),
        "model": dg.MetadataValue.text(draft.model),
        "version": dg.MetadataValue.int(draft.version),
        "attempts": dg.MetadataValue.int(draft.attempts),
    }
    for name in (
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    ):
        if (tokens := getattr(draft, name)) is not None:
            metadata[name] = dg.MetadataValue.int(tokens)
    if draft.cost_usd is not None:
        metadata["cost_usd"] = dg.MetadataValue.float(float(draft.cost_usd))
    elif draft.status != "failed":
        metadata["cost_usd"] = dg.MetadataValue.text("unknown price")
    if draft.latency_ms is not None:
        metadata["latency_ms"] = dg.MetadataValue.int(draft.latency_ms)
    if task.answer_json:
        metadata["answer_json"] = dg.MetadataValue.text(task.answer_json)
    if task.problem:
        metadata["problem"] = dg.MetadataValue.text(task.problem[:300])
    return metadata


def estimate_metadata(estimate: ProviderEstimate) -> dict[str, dg.MetadataValue]:
    """A provider's estimate for the run's batch, made before any call: what each of its
    partitions shows while the run is in progress."""
    cost = (
        dg.MetadataValue.float(float(estimate.cost_usd))
        if estimate.cost_usd is not None
        else dg.MetadataValue.text(f"unknown: {estimate.cost_note}")
    )
    return {
        "estimate_tasks": dg.MetadataValue.int(estimate.tasks),
        "estimate_input_tokens": dg.MetadataValue.int(estimate.input_tokens),
        "estimate_output_tokens": dg.MetadataValue.int(estimate.output_tokens),
        "estimate_usd": cost,
    }


def batch_summary(report: ProviderBatchReport, tasks: int) -> str:
    """The batch's totals for one provider, for the step's log."""
    counts = ", ".join(
        f"{report.outcomes[name]} {name.replace('_', ' ')}"
        for name in (
            "valid", "invalid", "failed", "reused", "superseded", "claimed_elsewhere", "held",
        )
    )  # fmt: skip
    extra = "".join(
        f", {report.outcomes[name]} {name.replace('_', ' ')}"
        for name in ("submitted", "submitting", "returned", "nothing_to_collect", "kept")
        if report.outcomes[name]
    )
    batches = f" (provider batch {', '.join(report.batch_ids)})" if report.batch_ids else ""
    cost = "unknown cost" if report.cost_usd is None else f"${report.cost_usd:.6f}"
    return (
        f"{report.provider} ({report.model}), {tasks} tasks: {counts}{extra}{batches}; "
        f"{report.input_tokens} input and {report.output_tokens} output tokens, {cost}; "
        f"latency p50 {report.latency_quantile(0.5):.0f} ms, "
        f"p95 {report.latency_quantile(0.95):.0f} ms"
    )


def untouched(
    store: DraftStore,
    provider: LLMProvider,
    task_ids: list[str],
    on_task: OnTask,
    outcome: str = "nothing_to_collect",
) -> ProviderBatchReport:
    """A provider's share of a run that does not call it: a collecting run whose provider has
    no batches (offline), or a regenerate of other providers (`kept`). Every task as it
    stands."""
    report = ProviderBatchReport(provider.name, provider.effective_model)
    newest = store.latest_drafts(task_ids, provider.name)
    for task_id in task_ids:
        report.tasks[task_id] = TaskDraft(outcome, newest.get(task_id))
        report.outcomes[outcome] += 1
        on_task(task_id, report.tasks[task_id])
    return report


def log_batch(
    context: dg.AssetExecutionContext, spec: ProviderSpec, report: ProviderBatchReport, tasks: int
) -> None:
    """A provider's batch in the step's log: its totals, the daily budget that stopped its
    calls, and each new draft that is not valid."""
    context.log.info(batch_summary(report, tasks))
    if report.outcomes["submitted"]:
        context.log.info(
            f"{spec.name}: {report.outcomes['submitted']} task(s) submitted in provider batch "
            f"{', '.join(report.batch_ids)}, answered within a day at the batch price; "
            "provider_batches_sensor collects them when it ends, and until then no run drafts "
            "them with this provider",
            extra={"provider": spec.name},
        )
    if report.outcomes["submitting"]:
        context.log.error(
            f"{spec.name}: {report.outcomes['submitting']} task(s) in a batch the provider may "
            "or may not have taken (its create request timed out or lost its connection): they "
            "stay claimed; see `drafts-pipeline batches list`, then `batches release ROW`",
            extra={"provider": spec.name},
        )
    if (reached := report.budget_reached) is not None:
        context.log.warning(
            f"{reached}; {report.outcomes['held']} task(s) left in drafting, no draft stored, "
            f"held until {reached.until:%Y-%m-%d %H:%M} UTC, when they are drafted again",
            extra={"provider": spec.name},
        )
    for task_id, task in report.tasks.items():
        if task.outcome == "drafted" and task.problem:
            context.log.warning(
                f"task {task_id}: {spec.name}: {task.problem}",
                extra={"task_id": task_id, "provider": spec.name},
            )
        elif task.outcome == "drafted" and task.repair:
            context.log.warning(
                f"task {task_id}: {spec.name}: valid, its JSON {task.repair}",
                extra={"task_id": task_id, "provider": spec.name},
            )


@dataclass(frozen=True)
class ProviderPlan:
    """A provider's part of the run, known before it calls: whether it submits a batch, the
    estimate (at the batch price if it does), the estimator that made it, and the daily budget
    its calls or batch are checked against (None: no cap applies)."""

    batched: bool
    estimate: ProviderEstimate
    estimator: CallEstimator
    budget: DailyBudget | None


def submits_batch(provider: LLMProvider, mode: str) -> bool:
    """Whether `provider` sends this run's prompts as a batch: a live provider in a batch-mode
    run, unless it is set to draft live always (`DRAFTS_<PROVIDER>_SUBMIT_MODE=live`)."""
    return mode == "batch" and isinstance(provider, LiveProvider) and not provider.always_live()


def plan_batch(
    context: dg.AssetExecutionContext,
    store: DraftStore,
    providers: dict[ProviderSpec, LLMProvider],
    tasks: list[DocumentationTask],
    force: bool,
    settings: Settings,
    mode: str = "live",
) -> dict[ProviderSpec, ProviderPlan]:
    """Each provider's estimate for the batch (logged; at the batch price for a provider that
    submits one) and its daily budget; then the holds of earlier runs are lifted from the
    batch's tasks, which are drafted or submitted now (a provider still at its cap holds them
    again). A cap that cannot be kept fails the step before any of this."""
    prompted = [PromptedTask.as_recorded(task) for task in tasks]
    batched = {spec.name: submits_batch(provider, mode) for spec, provider in providers.items()}
    estimators: dict[str, CallEstimator] = {}
    for spec, provider in providers.items():
        estimator = call_estimator(store, provider)
        estimators[spec.name] = estimator.batched() if batched[spec.name] else estimator
    estimates = {
        spec.name: estimate_requests(
            estimators[spec.name], requests_to_call(store, provider, prompted, force=force)
        )
        for spec, provider in providers.items()
    }
    budgets = daily_budgets(
        store,
        {spec.name: provider for spec, provider in providers.items()},
        estimators,
        estimates,
        settings.daily_budget_usd,
    )
    for spec, provider in providers.items():
        if mode == "batch" and isinstance(provider, LiveProvider) and not batched[spec.name]:
            context.log.info(
                f"{spec.name}: drafts live in this batch-mode run (its submit_mode is live: "
                f"providers file or DRAFTS_{spec.name.upper()}_SUBMIT_MODE)",
                extra={"provider": spec.name},
            )
        context.log.info(estimates[spec.name].summary(), extra={"provider": spec.name})
    held = [task.id for task in tasks if task.held_until is not None]
    if held:
        store.clear_holds(held)
        context.log.info(f"{len(held)} task(s) held back by an earlier run: drafting them now")
    return {
        spec: ProviderPlan(
            batched[spec.name], estimates[spec.name], estimators[spec.name], budgets[spec.name]
        )
        for spec in providers
    }


def build_draft_assets(specs: tuple[ProviderSpec, ...]) -> dg.AssetsDefinition:
    """One `<provider>_draft` asset per provider spec (their checks: `checks.py`); a run
    drafts with the providers it selects (the `draft_tasks` job: `DRAFTS_PROVIDERS`)."""
    asset_specs = [
        dg.AssetSpec(
            spec.asset_name,
            deps=[pending_tasks],
            group_name="drafting",
            kinds={spec.kind},
            skippable=True,
            description=f"The {spec.name} draft of each task: called, validated and stored with "
            "its provenance; a provider that still fails after its retries is stored as a "
            "`failed` draft, not raised. Each partition shows its task's newest draft (status, "
            "model, tokens, cost, latency, attempts, how its JSON was read: `answer_json`) and "
            "what the run did for it.",
        )
        for spec in specs
    ]
    by_asset = {dg.AssetKey(spec.asset_name): spec for spec in specs}

    @dg.multi_asset(
        name="provider_drafts",
        specs=asset_specs,
        partitions_def=task_partitions,
        backfill_policy=BATCH_POLICY,
        can_subset=True,
        required_resource_keys={"store", *(spec.resource_key for spec in specs)},
        pool="llm_providers",
    )
    def provider_drafts(
        context: dg.AssetExecutionContext, config: DraftConfig
    ) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization]:
        # The providers were built for this mode when the code loaded (live if it was bad).
        settings = Settings.from_environment().require(
            "llm_mode", "claim_lease_s", "daily_budget_usd", "submit_mode"
        )
        # The job chose its providers when the code loaded; a bad DRAFTS_PROVIDERS fails here.
        selected_providers(specs)
        mode = (
            "collect"
            if config.collect
            else submit_mode(config, context.run.tags, settings.submit_mode)
        )
        store: DraftStore = context.resources.store
        keys = context.partition_keys
        chosen = [spec for key, spec in by_asset.items() if key in context.selected_asset_keys]
        providers: dict[ProviderSpec, LLMProvider] = {
            spec: getattr(context.resources, spec.resource_key) for spec in chosen
        }
        request = requested_regeneration(config, context.run.tags, [s.name for s in chosen])
        if request is not None and mode == "collect":
            raise ConfigurationError("a collecting run cannot regenerate: run them apart")
        # Providers a regenerate leaves as they are: not called, their drafts kept.
        kept = set() if request is None else {s for s in chosen if s.name not in request.providers}
        # Every unusable key named at once, before any claim or call.
        require_keys(provider for spec, provider in providers.items() if spec not in kept)
        if request is not None:
            prepare_regeneration(context, store, keys, request, [spec.name for spec in specs])
            if request.model is not None:
                providers = {
                    spec: provider if spec in kept else with_model(provider, request.model)
                    for spec, provider in providers.items()
                }
        force = config.force or request is not None
        found = store.tasks_by_id(keys)
        tasks = [t for t in found.values() if t.status == "drafting" and t.prompt]
        drafting = {task.id for task in tasks}
        others = [key for key in keys if key not in drafting]
        if mode != "live" and not all(isinstance(p, LiveProvider) for p in providers.values()):
            what = "collects nothing" if mode == "collect" else "drafts live (offline)"
            context.log.warning(
                f"DRAFTS_LLM_MODE={settings.llm_mode} has no provider batches: this run {what}"
            )
        # A collecting run calls no provider: nothing to estimate, no budget, no hold to lift.
        plans = (
            {}
            if mode == "collect"
            else plan_batch(
                context,
                store,
                {spec: provider for spec, provider in providers.items() if spec not in kept},
                tasks,
                force,
                settings,
                mode,
            )
        )

        # Each task's figures as its provider's thread learns them, then each finished thread.
        figures: queue.Queue[tuple[ProviderSpec, str, TaskDraft] | Future[ProviderBatchReport]]
        figures = queue.Queue()

        def run(spec: ProviderSpec) -> ProviderBatchReport:
            provider = providers[spec]
            on_task = lambda task_id, task: figures.put((spec, task_id, task))  # noqa: E731
            if spec in kept:
                return untouched(store, provider, keys, on_task, "kept")
            if isinstance(provider, LiveProvider) and mode == "collect":
                # Tasks out of `drafting` too: their batch's claims are released, its calls
                # recorded, and no draft stored.
                return collect_batches(
                    store, provider, list(found.values()), run_id=context.run.run_id,
                    others=[key for key in keys if key not in found], on_task=on_task,
                )  # fmt: skip
            if isinstance(provider, LiveProvider) and plans[spec].batched:
                return submit_batch(
                    store, provider, tasks, run_id=context.run.run_id, force=force,
                    others=others, on_task=on_task, estimator=plans[spec].estimator,
                    budget=plans[spec].budget,
                )  # fmt: skip
            if mode == "collect":
                return untouched(store, provider, keys, on_task)
            # Runs drafting at the same time split each provider's rate.
            provider.share_pace(store.pace_book(provider.name))
            return draft_with_provider(
                store,
                provider,
                tasks,
                run_id=context.run.run_id,
                force=force,
                lease_s=settings.claim_lease_s,
                others=others,
                on_task=on_task,
                budget=plans[spec].budget,
            )

        with ThreadPoolExecutor(max_workers=len(chosen) or 1) as pool:
            running: dict[Future[ProviderBatchReport], ProviderSpec] = {}
            for spec in chosen:
                future = pool.submit(run, spec)
                running[future] = spec
                # After the thread's last task, as the queue is first in, first out.
                future.add_done_callback(figures.put)
            # Dagster materialises every partition of an output alike, one event each: they
            # are written now, while the providers are called, and say only that the run is
            # under way and what the provider's calls for the batch are estimated to cost
            # (the same figures on each). Each partition's own figures follow as soon as its
            # provider's draft is known, as its latest materialisation, while the other calls
            # go on.
            for spec in chosen:
                yield dg.MaterializeResult(
                    asset_key=spec.asset_name,
                    metadata={
                        **IN_PROGRESS,
                        **(estimate_metadata(plans[spec].estimate) if spec in plans else {}),
                    },
                )
            unfinished = len(running)
            failures: list[BaseException] = []
            while unfinished:
                item = figures.get()
                if not isinstance(item, Future):
                    spec, task_id, task = item
                    yield dg.AssetMaterialization(
                        asset_key=spec.asset_name,
                        partition=task_id,
                        metadata=task_draft_metadata(task),
                    )
                    continue
                unfinished -= 1
                if (error := item.exception()) is not None:
                    failures.append(error)
                else:
                    log_batch(context, running[item], item.result(), len(keys))
            # A provider's error fails the step once the others' figures are shown.
            if failures:
                raise failures[0]

    return provider_drafts


provider_drafts = build_draft_assets(LOADED_PROVIDERS)
