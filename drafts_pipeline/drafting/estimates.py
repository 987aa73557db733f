"""Cost before calling: each provider's estimate for a batch of tasks, from the store's record of
its answers so far, and the daily budgets its calls are checked against. No Dagster here; the
command line's `estimate` and every drafting run use the same functions."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from drafts_pipeline.drafting.provider_batch import draft_request, reusable
from drafts_pipeline.llm.budget import DailyBudget, daily_caps, require_priced
from drafts_pipeline.llm.estimate import CallEstimator, ProviderEstimate
from drafts_pipeline.llm.provider import DraftRequest, LLMProvider
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DocumentationTask


@dataclass(frozen=True)
class PromptedTask:
    """A task with the prompt a run would send it, and that prompt's hash (for reuse)."""

    task: DocumentationTask
    prompt: str
    prompt_hash: str

    @classmethod
    def as_recorded(cls, task: DocumentationTask) -> "PromptedTask":
        """With the prompt `pending_tasks` recorded for it."""
        return cls(task, task.prompt or "", task.prompt_hash or "")

    @property
    def request(self) -> DraftRequest:
        return draft_request(self.task, self.prompt)


def requests_to_call(
    store: DraftStore, provider: LLMProvider, tasks: Sequence[PromptedTask], *, force: bool
) -> list[DraftRequest]:
    """The requests a batch would send `provider`: every task's, less those whose newest
    draft by it is reusable (valid, same prompt and settings), unless `force`."""
    if force:
        return [task.request for task in tasks]
    latest = store.latest_drafts([t.task.id for t in tasks], provider.name)
    settings = provider.settings_hash()
    return [
        task.request
        for task in tasks
        if (previous := latest.get(task.task.id)) is None
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
        budgets[name] = DailyBudget(name, caps, store, estimator.cost_usd, in_flight_cost)
    return budgets
