"""`DraftStore`: every read and write of tasks, drafts and calls, with the design's invariants."""

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

import dagster as dg
from sqlalchemy import Engine, bindparam, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from drafts_pipeline.drafting.ballot import assign_labels, decide
from drafts_pipeline.llm.generation import CallAttempt
from drafts_pipeline.prompts.templates import BuiltPrompt
from drafts_pipeline.store import schema
from drafts_pipeline.store.models import DocumentationTask, DraftVersion, LLMCall, utcnow
from drafts_pipeline.store.pacing import StorePaceBook, StoreSendingTurn


@dataclass(frozen=True)
class TaskInput:
    """A new documentation task, as discovery or import produce it."""

    id: str
    symbol: str
    language: str
    code: str
    context: str = ""
    source_path: str | None = None
    template: str = "docstring"
    priority: int = 0


@dataclass(frozen=True)
class DraftRecord:
    """A draft to store; the store assigns its version."""

    task_id: str
    provider: str
    model: str
    content: str
    prompt_used: str
    prompt_hash: str
    template_version: str
    settings_hash: str
    status: str
    validation: dict[str, Any]
    finish_reason: str | None = None
    request_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: Decimal | None = None
    latency_ms: int | None = None
    attempts: int = 0
    run_id: str | None = None


@dataclass(frozen=True)
class BallotOutcome:
    """What a ballot did: `voting`, `drafting` (below quorum), `failed`, or `unchanged`."""

    task_id: str
    outcome: str
    valid_drafts: int
    labels: dict[str, str] = field(default_factory=dict)
    reason: str | None = None


class DraftStore(dg.ConfigurableResource):
    """The relational store of tasks, drafts and calls (SQLite or PostgreSQL)."""

    database_url: str

    @property
    def engine(self) -> Engine:
        return schema.engine_for(self.database_url)

    def upgrade(self) -> None:
        schema.upgrade(self.database_url)

    def require_current(self) -> None:
        schema.require_current(self.database_url)

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def pace_book(self, provider: str) -> StorePaceBook:
        """The request pace of `provider` that every process drafting on this store shares."""
        return StorePaceBook(self.engine, provider)

    def sending_turn(self, provider: str) -> StoreSendingTurn:
        """The turn to send requests to `provider`, one batch at a time across processes."""
        return StoreSendingTurn(self.engine, provider)

    # --- tasks -------------------------------------------------------------------------

    def add_tasks(self, tasks: Sequence[TaskInput]) -> int:
        """Insert tasks in one transaction; ids already stored are left as they are.

        Returns how many were new.
        """
        if not tasks:
            return 0
        now = utcnow()
        rows = [
            {
                **asdict(task),
                "status": "drafting",
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            for task in tasks
        ]
        statement = (
            schema.dialect_insert(self.engine.dialect.name)(DocumentationTask)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(DocumentationTask.id)
        )
        with self._session() as session, session.begin():
            return len(list(session.scalars(statement, rows)))

    def tasks_by_id(self, ids: Sequence[str]) -> dict[str, DocumentationTask]:
        with self._session() as session:
            rows = session.scalars(select(DocumentationTask).where(DocumentationTask.id.in_(ids)))
            return {row.id: row for row in rows}

    def record_prompts(self, prompts: Sequence[tuple[str, BuiltPrompt]]) -> None:
        """Store each task's current prompt, in one transaction; only for tasks still being
        drafted, and only where it changed."""
        if not prompts:
            return
        statement = (
            update(DocumentationTask)
            .where(
                DocumentationTask.id == bindparam("task_id"),
                DocumentationTask.status == "drafting",
                or_(
                    DocumentationTask.prompt_hash.is_(None),
                    DocumentationTask.prompt_hash != bindparam("new_hash"),
                ),
            )
            .values(
                prompt=bindparam("new_prompt"),
                prompt_hash=bindparam("new_hash"),
                template_version=bindparam("new_version"),
            )
        )
        rows = [
            {
                "task_id": task_id,
                "new_prompt": prompt.text,
                "new_hash": prompt.prompt_hash,
                "new_version": prompt.template_version,
            }
            for task_id, prompt in prompts
        ]
        with self.engine.begin() as connection:
            connection.execute(statement, rows)

    def fail_task(self, task_id: str, reason: str) -> bool:
        """Mark a task that cannot be drafted as it stands `failed`; True if it was drafting."""
        with self._session() as session, session.begin():
            result = session.execute(
                update(DocumentationTask)
                .where(DocumentationTask.id == task_id, DocumentationTask.status == "drafting")
                .values(status="failed", last_error=reason, updated_at=utcnow())
            )
            return result.rowcount == 1

    def drafting_after(self, seq: int, limit: int) -> list[tuple[int, str]]:
        """`(seq, id)` of the next `limit` drafting tasks past a cursor, in arrival order."""
        with self._session() as session:
            rows = session.execute(
                select(DocumentationTask.seq, DocumentationTask.id)
                .where(DocumentationTask.status == "drafting", DocumentationTask.seq > seq)
                .order_by(DocumentationTask.seq)
                .limit(limit)
            )
            return [(row.seq, row.id) for row in rows]

    def below_quorum(self, limit: int) -> list[tuple[str, int]]:
        """`(id, attempts)` of the first `limit` tasks, in arrival order, that a ballot left in
        `drafting` for want of enough valid drafts (at least one attempt, not yet failed)."""
        with self._session() as session:
            rows = session.execute(
                select(DocumentationTask.id, DocumentationTask.attempts)
                .where(DocumentationTask.status == "drafting", DocumentationTask.attempts > 0)
                .order_by(DocumentationTask.seq)
                .limit(limit)
            )
            return [(row.id, row.attempts) for row in rows]

    def task_ids(self, status: str) -> list[str]:
        with self._session() as session:
            return list(
                session.scalars(
                    select(DocumentationTask.id)
                    .where(DocumentationTask.status == status)
                    .order_by(DocumentationTask.seq)
                )
            )

    # --- drafts and calls --------------------------------------------------------------

    def latest_drafts(self, task_ids: Sequence[str], provider: str) -> dict[str, DraftVersion]:
        """The newest draft version per task for one provider."""
        newest = (
            select(DraftVersion.task_id, func.max(DraftVersion.version).label("version"))
            .where(DraftVersion.task_id.in_(task_ids), DraftVersion.provider == provider)
            .group_by(DraftVersion.task_id)
            .subquery()
        )
        with self._session() as session:
            rows = session.scalars(
                select(DraftVersion).join(
                    newest,
                    (DraftVersion.task_id == newest.c.task_id)
                    & (DraftVersion.version == newest.c.version)
                    & (DraftVersion.provider == provider),
                )
            )
            return {row.task_id: row for row in rows}

    def add_draft(
        self, record: DraftRecord, calls: Sequence[CallAttempt] = ()
    ) -> DraftVersion | None:
        """Store the HTTP attempts behind a draft and the draft as the next version, in one
        transaction. The draft is not stored (None) when the task left `drafting` meanwhile or
        a concurrent run stored that version first (the unique key decides); the attempts are
        stored in every case: they happened."""
        try:
            with self._session() as session, session.begin():
                session.add_all(self._call_rows(record.task_id, record.run_id, calls))
                status = session.scalar(
                    select(DocumentationTask.status).where(DocumentationTask.id == record.task_id)
                )
                if status != "drafting":
                    return None
                current = session.scalar(
                    select(func.max(DraftVersion.version)).where(
                        DraftVersion.task_id == record.task_id,
                        DraftVersion.provider == record.provider,
                    )
                )
                draft = DraftVersion(**asdict(record), version=(current or 0) + 1)
                session.add(draft)
            return draft
        except IntegrityError:
            self.add_calls(record.task_id, record.run_id, calls)
            return None

    def add_calls(self, task_id: str, run_id: str | None, calls: Sequence[CallAttempt]) -> None:
        if not calls:
            return
        with self._session() as session, session.begin():
            session.add_all(self._call_rows(task_id, run_id, calls))

    @staticmethod
    def _call_rows(task_id: str, run_id: str | None, calls: Sequence[CallAttempt]) -> list[LLMCall]:
        return [
            LLMCall(
                task_id=task_id,
                run_id=run_id,
                **{f.name: getattr(call, f.name) for f in fields(call) if f.name != "usage"},
                input_tokens=call.usage.input_tokens if call.usage else None,
                output_tokens=call.usage.output_tokens if call.usage else None,
                cached_tokens=call.usage.cached_tokens if call.usage else None,
                reasoning_tokens=call.usage.reasoning_tokens if call.usage else None,
            )
            for call in calls
        ]

    # --- ballots -----------------------------------------------------------------------

    def cast_ballot(
        self, task_id: str, *, min_drafts: int, max_attempts: int, rng: random.Random
    ) -> BallotOutcome:
        """`cast_ballots` for one task."""
        return self.cast_ballots(
            [task_id], min_drafts=min_drafts, max_attempts=max_attempts, rng=rng
        )[0]

    def cast_ballots(
        self, task_ids: Sequence[str], *, min_drafts: int, max_attempts: int, rng: random.Random
    ) -> list[BallotOutcome]:
        """For each task still in `drafting`: at quorum, label the newest valid draft of each
        provider and move the task to `voting`, exactly once; below quorum, count an attempt.

        One transaction and a handful of statements for the whole batch. A task that another
        ballot moved first (racing runs) comes back `unchanged`, with its labels untouched.
        """
        if not task_ids:
            return []
        with self._session() as session, session.begin():
            # Locked in one order, so that two batches over the same tasks cannot deadlock
            # (PostgreSQL; SQLite's BEGIN IMMEDIATE already lets one writer in at a time).
            rows = session.execute(
                select(DocumentationTask.id, DocumentationTask.status, DocumentationTask.attempts)
                .where(DocumentationTask.id.in_(task_ids))
                .order_by(DocumentationTask.id)
                .with_for_update()
            ).all()
            statuses = {task_id: status for task_id, status, _ in rows}
            attempts = {task_id: count for task_id, _, count in rows}
            drafting = [t for t in dict.fromkeys(task_ids) if statuses.get(t) == "drafting"]
            valid = self._newest_valid_drafts(session, drafting)
            outcomes: dict[str, BallotOutcome] = {}
            to_vote: list[str] = []
            below: dict[str, tuple[str, str]] = {}
            for task_id in drafting:
                count = len(valid.get(task_id, {}))
                decision = decide(count, min_drafts, attempts[task_id], max_attempts)
                if decision == "voting":
                    to_vote.append(task_id)
                else:
                    below[task_id] = (decision, f"{count} valid draft(s), quorum is {min_drafts}")
            now = utcnow()
            moved = (
                set(
                    session.scalars(
                        update(DocumentationTask)
                        .where(
                            DocumentationTask.id.in_(to_vote),
                            DocumentationTask.status == "drafting",
                        )
                        .values(status="voting", last_error=None, updated_at=now)
                        .returning(DocumentationTask.id)
                    )
                )
                if to_vote
                else set()
            )
            labelled: list[dict[str, Any]] = []
            for task_id in to_vote:
                drafts = valid[task_id]
                if task_id not in moved:
                    outcomes[task_id] = BallotOutcome(
                        task_id, "unchanged", len(drafts), reason="raced"
                    )
                    continue
                labels = assign_labels(list(drafts), rng)
                labelled += [
                    {"draft_id": draft_id, "new_label": labels[provider]}
                    for provider, draft_id in drafts.items()
                ]
                outcomes[task_id] = BallotOutcome(task_id, "voting", len(drafts), labels)
            self._label_drafts(session, labelled)
            if below:
                tasks = DocumentationTask.__table__
                session.connection().execute(
                    update(tasks)
                    .where(tasks.c.id == bindparam("task_id"), tasks.c.status == "drafting")
                    .values(
                        attempts=tasks.c.attempts + 1,
                        last_error=bindparam("reason"),
                        status=bindparam("decision"),
                        updated_at=now,
                    ),
                    [
                        {"task_id": t, "decision": decision, "reason": reason}
                        for t, (decision, reason) in below.items()
                    ],
                )
                for task_id, (decision, reason) in below.items():
                    count = len(valid.get(task_id, {}))
                    outcomes[task_id] = BallotOutcome(task_id, decision, count, reason=reason)
        return [
            outcomes.get(t) or BallotOutcome(t, "unchanged", 0, reason=statuses.get(t))
            for t in task_ids
        ]

    @staticmethod
    def _label_drafts(session: Session, labelled: list[dict[str, Any]]) -> None:
        """Give each draft its label; a draft already labelled is a broken invariant."""
        if not labelled:
            return
        ids = [row["draft_id"] for row in labelled]
        already = session.scalars(
            select(DraftVersion.id).where(DraftVersion.id.in_(ids), DraftVersion.label.is_not(None))
        ).all()
        if already:
            raise RuntimeError(f"drafts {sorted(already)} were already labelled")
        session.connection().execute(
            update(DraftVersion.__table__)
            .where(DraftVersion.__table__.c.id == bindparam("draft_id"))
            .values(label=bindparam("new_label")),
            labelled,
        )

    @staticmethod
    def _newest_valid_drafts(
        session: Session, task_ids: Sequence[str]
    ) -> dict[str, dict[str, int]]:
        """task id -> provider -> id of its newest draft, where that newest draft is valid."""
        if not task_ids:
            return {}
        rows = session.execute(
            select(
                DraftVersion.task_id, DraftVersion.provider, DraftVersion.id, DraftVersion.status
            )
            .where(DraftVersion.task_id.in_(task_ids))
            .order_by(DraftVersion.task_id, DraftVersion.provider, DraftVersion.version.desc())
        )
        newest: dict[tuple[str, str], tuple[int, str]] = {}
        for task_id, provider, draft_id, status in rows:
            newest.setdefault((task_id, provider), (draft_id, status))
        valid: dict[str, dict[str, int]] = {}
        for (task_id, provider), (draft_id, status) in newest.items():
            if status == "valid":
                valid.setdefault(task_id, {})[provider] = draft_id
        return valid

    def ballot_labels(self, task_ids: Sequence[str]) -> dict[str, list[str]]:
        """task id -> labels of its drafts, for the labels check."""
        with self._session() as session:
            rows = session.execute(
                select(DraftVersion.task_id, DraftVersion.label).where(
                    DraftVersion.task_id.in_(task_ids), DraftVersion.label.is_not(None)
                )
            )
            labels: dict[str, list[str]] = {task_id: [] for task_id in task_ids}
            for task_id, label in rows:
                labels[task_id].append(label)
            return labels

    def draft_models(self) -> set[str]:
        with self._session() as session:
            return set(session.scalars(select(DraftVersion.model).distinct()))

    # --- usage -------------------------------------------------------------------------

    def usage_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Per provider and model, the calls started in [start, end) (UTC): attempts, failed
        attempts, tokens and cost (exact, a Decimal; calls without a cost count as zero)."""
        failed = case((LLMCall.error_type.is_not(None), 1), else_=0)
        with self._session() as session:
            rows = session.execute(
                select(
                    LLMCall.provider,
                    LLMCall.model,
                    func.count().label("calls"),
                    func.sum(failed).label("failures"),
                    *(
                        func.coalesce(func.sum(column), 0).label(column.key)
                        for column in (
                            LLMCall.input_tokens,
                            LLMCall.output_tokens,
                            LLMCall.cached_tokens,
                            LLMCall.reasoning_tokens,
                        )
                    ),
                    func.sum(LLMCall.cost_usd).label("cost_usd"),
                )
                .where(LLMCall.started_at >= start, LLMCall.started_at < end)
                .group_by(LLMCall.provider, LLMCall.model)
                .order_by(LLMCall.provider, LLMCall.model)
            )
            return [{**row._mapping, "cost_usd": row.cost_usd or Decimal(0)} for row in rows]

    def scorecard_rows(self) -> list[dict[str, Any]]:
        """Per provider, over every stored draft version: drafts by status, the retries they
        took (attempts past the first; an offline draft makes none), tokens, cost (exact, a
        Decimal), and the latencies of the drafts that have one."""
        statuses = [
            func.sum(case((DraftVersion.status == status, 1), else_=0)).label(status)
            for status in ("valid", "invalid", "failed")
        ]
        with self._session() as session:
            rows = session.execute(
                select(
                    DraftVersion.provider,
                    func.count().label("drafts"),
                    *statuses,
                    func.sum(
                        case((DraftVersion.attempts > 1, DraftVersion.attempts - 1), else_=0)
                    ).label("retries"),
                    func.coalesce(func.sum(DraftVersion.input_tokens), 0).label("input_tokens"),
                    func.coalesce(func.sum(DraftVersion.output_tokens), 0).label("output_tokens"),
                    func.sum(DraftVersion.cost_usd).label("cost_usd"),
                )
                .group_by(DraftVersion.provider)
                .order_by(DraftVersion.provider)
            ).all()
            latencies: dict[str, list[int]] = {row.provider: [] for row in rows}
            for provider, latency in session.execute(
                select(DraftVersion.provider, DraftVersion.latency_ms).where(
                    DraftVersion.latency_ms.is_not(None)
                )
            ):
                latencies[provider].append(latency)
        return [
            {
                **row._mapping,
                "cost_usd": row.cost_usd or Decimal(0),
                "latencies_ms": latencies[row.provider],
            }
            for row in rows
        ]

    # --- the voting-ready set ----------------------------------------------------------

    def voting_ready_rows(self) -> list[dict[str, Any]]:
        """One row per task in `voting` and label; no provider or model in it, by construction."""
        with self._session() as session:
            rows = session.execute(
                select(
                    DocumentationTask.id.label("task_id"),
                    DocumentationTask.symbol,
                    DocumentationTask.language,
                    DocumentationTask.source_path,
                    DocumentationTask.code,
                    DraftVersion.label,
                    DraftVersion.content,
                    DocumentationTask.updated_at.label("voting_since"),
                )
                .join(DraftVersion, DraftVersion.task_id == DocumentationTask.id)
                .where(DocumentationTask.status == "voting", DraftVersion.label.is_not(None))
                .order_by(DocumentationTask.seq, DraftVersion.label)
            )
            return [dict(row._mapping) for row in rows]
