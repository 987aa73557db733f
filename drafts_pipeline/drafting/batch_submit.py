"""Send a run's tasks to a provider as one batch of its batch API. No Dagster here.

A batch is answered within a day at a lower price (half for Anthropic and OpenAI): what a
backfill wants. Its tasks are claimed under the batch's own holder id for the batch's life, so
that live runs leave them alone until the batch is collected (`batch_collect.py`); reuse works
as in live mode, and no draft is stored at submission.

A daily budget sees a batch whole: before it is sent, its estimated cost at the batch price
must fit under the provider's caps, or none of it is sent (its tasks held until the next UTC
midnight, as live calls past a cap are). Once sent, that estimate counts as spend in flight
until the batch is collected (`provider_batches.estimated_usd`).
"""

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from drafts_pipeline.drafting.estimates import call_estimator
from drafts_pipeline.drafting.provider_batch import (
    OnTask,
    Outcomes,
    ProviderBatchReport,
    TaskDraft,
    failed_record,
    split_reusable,
)
from drafts_pipeline.drafting.requests import draft_request
from drafts_pipeline.errors import BudgetReached, ProviderError
from drafts_pipeline.llm.batches import UNKNOWN_OUTCOME_KINDS
from drafts_pipeline.llm.budget import DailyBudget
from drafts_pipeline.llm.estimate import CallEstimator
from drafts_pipeline.llm.provider import LiveProvider
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.batches import NewBatch
from drafts_pipeline.store.models import DocumentationTask, utcnow

logger = logging.getLogger(__name__)

# How long a provider may take over a batch when it does not say (Anthropic and OpenAI both
# give a batch 24 hours).
BATCH_WINDOW = timedelta(hours=24)
# How long a batch's claims outlive its expiry: time for the sensor to see that it ended and
# for the collecting run to start, even behind a queue of runs or a daemon restart. Past it, a
# live run may take the tasks over (and the batch's answers for them are then not stored).
CLAIM_MARGIN = timedelta(hours=6)


def batch_lease_until(expires_at: datetime | None, now: datetime) -> datetime:
    """When the claims of a batch lapse: the provider's expiry (else the usual window from
    `now`) plus the margin."""
    return (expires_at or now + BATCH_WINDOW) + CLAIM_MARGIN


def submit_batch(
    store: DraftStore,
    provider: LiveProvider,
    tasks: list[DocumentationTask],
    *,
    run_id: str | None,
    force: bool = False,
    others: Sequence[str] = (),
    on_task: OnTask | None = None,
    estimator: CallEstimator | None = None,
    budget: DailyBudget | None = None,
) -> ProviderBatchReport:
    """Claim `tasks` for one new batch of `provider`, keep the reusable drafts, and submit the
    rest as one batch. A provider that refuses the batch gets a `failed` draft per task (the
    claims released), as a live call that fails does; nothing is raised for it.

    `estimator` prices the batch at the batch price (else it is priced from the store here);
    with `budget`, a batch whose estimate does not fit under the caps is not sent: its row is
    deleted, its tasks held until the refusal's `until` (`held`) and its claims released.

    The row (`submitting`) and the claims are written before the provider is called, the
    provider's batch id after it answers: a crash in between leaves a `submitting` row.
    """
    report = ProviderBatchReport(provider.name, provider.effective_model)
    # Before any claim: a task whose stored prompt cannot be sent fails the batch here.
    requests = {task.id: draft_request(task) for task in tasks}
    outcomes = Outcomes(report, on_task)
    settings = provider.settings_hash()
    holder = f"batch-{uuid.uuid4()}"
    new = NewBatch(provider.name, provider.effective_model, settings, holder, run_id)
    items = [(task.id, task.prompt_hash or "") for task in tasks]
    held = store.open_batch(new, items, batch_lease_until(None, utcnow())) if tasks else None
    claimed = set(held.task_ids) if held is not None else set()
    for task_id in [t.id for t in tasks if t.id not in claimed]:
        outcomes.later(task_id, "claimed_elsewhere")
    for task_id in others:
        outcomes.later(task_id, "not_drafting")
    report.outcomes["claimed_elsewhere"] += len(tasks) - len(claimed)
    mine = [task for task in tasks if task.id in claimed]
    latest = store.latest_drafts([task.id for task in mine], provider.name)
    kept, to_send = split_reusable(mine, latest, settings, force)
    for task in kept:
        outcomes.settle(task.id, TaskDraft("reused", latest[task.id]))
    report.outcomes["reused"] += len(kept)
    batch = held.batch if held is not None else None
    if batch is not None and kept:
        batch = store.narrow_batch(batch.id, [task.id for task in to_send])
    calls = [requests[task.id].texts for task in to_send]
    estimated: Decimal | None = None
    if batch is not None:
        priced = estimator or call_estimator(store, provider).batched()
        estimated = priced.estimate(calls).cost_usd
        if budget is not None:
            # A call the estimate cannot price counts as the budget counts it.
            estimated = estimated if estimated is not None else budget.cost_of(calls)
            try:
                budget.admit_cost(
                    estimated, utcnow(), f"for this batch of {len(calls)} call(s) at batch price"
                )
            except BudgetReached as refusal:
                _held(store, batch.id, to_send, refusal, report, outcomes)
                batch = None
    if batch is not None:
        try:
            submission = provider.batch_api().submit([requests[t.id] for t in to_send])
        except ProviderError as error:
            if error.error_type in UNKNOWN_OUTCOME_KINDS:
                # The provider may have the batch (a timeout, a lost connection): its tasks
                # stay claimed under the `submitting` row, as after a crash, until an operator
                # has looked at the provider's list (`batches list`, `batches release`).
                logger.error(
                    "%s: batch #%d may or may not exist at the provider (%s); its %d task(s) "
                    "stay claimed until `drafts-pipeline batches release %d`",
                    provider.name, batch.id, error, len(to_send), batch.id,
                )  # fmt: skip
                report.outcomes["submitting"] += len(to_send)
                for task in to_send:
                    detail = f"batch #{batch.id} outcome unknown: {error.error_type}"
                    outcomes.settle(task.id, TaskDraft("submitting", latest.get(task.id), detail))
            else:
                _refused(
                    store, provider, batch.id, holder, to_send, error, run_id, report, outcomes
                )
        # Anything else (the run terminated mid-request, an unforeseen error) leaves the row
        # `submitting` with its claims: the provider may have the batch.
        else:
            recorded = store.batch_submitted(
                batch.id,
                submission.batch_id,
                submission.expires_at,
                batch_lease_until(submission.expires_at, utcnow()),
                estimated,
            )
            report.batch_ids.append(submission.batch_id)
            report.outcomes["submitted"] += len(to_send)
            detail = f"submitted in batch {submission.batch_id}"
            if recorded is None:
                detail += " after an operator released its row: cancel it at the provider"
                logger.error("%s: %s", provider.name, detail)
            for task in to_send:
                outcomes.settle(task.id, TaskDraft("submitted", latest.get(task.id), detail))
    outcomes.finish(store, provider.name)
    return report


def _held(
    store: DraftStore,
    batch_id: int,
    tasks: list[DocumentationTask],
    refusal: BudgetReached,
    report: ProviderBatchReport,
    outcomes: Outcomes,
) -> None:
    """A daily budget has no room for the batch: its tasks held until `refusal.until`, then
    the row deleted and its claims released (nothing was sent). The hold is written first, so
    that no ballot sees a task free and unheld in between."""
    report.budget_reached = refusal
    store.hold_tasks([task.id for task in tasks], refusal.until, str(refusal))
    store.narrow_batch(batch_id, [])
    for task in tasks:
        outcomes.later(task.id, "held")
    report.outcomes["held"] += len(tasks)


def _refused(
    store: DraftStore,
    provider: LiveProvider,
    batch_id: int,
    holder: str,
    tasks: list[DocumentationTask],
    error: ProviderError,
    run_id: str | None,
    report: ProviderBatchReport,
    outcomes: Outcomes,
) -> None:
    """The provider did not take the batch: a `failed` draft per task with the reason (each
    releasing its claim), then the row `failed` with it."""
    settings = provider.settings_hash()
    for task in tasks:
        record = failed_record(task, provider, settings, error, run_id, attempts=1)
        stored = store.add_draft(record, holder=holder)
        report.outcomes["failed" if stored else "superseded"] += 1
        if stored is None:
            outcomes.later(task.id, "superseded")
        else:
            outcomes.settle(task.id, TaskDraft("drafted", stored))
    store.close_batch(batch_id, "failed", str(error))
