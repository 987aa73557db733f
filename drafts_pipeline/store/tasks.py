"""Documentation tasks: arrival, prompts, failure, and the queues the sensor and schedule read."""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, or_, select, update

from drafts_pipeline.errors import RetryRefused, TaskValidationError
from drafts_pipeline.prompts.templates import BuiltPrompt
from drafts_pipeline.settings import Settings
from drafts_pipeline.store import schema
from drafts_pipeline.store.models import DocumentationTask, DraftClaim, as_utc, utcnow
from drafts_pipeline.store.outages import rides_out_outages
from drafts_pipeline.store.queries import Queries, store_now


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
class TaskSizeLimits:
    """The most characters of code and of context a task may hold. A bigger task would be sent
    to every provider, and time out there on every attempt."""

    code: int = Settings.max_code_chars
    context: int = Settings.max_context_chars

    @classmethod
    def from_environment(cls) -> "TaskSizeLimits":
        """`DRAFTS_MAX_CODE_CHARS` and `DRAFTS_MAX_CONTEXT_CHARS`, or a `ConfigurationError`
        naming a bad one."""
        settings = Settings.from_environment().require("max_code_chars", "max_context_chars")
        return cls(code=settings.max_code_chars, context=settings.max_context_chars)

    def problems(self, code: str, context: str) -> list[str]:
        """Each field over its limit, with its size, the limit and the variable that sets it."""
        return [
            f"field {name!r} is {len(value)} characters long; at most {limit} ({variable})"
            for name, value, limit, variable in (
                ("code", code, self.code, "DRAFTS_MAX_CODE_CHARS"),
                ("context", context, self.context, "DRAFTS_MAX_CONTEXT_CHARS"),
            )
            if len(value) > limit
        ]


def source_hash(code: str, context: str) -> str:
    """What tells a task's source changed: a hash of its code and context as given (discovery
    gives a documented Python symbol's code without its docstring, so a docstring `apply`
    wrote changes nothing here)."""
    return hashlib.sha256(json.dumps([code, context]).encode()).hexdigest()


# Oversized tasks listed in the store's refusal at most; the rest are counted.
LISTED_OVERSIZED = 10


def oversized_tasks_error(tasks: Sequence[TaskInput], limits: TaskSizeLimits) -> str | None:
    """Why the store refuses `tasks`, task by task, or None when each is within the limits."""
    found = [
        f"task {task.id!r}: {'; '.join(problems)}"
        for task in tasks
        if (problems := limits.problems(task.code, task.context))
    ]
    if not found:
        return None
    more = len(found) - LISTED_OVERSIZED
    listed = found[:LISTED_OVERSIZED] + ([f"and {more} more"] if more > 0 else [])
    return f"{len(found)} task(s) over the size limits, nothing stored: {', '.join(listed)}"


@rides_out_outages
class TaskQueries(Queries):
    def add_tasks(self, tasks: Sequence[TaskInput], limits: TaskSizeLimits | None = None) -> int:
        """Insert tasks in one transaction; ids already stored are left as they are.

        Every task passes the size limits (`limits`, else the environment's) or none is stored:
        discovery and import report an oversized task where it is found, and this check keeps
        a task given through the Python API from reaching the providers.

        Returns how many were new.
        """
        if not tasks:
            return 0
        refusal = oversized_tasks_error(
            tasks, TaskSizeLimits.from_environment() if limits is None else limits
        )
        if refusal is not None:
            raise TaskValidationError(refusal)
        now = utcnow()
        rows = [
            {**asdict(task), "status": "drafting", "attempts": 0, "created_at": now,
             "updated_at": now, "source_hash": source_hash(task.code, task.context)}
            for task in tasks
        ]  # fmt: skip
        statement = (
            schema.dialect_insert(self.engine.dialect.name)(DocumentationTask)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(DocumentationTask.id)
        )
        with self._session() as session, session.begin():
            return len(list(session.scalars(statement, rows)))

    def tasks_by_id(self, ids: Sequence[str]) -> dict[str, DocumentationTask]:
        with self._reading() as session:
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
        # In id order, as every writer of task rows locks them, so as not to deadlock.
        rows = [
            {"task_id": task_id, "new_prompt": prompt.text, "new_hash": prompt.prompt_hash,
             "new_version": prompt.template_version}
            for task_id, prompt in sorted(prompts, key=lambda pair: pair[0])
        ]  # fmt: skip
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
            return result.rowcount == 1  # type: ignore[attr-defined]

    def requeue_failed(self, ids: Sequence[str] | None) -> list[str]:
        """Move the failed tasks `ids` (None: every failed task) back to `drafting` with no
        attempts counted, and return them. Their drafts, ballots and calls stay as they are.

        All or nothing: an id with no task, or a task that is not `failed`, refuses the whole
        request (`RetryRefused`, naming each) and changes nothing. Each task re-queued gets a
        new `seq`, past every task's (in its old order), so the sensor's cursor reaches it
        again, as it reaches a new task.
        """
        with self._session() as session, session.begin():
            query = select(DocumentationTask.id, DocumentationTask.status, DocumentationTask.seq)
            if ids is None:
                query = query.where(DocumentationTask.status == "failed")
            else:
                query = query.where(DocumentationTask.id.in_(ids))
            # Locked in id order, as every other writer of task rows locks them (a ballot, a
            # claim): another order could deadlock with them on PostgreSQL.
            locked = session.execute(query.order_by(DocumentationTask.id).with_for_update())
            rows = sorted(locked.all(), key=lambda row: row.seq)
            found = {row.id: row.status for row in rows}
            problems = [
                f"no task {task_id!r}"
                if task_id not in found
                else f"task {task_id!r} is in {found[task_id]}, not failed"
                for task_id in dict.fromkeys(ids or ())
                if found.get(task_id) != "failed"
            ]
            if problems:
                raise RetryRefused(problems)
            if not rows:
                return []
            table = DocumentationTask.__table__
            assert isinstance(table, Table)
            now = utcnow()
            # One row at a time, in the old order: each takes the next number.
            session.connection().execute(
                update(table)
                .where(table.c.id == bindparam("task_id"), table.c.status == "failed")
                .values(
                    seq=next_seq(table, self.engine.dialect.name),
                    status="drafting",
                    attempts=0,
                    updated_at=now,
                ),
                [{"task_id": row.id} for row in rows],
            )
            return [row.id for row in rows]

    def drafting_after(self, seq: int, limit: int) -> list[tuple[int, str]]:
        """`(seq, id)` of the next `limit` drafting tasks past a cursor, in the order they
        arrived or were re-queued."""
        with self._reading() as session:
            rows = session.execute(
                select(DocumentationTask.seq, DocumentationTask.id)
                .where(DocumentationTask.status == "drafting", DocumentationTask.seq > seq)
                .order_by(DocumentationTask.seq)
                .limit(limit)
            )
            return [(row.seq, row.id) for row in rows]

    def retry_candidates(
        self, limit: int, stalled_after_s: float, now: datetime | None = None
    ) -> list[tuple[str, int]]:
        """`(id, attempts)` of the first `limit` tasks, in arrival order, that need another
        run: left in `drafting` below quorum by a ballot, held back by a daily budget until a
        time now past, or stalled (in `drafting`, unchanged for `stalled_after_s`, and no live
        claim on it: the run that had it died, or a ballot left it to a run that then died).
        A task held until a time still to come is not one of them."""
        with self._reading() as session:
            now = now or store_now(session)
            live_claim = (
                select(DraftClaim.task_id)
                .where(
                    DraftClaim.task_id == DocumentationTask.id,
                    DraftClaim.lease_expires_at >= now,
                )
                .exists()
            )
            rows = session.execute(
                select(DocumentationTask.id, DocumentationTask.attempts)
                .where(
                    DocumentationTask.status == "drafting",
                    or_(
                        DocumentationTask.held_until.is_(None),
                        DocumentationTask.held_until <= now,
                    ),
                    or_(
                        DocumentationTask.attempts > 0,
                        DocumentationTask.held_until.is_not(None),
                        and_(
                            DocumentationTask.updated_at < now - timedelta(seconds=stalled_after_s),
                            ~live_claim,
                        ),
                    ),
                )
                .order_by(DocumentationTask.seq)
                .limit(limit)
            )
            return [(row.id, row.attempts) for row in rows]

    def hold_tasks(self, task_ids: Sequence[str], until: datetime, reason: str) -> None:
        """Mark tasks still in `drafting` held back until `until` (a daily budget reached): no
        ballot counts an attempt for them, and no schedule or `run` drafts them, before then."""
        if not task_ids:
            return
        with self._session() as session, session.begin():
            session.execute(
                update(DocumentationTask)
                .where(
                    DocumentationTask.id.in_(sorted(set(task_ids))),
                    DocumentationTask.status == "drafting",
                )
                .values(held_until=until, hold_reason=reason, updated_at=utcnow())
            )

    def clear_holds(self, task_ids: Sequence[str]) -> None:
        """Lift the holds of tasks a run is about to draft; a provider still at its cap holds
        them again."""
        if not task_ids:
            return
        with self._session() as session, session.begin():
            session.execute(
                update(DocumentationTask)
                .where(
                    DocumentationTask.id.in_(sorted(set(task_ids))),
                    DocumentationTask.held_until.is_not(None),
                )
                .values(held_until=None, hold_reason=None)
            )

    def held_tasks(self, now: datetime | None = None) -> dict[str, tuple[datetime, str]]:
        """task id -> (held until, why) of each task in `drafting` held beyond `now`."""
        with self._reading() as session:
            moment = now or store_now(session)
            rows = session.execute(
                select(
                    DocumentationTask.id,
                    DocumentationTask.held_until,
                    DocumentationTask.hold_reason,
                )
                .where(
                    DocumentationTask.status == "drafting",
                    DocumentationTask.held_until > moment,
                )
                .order_by(DocumentationTask.seq)
            )
            return {
                task_id: (as_utc(until), reason or "")
                for task_id, until, reason in rows
                if until is not None
            }

    def tasks_with_status(self, status: str) -> list[DocumentationTask]:
        """Every task in `status`, in arrival order."""
        with self._reading() as session:
            return list(
                session.scalars(
                    select(DocumentationTask)
                    .where(DocumentationTask.status == status)
                    .order_by(DocumentationTask.seq)
                )
            )

    def drafting_queue(self, limit: int | None = None) -> list[str]:
        """Ids of the tasks in `drafting` in the order to draft them: highest `priority` first,
        then in the order they arrived or were re-queued (`seq`); the first `limit` of them.
        Tasks a daily budget holds back beyond now are not in it. (The sensor's cursor follows
        `seq` alone: `drafting_after`.)"""
        with self._reading() as session:
            now = store_now(session)
            return list(
                session.scalars(
                    select(DocumentationTask.id)
                    .where(
                        DocumentationTask.status == "drafting",
                        or_(
                            DocumentationTask.held_until.is_(None),
                            DocumentationTask.held_until <= now,
                        ),
                    )
                    .order_by(DocumentationTask.priority.desc(), DocumentationTask.seq)
                    .limit(limit)
                )
            )

    def task_ids(self, status: str) -> list[str]:
        with self._reading() as session:
            return list(
                session.scalars(
                    select(DocumentationTask.id)
                    .where(DocumentationTask.status == status)
                    .order_by(DocumentationTask.seq)
                )
            )


def next_seq(table: Table, dialect_name: str) -> ColumnElement[int]:
    """The `seq` a new task would get: the next of the column's sequence on PostgreSQL, one
    past the largest on SQLite (a new row id follows the largest; the update holds the write
    lock)."""
    if dialect_name == "postgresql":
        return func.nextval(func.pg_get_serial_sequence(table.name, "seq"))
    latest = table.alias("latest")
    return select(func.max(latest.c.seq) + 1).scalar_subquery()
