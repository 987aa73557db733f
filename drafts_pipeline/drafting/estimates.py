"""Cost before calling: each provider's estimate for a batch of tasks, from the store's record of
its answers so far, and the daily budgets its calls are checked against. No Dagster here; the
command line's `estimate` and every drafting run use the same functions."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from drafts_pipeline.drafting.provider_batch import reusable
from drafts_pipeline.drafting.requests import draft_request
from drafts_pipeline.errors import ConfigurationError, NoSuchTask, TaskValidationError
from drafts_pipeline.llm.budget import DailyBudget, DailyCap, daily_caps, require_priced, utc_day
from drafts_pipeline.llm.estimate import CallEstimator, ProviderEstimate
from drafts_pipeline.llm.provider import DraftRequest, LiveProvider, LLMProvider
from drafts_pipeline.prompts.context_budget import PromptLimits
from drafts_pipeline.prompts.templates import BuiltPrompt, prompt_for
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DocumentationTask, as_utc, utcnow


@dataclass(frozen=True)
class PromptedTask:
    """What a run would send for a task, and its prompt's hash (for reuse)."""

    request: DraftRequest
    prompt_hash: str

    @classmethod
    def as_recorded(cls, task: DocumentationTask) -> "PromptedTask":
        """With the prompt `pending_tasks` recorded for it."""
        return cls(draft_request(task), task.prompt_hash or "")

    @classmethod
    def as_built(cls, task: DocumentationTask, built: BuiltPrompt) -> "PromptedTask":
        """With the prompt a run would build for it now."""
        request = DraftRequest(
            task_id=task.id,
            prompt=built.text,
            symbol=task.symbol,
            code=task.code,
            language=task.language,
            system=built.system,
        )
        return cls(request, built.prompt_hash)


def requests_to_call(
    store: DraftStore, provider: LLMProvider, tasks: Sequence[PromptedTask], *, force: bool
) -> list[DraftRequest]:
    """The requests a batch would send `provider`: every task's, less those whose newest
    draft by it is reusable (valid, same prompt and settings), unless `force`."""
    if force:
        return [task.request for task in tasks]
    latest = store.latest_drafts([t.request.task_id for t in tasks], provider.name)
    settings = provider.settings_hash()
    return [
        task.request
        for task in tasks
        if (previous := latest.get(task.request.task_id)) is None
        or not reusable(
            previous.status,
            previous.prompt_hash == task.prompt_hash,
            previous.settings_hash == settings,
        )
    ]


def call_estimator(store: DraftStore, provider: LLMProvider) -> CallEstimator:
    """How `provider`'s calls are priced before they are sent, calibrated on its valid drafts
    by the model it is configured with."""
    model = provider.effective_model
    samples = store.valid_draft_samples(provider.name, model)
    return CallEstimator.from_history(provider.name, model, provider.price(), samples)


def estimate_requests(
    estimator: CallEstimator, requests: Sequence[DraftRequest]
) -> ProviderEstimate:
    return estimator.estimate([request.texts for request in requests])


def daily_budgets(
    store: DraftStore,
    providers: Mapping[str, LLMProvider],
    estimators: Mapping[str, CallEstimator],
    estimates: Mapping[str, ProviderEstimate],
    total_usd: Decimal | None,
) -> dict[str, DailyBudget | None]:
    """Per provider, the daily budget its calls are checked against (None: no cap applies, and
    no call costs a query). A cap on a provider whose price is unknown is a
    `ConfigurationError`, raised before any call.

    Calls unanswered today count at the mean estimated call of their provider in this batch
    (a provider without one, at the dearest there is)."""
    in_flight_cost = {
        name: cost
        for name, estimate in estimates.items()
        if (cost := estimate.call_cost_usd) is not None
    }
    budgets: dict[str, DailyBudget | None] = {}
    for name, provider in providers.items():
        caps = daily_caps(name, provider.daily_budget(), total_usd)
        if not caps:
            budgets[name] = None
            continue
        estimator = estimators[name]
        require_priced(name, estimator.model, caps, estimator.price is not None)
        # A fallback's calls count against the caps too: an unpriced one could not be counted.
        if (
            isinstance(provider, LiveProvider)
            and provider.fallback_model is not None
            and provider.fallback_price() is None
        ):
            variables = " and ".join(cap.variable for cap in caps)
            raise ConfigurationError(
                f"{variables} set, but {name}'s fallback model {provider.fallback_model!r} has "
                "no price in drafts_pipeline/llm/pricing.py, so its spend cannot be counted; "
                f"choose a listed model for DRAFTS_{name.upper()}_FALLBACK_MODEL or unset it"
            )
        budgets[name] = DailyBudget(name, caps, store, estimator.cost_usd, in_flight_cost)
    return budgets


@dataclass(frozen=True)
class CapToday:
    """A daily cap and what today (UTC) has cost under it so far."""

    cap: DailyCap
    spent_usd: Decimal


@dataclass
class DraftingEstimate:
    """What drafting a set of tasks would cost, per provider, without calling one."""

    tasks: int = 0
    """Tasks estimated: in `drafting`, with a prompt that builds."""
    providers: list[ProviderEstimate] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    """Tasks named that a run would not draft, each with its status."""
    unbuildable: list[str] = field(default_factory=list)
    """Tasks whose prompt does not build (a run fails them without a call), with the reason."""
    held: dict[str, datetime] = field(default_factory=dict)
    """Tasks a daily budget holds back, until when: estimated all the same."""
    caps: list[CapToday] = field(default_factory=list)

    @property
    def cost_usd(self) -> Decimal | None:
        """The total; None when any provider's cost is unknown."""
        costs = [estimate.cost_usd for estimate in self.providers]
        return None if None in costs else sum((c for c in costs if c is not None), Decimal(0))


def estimate_drafting(
    store: DraftStore,
    providers: Sequence[LLMProvider],
    task_ids: Sequence[str] | None = None,
    *,
    total_cap_usd: Decimal | None = None,
    now: datetime | None = None,
) -> DraftingEstimate:
    """The estimate for the tasks in `drafting` (or `task_ids`, each of which must exist;
    those not in `drafting` are left out and named), each with the prompt a run would build
    for it now, less each provider's reusable drafts. Reads the store; calls nobody."""
    if task_ids is None:
        tasks = store.tasks_with_status("drafting")
    else:
        found = store.tasks_by_id(list(task_ids))
        missing = [task_id for task_id in dict.fromkeys(task_ids) if task_id not in found]
        if missing:
            raise NoSuchTask(missing)
        tasks = [found[task_id] for task_id in dict.fromkeys(task_ids)]
    result = DraftingEstimate()
    prompted: list[PromptedTask] = []
    moment = now or utcnow()
    limits = PromptLimits.from_environment()
    for task in tasks:
        if task.status != "drafting":
            result.left_out.append(f"{task.id} ({task.status})")
            continue
        try:
            built = prompt_for(task, limits)
        except TaskValidationError as error:
            result.unbuildable.append(str(error))
            continue
        prompted.append(PromptedTask.as_built(task, built))
        if task.held_until is not None and as_utc(task.held_until) > moment:
            result.held[task.id] = as_utc(task.held_until)
    result.tasks = len(prompted)
    for provider in providers:
        estimator = call_estimator(store, provider)
        requests = requests_to_call(store, provider, prompted, force=False)
        result.providers.append(estimate_requests(estimator, requests))
    result.caps = caps_today(store, providers, total_cap_usd, moment)
    return result


def caps_today(
    store: DraftStore,
    providers: Sequence[LLMProvider],
    total_cap_usd: Decimal | None,
    now: datetime,
) -> list[CapToday]:
    """Each daily cap set, with what today (UTC) has cost under it so far (one query, and
    none when no cap is set)."""
    caps: dict[str, DailyCap] = {}
    for provider in providers:
        for cap in daily_caps(provider.name, provider.daily_budget(), total_cap_usd):
            caps[cap.variable] = cap
    if not caps:
        return []
    spend = store.spend_between(*utc_day(now))
    return [
        CapToday(
            cap,
            sum(
                (s.cost_usd for name, s in spend.items() if cap.provider in (None, name)),
                Decimal(0),
            ),
        )
        for cap in caps.values()
    ]
