"""Documentation tasks: arrival, prompts, failure, and the queues the sensor and schedule read."""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta

from sqlalchemy import and_, bindparam, or_, select, update

from drafts_pipeline.prompts.templates import BuiltPrompt
from drafts_pipeline.store import schema
from drafts_pipeline.store.models import DocumentationTask, DraftClaim, utcnow
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


@rides_out_outages
class TaskQueries(Queries):
    def add_tasks(self, tasks: Sequence[TaskInput]) -> int:
        """Insert tasks in one transaction; ids already stored are left as they are.

        Returns how many were new.
        """
        if not tasks:
            return 0
        now = utcnow()
        rows = [
            {**asdict(task), "status": "drafting", "attempts": 0, "created_at": now,
             "updated_at": now}
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
            {"task_id": task_id, "new_prompt": prompt.text, "new_hash": prompt.prompt_hash,
             "new_version": prompt.template_version}
            for task_id, prompt in prompts
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

    def retry_candidates(self, limit: int, stalled_after_s: float) -> list[tuple[str, int]]:
        """`(id, attempts)` of the first `limit` tasks, in arrival order, that need another
        run: left in `drafting` below quorum by a ballot, or stalled (in `drafting`, unchanged
        for `stalled_after_s`, and no live claim on it: the run that had it died, or a ballot
        left it to a run that then died)."""
        with self._session() as session:
            now = store_now(session)
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
                        DocumentationTask.attempts > 0,
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

    def task_ids(self, status: str) -> list[str]:
        with self._session() as session:
            return list(
                session.scalars(
                    select(DocumentationTask.id)
                    .where(DocumentationTask.status == status)
                    .order_by(DocumentationTask.seq)
                )
            )
