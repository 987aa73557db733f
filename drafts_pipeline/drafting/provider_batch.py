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
from drafts_pipeline.llm.generation import Generation
from drafts_pipeline.llm.provider import DraftRequest, LLMProvider
from drafts_pipeline.log_format import logging_run
from drafts_pipeline.prompts.code_facts import symbol_facts
from drafts_pipeline.settings import Settings
from drafts_pipeline.store import DraftRecord, DraftStore
from drafts_pipeline.store.models import DocumentationTask, DraftVersion


@dataclass(frozen=True)
class TaskDraft:
    """One task as a provider's batch left it: what the batch did (`drafted`, `reused`,
    `superseded`, `claimed_elsewhere`, `held` where a daily budget kept the call from being
    sent, or `not_drafting` for a task out of `drafting`) and the task's newest stored draft by
    that provider (None: there is none)."""

    outcome: str
    draft: DraftVersion | None

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
    budget_reached: BudgetReached | None = None
    """The daily budget that stopped the batch's calls, if one did (`outcomes["held"]` tasks)."""

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


OnTask = Callable[[str, TaskDraft], None]
"""Told each task's outcome as soon as the batch knows it, from the batch's thread."""


def reusable(draft_status: str, same_prompt: bool, same_settings: bool) -> bool:
    """A valid draft for the same prompt, model and settings is kept instead of a new call."""
    return draft_status == "valid" and same_prompt and same_settings


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

    def settle(task_id: str, task: TaskDraft) -> None:
        report.tasks[task_id] = task
        if on_task is not None:
            on_task(task_id, task)

    holder = run_id or f"local-{uuid.uuid4()}"
    claimed = store.claim_drafts([t.id for t in tasks], provider.name, holder, lease_s)
    report.outcomes["claimed_elsewhere"] += len(tasks) - len(claimed)
    unknown: dict[str, str] = {t.id: "claimed_elsewhere" for t in tasks if t.id not in claimed}
    unknown |= dict.fromkeys(others, "not_drafting")
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
                settle(task.id, TaskDraft("reused", previous))
                keeper.drop(task.id)
            else:
                to_call.append(task)
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
                record = _record(
                    by_id[task_id], requests[task_id], provider, settings, result, run_id, report
                )
                stored = store.add_draft(record, holder=holder)
                keeper.drop(task_id)
                report.outcomes[record.status if stored else "superseded"] += 1
                if stored is None:
                    unknown[task_id] = "superseded"
                else:
                    settle(task_id, TaskDraft("drafted", stored))
        if report.budget_reached is not None:
            # The hold is written before the claims go, so that no ballot sees the task free
            # and unheld in between.
            reached = report.budget_reached
            store.hold_tasks(held, reached.until, str(reached))
            store.release_claims(held, provider.name, holder)
            for task_id in held:
                keeper.drop(task_id)
                unknown[task_id] = "held"
            report.outcomes["held"] += len(held)
    if unknown:
        newest = store.latest_drafts(list(unknown), provider.name)
        for task_id, outcome in unknown.items():
            settle(task_id, TaskDraft(outcome, newest.get(task_id)))
    return report


def _record(
    task: DocumentationTask,
    request: DraftRequest,
    provider: LLMProvider,
    settings: str,
    result: Generation | ProviderError,
    run_id: str | None,
    report: ProviderBatchReport,
) -> DraftRecord:
    common: dict[str, Any] = {
        "task_id": task.id,
        "provider": provider.name,
        "prompt_used": prompt_used(request),
        "prompt_hash": task.prompt_hash or "",
        "template_version": task.template_version or "",
        "settings_hash": settings,
        "run_id": run_id,
    }
    if isinstance(result, ProviderError):
        return DraftRecord(
            **common,
            model=provider.effective_model,
            content="",
            status="failed",
            validation={
                "provider": {"ok": False, "reason": str(result), "error_type": result.error_type}
            },
            request_id=result.request_id,
            attempts=len(result.calls),
        )
    verdict = validate_draft(
        result.text,
        result.finish_reason,
        symbol_facts(task.code, task.language),
        task.code,
        frozenset({result.model, provider.effective_model}),
    )
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
