"""A task's history: its source followed as it changes, ballots closed and opened again
(`reopen`, a changed source, a regenerate), and tasks retired when their symbol is gone.

A reopening moves the task back to `drafting` on ballot + 1 in one transaction with the row
that records it. The closed ballot's drafts, labels and votes are never touched: every query
of ballots, reuse, labels and votes reads the current ballot (`queries.on_current_ballot`).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from drafts_pipeline.errors import TaskValidationError
from drafts_pipeline.store import schema
from drafts_pipeline.store.models import (
    DocumentationTask,
    DraftClaim,
    DraftVersion,
    ProviderBatch,
    TaskReopening,
    utcnow,
)
from drafts_pipeline.store.outages import rides_out_outages
from drafts_pipeline.store.queries import Queries
from drafts_pipeline.store.tasks import (
    TaskInput,
    TaskSizeLimits,
    next_seq,
    oversized_tasks_error,
    source_hash,
)

REOPENED_PROMPT = ""
"""The prompt hash a provider batch records for a task reopened or changed after it was sent:
no task has it, so the batch's answer is returned at collection (its call recorded), never
stored."""

REOPENABLE = ("voting", "failed")
"""The statuses a changed source sends back to `drafting` on a new ballot."""

# The columns a changed source rewrites; the prompt goes, so the next run builds it anew.
_SOURCE_FIELDS = ("symbol", "language", "code", "context", "source_path")


@dataclass
class TaskSync:
    """What `sync_tasks` did, task ids by outcome."""

    new: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    """In `drafting`: source rewritten, prompt cleared, and on a new ballot when it had drafts
    (no reopening row: no ballot was voted on)."""
    reopened: list[str] = field(default_factory=list)
    """From `voting`, `failed` or `retired`: back to `drafting` on a new ballot."""
    retired: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.new)} new, {len(self.unchanged)} unchanged, {len(self.updated)} "
            f"updated, {len(self.reopened)} reopened, {len(self.retired)} retired"
        )


@dataclass(frozen=True)
class Reopened:
    """What `reopen_tasks` did: the tasks moved, each with its new ballot, and per task it
    left alone, why."""

    ballots: dict[str, int]
    refused: dict[str, str]


def _task_table() -> Table:
    table = DocumentationTask.__table__
    assert isinstance(table, Table)
    return table


@dataclass(frozen=True)
class TaskState:
    """A task's row as a reopening reads it (locked by the caller)."""

    id: str
    status: str
    ballot: int


def reopen_in(
    session: Session,
    task: TaskState,
    cause: str,
    *,
    reason: str | None = None,
    run_id: str | None = None,
    carry: Sequence[str] = (),
    changes: dict[str, Any] | None = None,
) -> int:
    """Close the task's ballot and open the next, inside the caller's transaction (which holds
    the task's row): back to `drafting`, no attempts, no hold, a new `seq` so the sensor sees
    it again, and a reopening row. `carry`: providers whose labelled draft of the closed ballot
    is carried into the new one. Returns the new ballot."""
    table = _task_table()
    now = utcnow()
    ballot = task.ballot + 1
    session.execute(
        update(table)
        .where(table.c.id == task.id, table.c.status == task.status, table.c.ballot == task.ballot)
        .values(
            status="drafting", ballot=ballot, attempts=0, last_error=None, held_until=None,
            hold_reason=None, seq=next_seq(table, session.get_bind().dialect.name),
            updated_at=now, **(changes or {}),
        )
    )  # fmt: skip
    session.add(
        TaskReopening(
            task_id=task.id, ballot=task.ballot, from_status=task.status, cause=cause,
            reason=reason, run_id=run_id, created_at=now,
        )
    )  # fmt: skip
    drop_claims(session, task.id)
    carry_forward(session, task.id, carry, task.ballot, ballot, run_id)
    return ballot


def drop_claims(session: Session, task_id: str) -> None:
    """End every claim on the task, inside the caller's transaction (a reopening, a changed
    source): a run still calling for the old ballot or prompt then finds its claim gone and
    stores nothing. A provider batch's claim stays until the batch is collected, so that its
    paid answer is still recorded, but the batch's prompt for the task becomes
    `REOPENED_PROMPT`, so collection returns that answer instead of storing it."""
    batches = session.scalars(
        select(ProviderBatch)
        .where(
            ProviderBatch.status != "collected",
            ProviderBatch.holder.in_(
                select(DraftClaim.run_id).where(DraftClaim.task_id == task_id)
            ),
        )
        .order_by(ProviderBatch.id)
        .with_for_update()
    ).all()
    for batch in batches:
        batch.prompt_hashes = [
            REOPENED_PROMPT if held == task_id else prompt_hash
            for held, prompt_hash in zip(batch.task_ids, batch.prompt_hashes, strict=True)
        ]
    session.execute(
        delete(DraftClaim).where(
            DraftClaim.task_id == task_id,
            DraftClaim.run_id.not_in([batch.holder for batch in batches]),
        )
    )


def carry_forward(
    session: Session,
    task_id: str,
    providers: Sequence[str],
    closed: int,
    ballot: int,
    run_id: str | None,
) -> list[str]:
    """Copy each provider's labelled draft of ballot `closed` into `ballot` as its next
    version, unlabelled, pointing at the draft that was answered (`carried_from`), with no
    call, tokens, cost or latency of its own. Returns the providers carried."""
    if not providers:
        return []
    drafts = session.scalars(
        select(DraftVersion).where(
            DraftVersion.task_id == task_id,
            DraftVersion.ballot == closed,
            DraftVersion.provider.in_(sorted(set(providers))),
            DraftVersion.label.is_not(None),
        )
    ).all()
    carried = []
    for draft in sorted(drafts, key=lambda d: d.provider):
        newest = session.scalar(
            select(func.max(DraftVersion.version)).where(
                DraftVersion.task_id == task_id, DraftVersion.provider == draft.provider
            )
        )
        session.add(
            DraftVersion(
                task_id=task_id, provider=draft.provider, model=draft.model,
                version=(newest or 0) + 1, ballot=ballot, content=draft.content,
                prompt_used=draft.prompt_used, prompt_hash=draft.prompt_hash,
                template_version=draft.template_version,
                output_schema_version=draft.output_schema_version,
                settings_hash=draft.settings_hash, status=draft.status,
                validation=draft.validation, finish_reason=draft.finish_reason,
                attempts=0, attempted_models=draft.attempted_models, run_id=run_id,
                carried_from=draft.carried_from or draft.id, created_at=utcnow(),
            )
        )  # fmt: skip
        carried.append(draft.provider)
    session.flush()
    return carried


@rides_out_outages
class HistoryQueries(Queries):
    def sync_tasks(
        self,
        tasks: Sequence[TaskInput],
        retire: Sequence[str] = (),
        limits: TaskSizeLimits | None = None,
        reason: str | None = None,
        root: str | None = None,
    ) -> TaskSync:
        """Bring the store in line with `tasks` as discovery or import found them, and retire
        the ids `retire` (their source no longer defines the symbol), in one transaction.

        A new id is inserted. A stored one whose source (code and context) is unchanged is
        left as it is. One whose source changed gets it: in `drafting` its prompt is cleared
        for the next run to rebuild, and drafts of the old source are left on the ballot they
        were on while it moves to the next; in `voting` or `failed` it is reopened (cause
        `source_changed`) on a new ballot, the old one kept as history. A `retired` task
        found again is reopened too. Nothing is written when a task is over the size limits.
        `root`: the folder discovery walked, recorded on every task of `tasks` as the one
        whose walk may retire it (`task_sources`); None (an import) records none.
        """
        refusal = oversized_tasks_error(
            tasks, TaskSizeLimits.from_environment() if limits is None else limits
        )
        if refusal is not None:
            raise TaskValidationError(refusal)
        result = TaskSync()
        table = _task_table()
        by_id = {task.id: task for task in tasks}
        with self._session() as session, session.begin():
            ids = sorted({*by_id, *retire})
            stored = {
                row.id: row
                for row in session.execute(
                    select(
                        table.c.id, table.c.status, table.c.ballot, table.c.code,
                        table.c.context, table.c.source_hash, table.c.source_root,
                    )
                    .where(table.c.id.in_(ids))
                    .order_by(table.c.id)
                    .with_for_update()
                )
            }  # fmt: skip
            fresh = [task for task in tasks if task.id not in stored]
            self._insert(session, fresh, root)
            result.new = [task.id for task in fresh]
            dialect = session.get_bind().dialect.name
            for task in tasks:
                row = stored.get(task.id)
                if row is None:
                    continue
                new_hash = source_hash(task.code, task.context)
                old_hash = row.source_hash or source_hash(row.code, row.context)
                changes: dict[str, Any] = {
                    **{name: getattr(task, name) for name in _SOURCE_FIELDS},
                    "source_hash": new_hash, "prompt": None, "prompt_hash": None,
                    "template_version": None,
                    **({} if root is None else {"source_root": root}),
                }  # fmt: skip
                if row.status == "retired" or (new_hash != old_hash and row.status in REOPENABLE):
                    reopen_in(
                        session,
                        TaskState(row.id, row.status, row.ballot),
                        "source_changed",
                        reason=reason,
                        changes=changes,
                    )
                    result.reopened.append(task.id)
                elif new_hash == old_hash:
                    found_here = {} if root in (None, row.source_root) else {"source_root": root}
                    if row.source_hash is None or found_here:
                        session.execute(
                            update(table)
                            .where(table.c.id == task.id)
                            .values(source_hash=new_hash, **found_here)
                        )
                    result.unchanged.append(task.id)
                else:
                    # Drafts of the old source on the open ballot would still count towards
                    # its quorum (a run of other providers): they go to a ballot of their own.
                    drafted = session.scalar(
                        select(DraftVersion.id)
                        .where(DraftVersion.task_id == task.id, DraftVersion.ballot == row.ballot)
                        .limit(1)
                    )
                    session.execute(
                        update(table)
                        .where(
                            table.c.id == task.id,
                            table.c.status == "drafting",
                            table.c.ballot == row.ballot,
                        )
                        .values(
                            seq=next_seq(table, dialect), updated_at=utcnow(),
                            ballot=row.ballot + (drafted is not None), **changes,
                        )
                    )  # fmt: skip
                    drop_claims(session, task.id)
                    result.updated.append(task.id)
            for task_id in retire:
                row = stored.get(task_id)
                if task_id in by_id or row is None or row.status == "retired":
                    continue
                session.execute(
                    update(table)
                    .where(table.c.id == task_id)
                    .values(
                        status="retired", held_until=None, hold_reason=None,
                        last_error=reason or "its source no longer defines the symbol",
                        updated_at=utcnow(),
                    )
                )  # fmt: skip
                result.retired.append(task_id)
        return result

    def _insert(self, session: Session, tasks: Sequence[TaskInput], root: str | None) -> None:
        if not tasks:
            return
        now = utcnow()
        session.execute(
            schema.dialect_insert(session.get_bind().dialect.name)(DocumentationTask),
            [
                {
                    "id": task.id, "symbol": task.symbol, "language": task.language,
                    "code": task.code, "context": task.context, "source_path": task.source_path,
                    "template": task.template, "priority": task.priority, "status": "drafting",
                    "attempts": 0, "created_at": now, "updated_at": now,
                    "source_hash": source_hash(task.code, task.context), "source_root": root,
                }
                for task in tasks
            ],
        )  # fmt: skip

    def reopen_tasks(
        self,
        task_ids: Sequence[str],
        cause: str,
        *,
        reason: str | None = None,
        run_id: str | None = None,
        carry: Sequence[str] = (),
    ) -> Reopened:
        """Move each task of `task_ids` in `voting` back to `drafting` on a new ballot (one
        transaction); `carry`: providers whose labelled drafts go into the new ballot as they
        are. A task in another status, or none, is left alone and said why."""
        ballots: dict[str, int] = {}
        refused: dict[str, str] = {}
        with self._session() as session, session.begin():
            table = _task_table()
            rows = {
                row.id: row
                for row in session.execute(
                    select(table.c.id, table.c.status, table.c.ballot)
                    .where(table.c.id.in_(sorted(set(task_ids))))
                    .order_by(table.c.id)
                    .with_for_update()
                )
            }
            for task_id in dict.fromkeys(task_ids):
                row = rows.get(task_id)
                if row is None:
                    refused[task_id] = "no such task"
                elif row.status != "voting":
                    refused[task_id] = f"in {row.status}, not voting: nothing to reopen"
                else:
                    ballots[task_id] = reopen_in(
                        session,
                        TaskState(row.id, row.status, row.ballot),
                        cause,
                        reason=reason,
                        run_id=run_id,
                        carry=carry,
                    )
        return Reopened(ballots, refused)

    def set_templates(self, task_ids: Sequence[str], template: str) -> None:
        """Give tasks in `drafting` another prompt template (a regenerate's), so the prompt
        their next runs build is that template's."""
        if not task_ids:
            return
        with self._session() as session, session.begin():
            session.execute(
                update(DocumentationTask)
                .where(
                    DocumentationTask.id.in_(sorted(set(task_ids))),
                    DocumentationTask.status == "drafting",
                )
                .values(template=template, updated_at=utcnow())
            )

    def reopenings(self, task_id: str) -> list[TaskReopening]:
        """The task's reopenings, oldest first."""
        with self._reading() as session:
            return list(
                session.scalars(
                    select(TaskReopening)
                    .where(TaskReopening.task_id == task_id)
                    .order_by(TaskReopening.id)
                )
            )

    def task_sources(self, root: str) -> list[tuple[str, str, str, str, str]]:
        """`(id, status, source_path, symbol, language)` of every task discovery last found
        under `root` that is not retired: what it checks for symbols gone from their files.
        Tasks of another folder, and imported ones, are not its to retire."""
        with self._reading() as session:
            rows = session.execute(
                select(
                    DocumentationTask.id,
                    DocumentationTask.status,
                    DocumentationTask.source_path,
                    DocumentationTask.symbol,
                    DocumentationTask.language,
                ).where(
                    DocumentationTask.source_path.is_not(None),
                    DocumentationTask.source_root == root,
                    DocumentationTask.status != "retired",
                )
            )
            return [(r.id, r.status, str(r.source_path), r.symbol, r.language) for r in rows]
