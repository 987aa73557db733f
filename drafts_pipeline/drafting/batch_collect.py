"""Collect what a provider's batch answered: store each answer as a live one is stored, at the
batch price, and give the tasks it did not answer back to `drafting`. No Dagster here.

Every step is guarded by the batch's claims: an answer is stored (and its call recorded) only
by the transaction that releases the batch's claim on its task, so two collections of the same
batch store each answer once.
"""

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from drafts_pipeline.drafting.provider_batch import (
    Answer,
    OnTask,
    Outcomes,
    ProviderBatchReport,
    TaskDraft,
    answer_record,
    failed_record,
)
from drafts_pipeline.errors import ProviderError
from drafts_pipeline.llm.batches import BatchItemResult
from drafts_pipeline.llm.generation import CallAttempt
from drafts_pipeline.llm.pricing import ModelPrice, cost_usd, resolve_price
from drafts_pipeline.llm.provider import LiveProvider
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.batches import HeldBatch
from drafts_pipeline.store.drafts import FinishedCall
from drafts_pipeline.store.models import DocumentationTask, ProviderBatch, utcnow

logger = logging.getLogger(__name__)

BATCH_ITEM_ERROR = "batch_item_error"
"""The error type of a draft whose batch item the provider answered with an error."""


def collect_batches(
    store: DraftStore,
    provider: LiveProvider,
    tasks: list[DocumentationTask],
    *,
    run_id: str | None,
    others: Sequence[str] = (),
    on_task: OnTask | None = None,
) -> ProviderBatchReport:
    """Collect, for `tasks`, every batch of `provider` that the provider is done with
    (ended, expired, cancelled or failed) and that still holds claims on some of them.

    An answered item is validated and stored as a live answer is, priced with the model's
    batch price, and recorded in the call log as one call. An item the provider answered with
    an error gets a `failed` draft (as a live call that fails for good), so the reason shows
    where failed drafts show and the ballot need not wait for it. An item that expired or was
    cancelled before it ran goes back to `drafting` with no draft; so does an answer or an
    error about a prompt the task no longer has (its template changed since, or the task was
    reopened or its source changed), with its call recorded. A batch that holds no claim
    afterwards is `collected`, and what the provider keeps of it (the batch, its files) is
    deleted, best effort. The provider's error while reading the results is raised: the
    claims stay, and the next collection tries again.
    """
    report = ProviderBatchReport(provider.name, provider.effective_model)
    outcomes = Outcomes(report, on_task)
    by_id = {task.id: task for task in tasks}
    collector = _Collector(store, provider, run_id, report, outcomes)
    for held in store.finished_batches_holding(list(by_id), provider.name):
        report.batch_ids.append(held.batch.batch_id or f"#{held.batch.id}")
        items = collector.collect(held, by_id)
        if store.settle_batch(held.batch.id):
            collector.record_lost(held, items)
            _discard(provider, held.batch)
    for task_id in by_id:
        if not outcomes.known(task_id):
            outcomes.later(task_id, "nothing_to_collect")
    for task_id in others:
        outcomes.later(task_id, "not_drafting")
    outcomes.finish(store, provider.name)
    return report


class _Collector:
    """One provider's collection in one step: what each kind of item becomes."""

    def __init__(
        self,
        store: DraftStore,
        provider: LiveProvider,
        run_id: str | None,
        report: ProviderBatchReport,
        outcomes: Outcomes,
    ) -> None:
        self.store = store
        self.provider = provider
        self.run_id = run_id
        price = provider.price()
        self.price = price.batch() if price else None
        self.report = report
        self.outcomes = outcomes

    def collect(
        self, held: HeldBatch, tasks: dict[str, DocumentationTask]
    ) -> list[BatchItemResult]:
        """Store or return each item of `held` on a task of `tasks`; returns every item the
        provider reported (none when another collection discarded the batch)."""
        batch = held.batch
        name = batch.batch_id or f"#{batch.id}"
        wanted = set(held.task_ids)
        finished_at = batch.finished_at or utcnow()
        asked = dict(zip(batch.task_ids, batch.prompt_hashes, strict=True))
        items = self._results(batch) if batch.batch_id is not None else []
        if items is None:  # another collection took every item, then discarded the batch
            for gone in wanted:
                self.report.outcomes["superseded"] += 1
                self.outcomes.later(gone, "superseded")
            return []
        for item in items:
            task_id = _task_of(batch, item.custom_id)
            if task_id is None or task_id not in wanted:
                continue
            wanted.discard(task_id)
            task = tasks[task_id]
            if item.kind == "succeeded" and item.reply is not None:
                call = self._answered_call(batch, item, finished_at)
                if task.prompt_hash != asked[task_id]:
                    self._return_outdated(batch, task, [call], f"answered in batch {name}")
                    continue
                self._store_answer(batch, name, task, item, call)
            elif item.kind == "errored":
                message = item.error or "errored"
                call = self._errored_call(batch, item, message, finished_at)
                self._store_error(batch, name, task, message, call, asked[task_id])
            else:
                self.store.release_item(task_id, batch.provider, batch.holder)
                self._returned(task_id, f"{item.kind} in batch {name}; back in drafting")
        for task_id in wanted:  # items the results did not mention
            if batch.status == "failed":
                reason = f"batch failed: {batch.error or 'the provider gave no reason'}"
                call = self._errored_call(batch, None, reason, finished_at)
                self._store_error(batch, name, tasks[task_id], reason, call, asked[task_id])
            else:
                self.store.release_item(task_id, batch.provider, batch.holder)
                self._returned(task_id, f"no result in batch {name}; back in drafting")
        return items

    def record_lost(self, held: HeldBatch, items: list[BatchItemResult]) -> None:
        """Once the batch is collected, record the answers for its tasks whose claims it had
        lost before this collection: collected or returned earlier (recorded then), or taken
        over by another run after the batch's lease (not stored, but paid). Each is recorded
        once, by its request id, in one pass per batch."""
        batch = held.batch
        lost = set(held.lost)
        finished_at = batch.finished_at or utcnow()
        paid: list[tuple[str, FinishedCall]] = []
        for item in items:
            task_id = _task_of(batch, item.custom_id)
            if task_id is None or task_id not in lost:
                continue
            if item.kind == "succeeded" and item.reply is not None:
                paid.append((task_id, self._answered_call(batch, item, finished_at)))
            elif item.kind == "errored" and item.usage is not None:
                # Answered and billed, but unreadable (one without a request id is left out
                # by `record_lost_items`, as any).
                call = self._errored_call(batch, item, item.error or "errored", finished_at)
                paid.append((task_id, call))
        self.store.record_lost_items(paid, self.run_id)

    def _returned(self, task_id: str, detail: str) -> None:
        self.report.outcomes["returned"] += 1
        self.outcomes.later(task_id, "returned", detail)

    def _return_outdated(
        self, batch: ProviderBatch, task: DocumentationTask, calls: list[FinishedCall], what: str
    ) -> None:
        """Record the item's call and give the task back to `drafting` with no draft: whatever
        the provider said, it was about a prompt the task no longer has (its template changed,
        or the task was reopened or its source changed since: `REOPENED_PROMPT`)."""
        self.store.release_item(task.id, batch.provider, batch.holder, calls, self.run_id)
        self._returned(task.id, f"{what} for a prompt the task no longer has")

    def _results(self, batch: ProviderBatch) -> list[BatchItemResult] | None:
        """The batch's items; None when the provider no longer has them because another
        collection stored every one and discarded the batch (it holds no claim any more)."""
        assert batch.batch_id is not None
        try:
            return list(self.provider.batch_api().results(batch.batch_id))
        except ProviderError as error:
            if error.status_code == 404 and self.store.settle_batch(batch.id):
                return None
            raise ProviderError(
                self.provider.name,
                f"could not read the results of batch {batch.batch_id}: {error}; its tasks "
                "stay claimed by it, and the next collection tries again",
                retryable=error.retryable,
                status_code=error.status_code,
                error_type=error.error_type,
            ) from None

    def _price_of(self, batch: ProviderBatch) -> ModelPrice | None:
        """The batch price of the model the batch was sent to: the configured price when the
        provider still uses that model, else the table's (with the provider's batch factor)."""
        if batch.model == self.provider.model:
            return self.price
        listed = resolve_price(batch.model, batch_factor=self.provider.batch_price_factor)
        return listed.batch() if listed is not None else None

    def _answered_call(
        self, batch: ProviderBatch, item: BatchItemResult, finished_at: datetime
    ) -> FinishedCall:
        """The item's row of the call log, at the batch price; sent when the batch was."""
        reply = item.reply
        assert reply is not None
        cost: Decimal | None = None
        if reply.usage is not None:
            cost = cost_usd(reply.usage, self._price_of(batch), batch.model)
        attempt = CallAttempt(
            provider=batch.provider,
            model=batch.model,
            attempt=1,
            started_at=batch.submitted_at,
            status_code=200,
            request_id=reply.request_id,
            usage=reply.usage,
            cost_usd=cost,
        )
        return FinishedCall(attempt, finished_at)

    def _errored_call(
        self,
        batch: ProviderBatch,
        item: BatchItemResult | None,
        message: str,
        finished_at: datetime,
    ) -> FinishedCall:
        """The call-log row of an item the provider did not answer with a draft; with the
        tokens, at the batch price, and the request id of one whose answer came but could not
        be read (it was billed)."""
        billed = item.usage if item is not None else None
        # Only a billed item has a request id (`batches._billed`).
        request_id = item.request_id if item is not None else None
        attempt = CallAttempt(
            provider=batch.provider,
            model=batch.model,
            attempt=1,
            started_at=batch.submitted_at,
            error_type=BATCH_ITEM_ERROR,
            error_message=message,
            request_id=request_id,
            usage=billed,
            cost_usd=cost_usd(billed, self._price_of(batch), batch.model) if billed else None,
        )
        return FinishedCall(attempt, finished_at)

    def _store_answer(
        self,
        batch: ProviderBatch,
        name: str,
        task: DocumentationTask,
        item: BatchItemResult,
        call: FinishedCall,
    ) -> None:
        """Store an answer, unless another collection stored it first."""
        reply = item.reply
        assert reply is not None
        answer = Answer(
            text=reply.text,
            model=reply.model or self.provider.model,
            finish_reason=reply.finish_reason,
            request_id=reply.request_id,
            usage=reply.usage,
            cost_usd=call.attempt.cost_usd,
            latency_ms=None,
            attempts=1,
        )
        record = answer_record(task, self.provider, batch.settings_hash, self.run_id, answer)
        stored = self.store.add_draft(
            record, holder=batch.holder, calls=[call], for_ballot=task.ballot
        )
        if stored is None:
            self.report.outcomes["superseded"] += 1
            self.outcomes.later(task.id, "superseded")
            return
        self.report.add_usage(reply.usage, call.attempt.cost_usd)
        self.report.outcomes[record.status] += 1
        self.outcomes.settle(
            task.id, TaskDraft("collected", stored, f"collected from batch {name}")
        )

    def _store_error(
        self,
        batch: ProviderBatch,
        name: str,
        task: DocumentationTask,
        message: str,
        call: FinishedCall,
        asked: str,
    ) -> None:
        """Store a `failed` draft for an item the provider could not answer, with its `call`,
        unless another collection stored it first or the task has left the prompt the batch
        asked about (`asked`, its hash)."""
        if task.prompt_hash != asked:
            self._return_outdated(batch, task, [call], f"{message} in batch {name}")
            return
        error = ProviderError(
            batch.provider,
            f"batch {name}: {message}",
            error_type=BATCH_ITEM_ERROR,
            request_id=call.attempt.request_id,
            calls=(call.attempt,),
        )
        record = failed_record(task, self.provider, batch.settings_hash, error, self.run_id, 1)
        stored = self.store.add_draft(
            record, holder=batch.holder, calls=[call], for_ballot=task.ballot
        )
        if stored is None:
            self.report.outcomes["superseded"] += 1
            self.outcomes.later(task.id, "superseded")
            return
        if call.attempt.usage is not None:
            self.report.add_usage(call.attempt.usage, call.attempt.cost_usd)
        self.report.outcomes["failed"] += 1
        self.outcomes.settle(
            task.id, TaskDraft("collected", stored, f"collected from batch {name}")
        )


def settle_unheld(store: DraftStore, provider: object, held: HeldBatch) -> str | None:
    """A finished batch that holds none of its tasks any more (each collected or returned, or
    taken over by another run after the batch's lease): record the answers it was paid for
    that the call log lacks, mark it `collected` and delete it at the provider. Returns a
    warning when the provider could not be asked: the batch then waits for the next look."""
    batch = held.batch
    if isinstance(provider, LiveProvider) and batch.batch_id is not None:
        report = ProviderBatchReport(provider.name, provider.effective_model)
        collector = _Collector(store, provider, None, report, Outcomes(report, None))
        try:
            items = collector.collect(held, {})  # holds no task: only reads the items
        except ProviderError as error:
            return f"batch {batch.batch_id}: {error}"
        if store.settle_batch(batch.id):
            collector.record_lost(held, items)
            _discard(provider, batch)
        return None
    store.settle_batch(batch.id)
    return None


def _discard(provider: LiveProvider, batch: ProviderBatch) -> None:
    """Best effort, once the batch is collected: delete what the provider keeps of it. What
    stays costs a place in the provider's file quota (and keeps prompts there), not a draft."""
    if batch.batch_id is None:
        return
    try:
        provider.batch_api().discard(batch.batch_id)
    except ProviderError as error:
        logger.warning("%s: batch %s stays at the provider: %s", provider.name, batch.batch_id,
                       error)  # fmt: skip


def _task_of(batch: ProviderBatch, custom_id: str) -> str | None:
    """The task at the item's position, None for a custom id that is not one of the batch's."""
    if not custom_id.isdigit() or int(custom_id) >= len(batch.task_ids):
        return None
    return batch.task_ids[int(custom_id)]
