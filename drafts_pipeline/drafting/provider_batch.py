"""Draft a batch of tasks with one provider: reuse, call, validate, store. No Dagster here."""

import logging
import statistics
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from drafts_pipeline.drafting.validation import validate_draft
from drafts_pipeline.errors import ProviderError
from drafts_pipeline.llm.generation import Generation
from drafts_pipeline.llm.provider import DraftRequest, LLMProvider
from drafts_pipeline.prompts.code_facts import symbol_facts
from drafts_pipeline.store import DraftRecord, DraftStore
from drafts_pipeline.store.models import DocumentationTask


@dataclass
class ProviderBatchReport:
    """What one provider did for a batch: the figures every provider reports alike."""

    provider: str
    model: str
    outcomes: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal | None = Decimal(0)
    latencies_ms: list[int] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    leaks: dict[str, str] = field(default_factory=dict)

    def add(self, generation: Generation) -> None:
        """Count one answered call in the batch's totals."""
        if generation.usage is not None:
            self.input_tokens += generation.usage.input_tokens
            self.output_tokens += generation.usage.output_tokens
        self.latencies_ms.append(generation.latency_ms)
        if generation.cost_usd is None or self.cost_usd is None:
            self.cost_usd = None
        else:
            self.cost_usd += generation.cost_usd

    def latency_quantile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        if len(self.latencies_ms) == 1:
            return float(self.latencies_ms[0])
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[
            round(q * 100) - 1
        ]


def reusable(draft_status: str, same_prompt: bool, same_settings: bool) -> bool:
    """A valid draft for the same prompt, model and settings is kept instead of a new call."""
    return draft_status == "valid" and same_prompt and same_settings


logger = logging.getLogger(__name__)

DEFAULT_LEASE_S = 60.0


class LeaseKeeper:
    """Renews, every third of a lease, the claims a batch still holds, so that a call that
    takes longer than the lease is never taken over while its run is alive."""

    def __init__(self, store: DraftStore, provider: str, run_id: str, lease_s: float) -> None:
        self._store = store
        self._provider = provider
        self._run_id = run_id
        self._lease_s = lease_s
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._renew_until_stopped, name=f"claims-{provider}", daemon=True
        )

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            left, self._held = list(self._held), set()
        self._store.release_claims(left, self._provider, self._run_id)

    def hold(self, task_ids: list[str]) -> None:
        with self._lock:
            self._held.update(task_ids)

    def drop(self, task_id: str) -> None:
        with self._lock:
            self._held.discard(task_id)

    def _renew_until_stopped(self) -> None:
        """Renew every third of a lease; after a failed renewal (the database briefly out of
        reach) try again sooner, while the leases still have two thirds to run."""
        wait_s = self._lease_s / 3
        while not self._stop.wait(wait_s):
            with self._lock:
                held = list(self._held)
            if not held:
                continue
            try:
                kept = self._store.renew_claims(held, self._provider, self._run_id, self._lease_s)
            except SQLAlchemyError as error:
                logger.warning(
                    "%s: could not renew %d claim(s) (%s); trying again",
                    self._provider, len(held), type(error).__name__,
                )  # fmt: skip
                wait_s = self._lease_s / 9
                continue
            wait_s = self._lease_s / 3
            with self._lock:
                self._held &= kept | (self._held - set(held))


def draft_with_provider(
    store: DraftStore,
    provider: LLMProvider,
    tasks: list[DocumentationTask],
    *,
    run_id: str | None,
    force: bool = False,
    lease_s: float = DEFAULT_LEASE_S,
) -> ProviderBatchReport:
    """Draft every task with `provider`; a provider failure is stored, never raised.

    The batch first claims its tasks for this provider in the store; a task another live run
    has claimed is left to that run (`claimed_elsewhere`). Reuse is decided after the claim,
    so a draft another run stored a moment ago is reused, not paid for again.
    """
    report = ProviderBatchReport(provider.name, provider.effective_model)
    holder = run_id or f"local-{uuid.uuid4()}"
    claimed = store.claim_drafts([t.id for t in tasks], provider.name, holder, lease_s)
    report.outcomes["claimed_elsewhere"] += len(tasks) - len(claimed)
    mine = [task for task in tasks if task.id in claimed]
    settings = provider.settings_hash()
    with LeaseKeeper(store, provider.name, holder, lease_s) as keeper:
        keeper.hold([task.id for task in mine])
        latest = store.latest_drafts([t.id for t in mine], provider.name)
        to_call: list[DocumentationTask] = []
        reused: list[str] = []
        for task in mine:
            previous = latest.get(task.id)
            if (
                not force
                and previous is not None
                and reusable(
                    previous.status,
                    previous.prompt_hash == task.prompt_hash,
                    previous.settings_hash == settings,
                )
            ):
                reused.append(task.id)
                keeper.drop(task.id)
            else:
                to_call.append(task)
        store.release_claims(reused, provider.name, holder)
        report.outcomes["reused"] += len(reused)
        by_id = {task.id: task for task in to_call}
        requests = [DraftRequest(t.id, t.prompt or "", t.symbol, t.code) for t in to_call]
        shared = store.sending_turn(provider.name) if requests else None
        call_log = store.call_log(run_id)
        with sending_turn(provider.name, len(requests), shared, run_id=run_id) as on_start:
            for task_id, result in provider.generate_each(requests, on_start, call_log=call_log):
                record = _record(by_id[task_id], provider, settings, result, run_id, report)
                stored = store.add_draft(record, holder=holder)
                keeper.drop(task_id)
                report.outcomes[record.status if stored else "superseded"] += 1
    return report


class SharedTurn(Protocol):
    """A turn shared beyond this process (`StoreSendingTurn`)."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...


class SendingTurns:
    """Per provider, which batch of this process sends requests (see `sending_turn`); and, for
    the runs someone watches, how many of their provider batches have begun sending."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._changed = threading.Condition()
        self._begun: dict[str, int] = {}

    def lock(self, provider: str) -> threading.Lock:
        with self._changed:
            return self._locks.setdefault(provider, threading.Lock())

    def watch(self, run_id: str) -> None:
        """Count the provider batches of run `run_id` as they begin; see `wait_until_begun`."""
        with self._changed:
            self._begun.setdefault(run_id, 0)

    def unwatch(self, run_id: str) -> None:
        with self._changed:
            self._begun.pop(run_id, None)

    def begun(self, run_id: str | None) -> None:
        """A provider batch of `run_id` sent its first request, or ended without sending one."""
        with self._changed:
            if run_id in self._begun:
                self._begun[run_id] += 1
                self._changed.notify_all()

    def wait_until_begun(self, run_id: str, batches: int, timeout_s: float) -> bool:
        """Wait until `batches` provider batches of the watched run `run_id` have begun; False
        after `timeout_s`."""
        with self._changed:
            return self._changed.wait_for(lambda: self._begun.get(run_id, 0) >= batches, timeout_s)


TURNS = SendingTurns()


@contextmanager
def sending_turn(
    provider: str,
    requests: int,
    shared: "SharedTurn | None" = None,
    *,
    run_id: str | None = None,
) -> Iterator[Callable[[], None]]:
    """The turn to send requests to `provider`, held from the batch's first request until its
    last one has been sent (or the batch ends), not until the last answer.

    Batches running at once (overlapping runs in one process, or the daemon's runs in many)
    would otherwise interleave their requests under the shared pace and all finish together, so
    that their last answers, materialisations and ballots would queue at the end. Taking turns,
    a waiting batch sends its first request one pace interval after the previous batch's last,
    while that batch's answers are still arriving. The turn is this process's lock and then
    `shared`, the store's lock across processes. Yields the callback to call as each request
    is sent. The batch counts as begun for run `run_id` (`SendingTurns.begun`) at its first
    request, or as it ends if it sent none.
    """
    turn = TURNS.lock(provider)
    sent = 0
    count_lock = threading.Lock()
    turn.acquire()
    try:
        if shared is not None:
            shared.acquire()
    except BaseException:
        turn.release()
        raise
    held = True

    def release() -> None:
        nonlocal held
        held = False
        try:
            if shared is not None:
                shared.release()
        finally:
            turn.release()

    def on_start() -> None:
        nonlocal sent
        with count_lock:
            sent += 1
            if sent == 1:
                TURNS.begun(run_id)
            if sent >= requests and held:
                release()

    try:
        yield on_start
    finally:
        with count_lock:
            if held:
                release()
            if sent == 0:
                TURNS.begun(run_id)


def _record(
    task: DocumentationTask,
    provider: LLMProvider,
    settings: str,
    result: Generation | ProviderError,
    run_id: str | None,
    report: ProviderBatchReport,
) -> DraftRecord:
    common: dict[str, Any] = {
        "task_id": task.id,
        "provider": provider.name,
        "prompt_used": task.prompt or "",
        "prompt_hash": task.prompt_hash or "",
        "template_version": task.template_version or "",
        "settings_hash": settings,
        "run_id": run_id,
    }
    if isinstance(result, ProviderError):
        report.problems[task.id] = str(result)
        return DraftRecord(
            **common,
            model=provider.effective_model,
            content="",
            status="failed",
            validation={"provider": {"ok": False, "reason": str(result)}},
            request_id=result.request_id,
            attempts=len(result.calls),
        )
    verdict = validate_draft(
        result.text, result.finish_reason, symbol_facts(task.code), f"{task.code}\n{task.context}"
    )
    if verdict.status != "valid":
        report.problems[task.id] = "; ".join(verdict.reasons)
    if not verdict.checks["blind"]["ok"]:
        report.leaks[task.id] = verdict.checks["blind"]["reason"]
    report.add(result)
    return DraftRecord(
        **common,
        model=result.model,
        content=verdict.content or result.text,
        status=verdict.status,
        validation=verdict.checks,
        finish_reason=result.finish_reason,
        request_id=result.request_id,
        usage=result.usage,
        cost_usd=result.cost_usd,
        latency_ms=result.latency_ms,
        attempts=result.attempts,
    )
