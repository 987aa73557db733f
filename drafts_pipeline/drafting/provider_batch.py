"""Draft a batch of tasks with one provider: reuse, call, validate, store. No Dagster here."""

import statistics
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from drafts_pipeline.drafting.leases import LeaseKeeper
from drafts_pipeline.drafting.requests import draft_request, prompt_used
from drafts_pipeline.drafting.turns import sending_turn
from drafts_pipeline.drafting.validation import problem_in, repair_in, validate_draft
from drafts_pipeline.errors import BudgetReached, ProviderError
from drafts_pipeline.llm.budget import DailyBudget
from drafts_pipeline.llm.generation import Generation, TokenUsage, billed_cost
from drafts_pipeline.llm.provider import LiveProvider, LLMProvider
from drafts_pipeline.log_format import logging_run
from drafts_pipeline.prompts.code_facts import symbol_facts
from drafts_pipeline.prompts.templates import output_schema_version
from drafts_pipeline.settings import Settings
from drafts_pipeline.store import DraftRecord, DraftStore
from drafts_pipeline.store.models import DocumentationTask, DraftVersion


@dataclass(frozen=True)
class TaskDraft:
    """One task as a provider's batch left it: what the batch did (`drafted`, `reused`,
    `superseded`, `claimed_elsewhere`, `held` where a daily budget kept the call from being
    sent, or `not_drafting` for a task out of `drafting`; with a provider's batch API
    `submitted`, `collected`, `returned` or `nothing_to_collect`) and the task's newest stored
    draft by that provider (None: there is none)."""

    outcome: str
    draft: DraftVersion | None
    detail: str | None = None
    """What the run did, said in full where the outcome's name is not enough (`submitted in
    batch msgbatch_01…`)."""

    @property
    def problem(self) -> str | None:
        """Why the newest draft is not valid; None when it is valid or there is none."""
        return None if self.draft is None else problem_in(self.draft.status, self.draft.validation)

    @property
    def repair(self) -> str | None:
        """What was mended to read the newest draft's JSON; None when nothing was."""
        return None if self.draft is None else repair_in(self.draft.validation)

    @property
    def answer_json(self) -> str | None:
        """How the newest draft's JSON was read: `strict`, `fenced`, `repaired`, or
        `unreadable`; None for a failed call, or a draft stored before answers were read
        leniently."""
        reading = None if self.draft is None else self.draft.validation.get("json")
        if not isinstance(reading, dict):
            return None
        return reading.get("read_as") or "unreadable"


@dataclass
class ProviderBatchReport:
    """What one provider did for a batch: the batch's totals, which every provider reports
    alike, and each task's newest draft."""

    provider: str
    model: str
    outcomes: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal | None = Decimal(0)
    latencies_ms: list[int] = field(default_factory=list)
    tasks: dict[str, TaskDraft] = field(default_factory=dict)
    batch_ids: list[str] = field(default_factory=list)
    """The provider's batches this report's tasks were submitted in or collected from."""
    budget_reached: BudgetReached | None = None
    """The daily budget that stopped the batch's calls, if one did (`outcomes["held"]` tasks)."""

    def add(self, generation: Generation) -> None:
        """Count one answered call in the batch's totals."""
        self.add_usage(generation.usage, generation.cost_usd)
        self.latencies_ms.append(generation.latency_ms)

    def add_usage(self, usage: TokenUsage | None, cost_usd: Decimal | None) -> None:
        """Count one answer's tokens and cost (unknown once any cost is unknown)."""
        if usage is not None:
            self.input_tokens += usage.input_tokens
            self.output_tokens += usage.output_tokens
        if cost_usd is None or self.cost_usd is None:
            self.cost_usd = None
        else:
            self.cost_usd += cost_usd

    def latency_quantile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        if len(self.latencies_ms) == 1:
            return float(self.latencies_ms[0])
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[
            round(q * 100) - 1
        ]


OnTask = Callable[[str, TaskDraft], None]
"""Told each task's outcome as soon as the batch knows it, from the batch's thread."""


class Outcomes:
    """A provider batch's tasks as their outcomes become known: each settled one goes into the
    report and to `on_task` at once; those left for later (their draft was not touched) are
    settled at the end with their newest draft, read in one query."""

    def __init__(self, report: ProviderBatchReport, on_task: OnTask | None) -> None:
        self._report = report
        self._on_task = on_task
        self._later: dict[str, tuple[str, str | None]] = {}

    def settle(self, task_id: str, task: TaskDraft) -> None:
        self._report.tasks[task_id] = task
        if self._on_task is not None:
            self._on_task(task_id, task)

    def later(self, task_id: str, outcome: str, detail: str | None = None) -> None:
        self._later[task_id] = (outcome, detail)

    def known(self, task_id: str) -> bool:
        return task_id in self._report.tasks or task_id in self._later

    def finish(self, store: DraftStore, provider: str) -> None:
        if self._later:
            newest = store.latest_drafts(list(self._later), provider)
            for task_id, (outcome, detail) in self._later.items():
                self.settle(task_id, TaskDraft(outcome, newest.get(task_id), detail))
            self._later = {}


def reusable(draft_status: str, same_prompt: bool, same_settings: bool) -> bool:
    """A valid draft for the same prompt, model and settings is kept instead of a new call."""
    return draft_status == "valid" and same_prompt and same_settings


def split_reusable(
    tasks: list[DocumentationTask],
    latest: dict[str, DraftVersion],
    settings: str,
    force: bool,
) -> tuple[list[DocumentationTask], list[DocumentationTask]]:
    """The tasks whose newest draft can be kept (none with `force`), and those to draft."""
    kept: list[DocumentationTask] = []
    to_draft: list[DocumentationTask] = []
    for task in tasks:
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
            kept.append(task)
        else:
            to_draft.append(task)
    return kept, to_draft


def draft_with_provider(
    store: DraftStore,
    provider: LLMProvider,
    tasks: list[DocumentationTask],
    *,
    run_id: str | None,
    force: bool = False,
    lease_s: float = Settings.claim_lease_s,
    others: Sequence[str] = (),
    on_task: OnTask | None = None,
    budget: DailyBudget | None = None,
) -> ProviderBatchReport:
    """Draft every task with `provider`; a provider failure is stored, never raised.

    With `budget`, each call is checked against the daily caps before it is sent. Once one is
    reached, the batch's calls not yet sent are not made: those tasks stay in `drafting` with
    no draft stored and their claims released, held until the next UTC midnight (`held`).

    The batch first claims its tasks for this provider in the store; a task another live run
    has claimed is left to that run (`claimed_elsewhere`). Reuse is decided after the claim,
    so a draft another run stored a moment ago is reused, not paid for again.

    `others` are the batch's tasks that are not to be drafted (no longer in `drafting`): the
    report holds their newest stored drafts as they are, read in one query with those of the
    tasks left to another run or whose draft was superseded.

    `on_task` hears of each task as soon as its outcome is known (reused, or its draft stored;
    those in that last query when it returns), so a caller can show it while other calls are
    still in flight; the report holds every task all the same.
    """
    report = ProviderBatchReport(provider.name, provider.effective_model)
    # Before any claim: a task whose stored prompt cannot be sent fails the batch here.
    requests = {task.id: draft_request(task) for task in tasks}
    outcomes = Outcomes(report, on_task)
    holder = run_id or f"local-{uuid.uuid4()}"
    claimed = store.claim_drafts([t.id for t in tasks], provider.name, holder, lease_s)
    report.outcomes["claimed_elsewhere"] += len(tasks) - len(claimed)
    for task_id in [t.id for t in tasks if t.id not in claimed]:
        outcomes.later(task_id, "claimed_elsewhere")
    for task_id in others:
        outcomes.later(task_id, "not_drafting")
    mine = [task for task in tasks if task.id in claimed]
    settings = provider.settings_hash()
    with LeaseKeeper(store, provider.name, holder, lease_s) as keeper:
        keeper.hold([task.id for task in mine])
        latest = store.latest_drafts([t.id for t in mine], provider.name)
        kept, to_call = split_reusable(mine, latest, settings, force)
        reused = [task.id for task in kept]
        for task_id in reused:
            outcomes.settle(task_id, TaskDraft("reused", latest[task_id]))
            keeper.drop(task_id)
        store.release_claims(reused, provider.name, holder)
        report.outcomes["reused"] += len(reused)
        by_id = {task.id: task for task in to_call}
        sending = [requests[task.id] for task in to_call]
        shared = store.sending_turn(provider.name) if sending else None
        call_log = store.call_log(run_id)
        held: list[str] = []
        with (
            logging_run(run_id),
            sending_turn(provider.name, len(sending), shared, run_id=run_id) as on_start,
        ):
            for task_id, result in provider.generate_each(
                sending, on_start, call_log=call_log, budget=budget
            ):
                if isinstance(result, BudgetReached):
                    report.budget_reached = report.budget_reached or result
                    held.append(task_id)
                    continue
                record = _record(by_id[task_id], provider, settings, result, run_id, report)
                stored = store.add_draft(record, holder=holder)
                keeper.drop(task_id)
                report.outcomes[record.status if stored else "superseded"] += 1
                if stored is None:
                    outcomes.later(task_id, "superseded")
                else:
                    outcomes.settle(task_id, TaskDraft("drafted", stored))
        if report.budget_reached is not None:
            # The hold is written before the claims go, so that no ballot sees the task free
            # and unheld in between.
            reached = report.budget_reached
            store.hold_tasks(held, reached.until, str(reached))
            store.release_claims(held, provider.name, holder)
            for task_id in held:
                keeper.drop(task_id)
                outcomes.later(task_id, "held")
            report.outcomes["held"] += len(held)
    outcomes.finish(store, provider.name)
    return report


def _record(
    task: DocumentationTask,
    provider: LLMProvider,
    settings: str,
    result: Generation | ProviderError,
    run_id: str | None,
    report: ProviderBatchReport,
) -> DraftRecord:
    if isinstance(result, ProviderError):
        record = failed_record(task, provider, settings, result, run_id)
        if record.cost_usd is not None:
            report.add_usage(None, record.cost_usd)
        return record
    report.add(result)
    return answer_record(
        task,
        provider,
        settings,
        run_id,
        Answer(
            text=result.text,
            model=result.model,
            finish_reason=result.finish_reason,
            request_id=result.request_id,
            usage=result.usage,
            cost_usd=result.cost_usd,
            latency_ms=result.latency_ms,
            attempts=result.attempts,
            attempted_models=result.attempted_models,
        ),
    )


@dataclass(frozen=True)
class Answer:
    """A provider's answer to one task's prompt, live or from a provider batch (which has no
    latency of its own)."""

    text: str
    model: str
    finish_reason: str | None
    request_id: str | None
    usage: TokenUsage | None
    cost_usd: Decimal | None
    latency_ms: int | None
    attempts: int
    attempted_models: tuple[str, ...] = ()
    """The models asked, in order, where the provider says (live calls)."""


def attempted_models(models: tuple[str, ...], provider: LLMProvider) -> list[str] | None:
    """The draft's `attempted_models`: the list when a model other than the configured one was
    asked (a fallback), None when only the configured model was."""
    if not models or models == (provider.effective_model,):
        return None
    return list(models)


def _provenance(
    task: DocumentationTask, provider: LLMProvider, settings: str, run_id: str | None
) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "provider": provider.name,
        "prompt_used": prompt_used(draft_request(task)),
        "prompt_hash": task.prompt_hash or "",
        "template_version": task.template_version or "",
        "output_schema_version": output_schema_version(task.template_version),
        "settings_hash": settings,
        "run_id": run_id,
    }


def failed_record(
    task: DocumentationTask,
    provider: LLMProvider,
    settings: str,
    error: ProviderError,
    run_id: str | None,
    attempts: int | None = None,
) -> DraftRecord:
    """A `failed` draft: the provider could not answer, for the reason `error` gives, after
    `attempts` requests (by default the calls `error` carries). Its cost is what the calls
    `error` carries were billed (answers whose content could not be read), if any."""
    return DraftRecord(
        **_provenance(task, provider, settings, run_id),
        model=provider.effective_model,
        content="",
        status="failed",
        validation={
            "provider": {"ok": False, "reason": str(error), "error_type": error.error_type}
        },
        request_id=error.request_id,
        cost_usd=billed_cost(error.calls),
        attempts=len(error.calls) if attempts is None else attempts,
        attempted_models=attempted_models(error.attempted_models, provider),
    )


def answer_record(
    task: DocumentationTask,
    provider: LLMProvider,
    settings: str,
    run_id: str | None,
    answer: Answer,
) -> DraftRecord:
    """The answer validated (schema, completeness, blindness) into the draft to store, with
    its provenance: the prompt as the task holds it, the model the provider says it used.
    The models' ids and the provider's family words are names the draft must not speak."""
    family = provider.family if isinstance(provider, LiveProvider) else []
    verdict = validate_draft(
        answer.text,
        answer.finish_reason,
        symbol_facts(task.code, task.language),
        task.code,
        frozenset({answer.model, provider.effective_model, *answer.attempted_models, *family}),
    )
    return DraftRecord(
        **_provenance(task, provider, settings, run_id),
        model=answer.model,
        content=verdict.content or answer.text,
        status=verdict.status,
        validation=verdict.checks,
        finish_reason=answer.finish_reason,
        request_id=answer.request_id,
        usage=answer.usage,
        cost_usd=answer.cost_usd,
        latency_ms=answer.latency_ms,
        attempts=answer.attempts,
        attempted_models=attempted_models(answer.attempted_models, provider),
    )
