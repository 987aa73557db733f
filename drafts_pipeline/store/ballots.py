"""The ballot's transaction: tasks locked, their valid drafts read, moves and labels written.

The decisions (quorum, label permutation) are `drafting.ballot`'s; this module only reads and
writes, in one transaction per batch, with the invariants the database enforces: the move
`drafting -> voting` is a conditional update whose row count picks the one winner, and a draft
that already has a label is never labelled again.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from drafts_pipeline.store.drafts import live_claim_holders
from drafts_pipeline.store.models import Base, DocumentationTask, DraftVersion, as_utc, utcnow
from drafts_pipeline.store.outages import rides_out_outages
from drafts_pipeline.store.queries import Queries, on_current_ballot


@dataclass(frozen=True)
class UnusableDraft:
    """A provider's newest draft of a task where it is not valid: what a ballot below quorum
    says of it."""

    status: str
    """`invalid` or `failed`."""
    attempts: int
    validation: dict[str, Any]


@dataclass(frozen=True)
class BallotCandidate:
    """A task in `drafting` as its ballot sees it."""

    task_id: str
    attempts: int
    valid_drafts: dict[str, int]
    """provider -> id of its newest draft, where that newest draft is valid."""
    drafting_in: str | None
    """Another run that holds a live claim on the task: its drafts are not all in yet."""
    unusable_drafts: dict[str, UnusableDraft]
    """provider -> its newest draft, where that newest draft is not valid."""
    held: str | None = None
    """Why a run left the task undrafted on purpose (a daily budget reached), until when; None
    when it is not held. A run that drafts it again lifts the hold first."""


class BallotBox:
    """One batch's ballots inside their transaction (see `BallotQueries.ballot_box`)."""

    def __init__(
        self, session: Session, statuses: dict[str, str], candidates: dict[str, BallotCandidate]
    ) -> None:
        self._session = session
        self.statuses = statuses
        self.candidates = candidates

    def move_to_voting(self, labels: dict[str, dict[int, str]]) -> set[str]:
        """Move each task still in `drafting` to `voting` with its drafts' labels (task id ->
        draft id -> label); returns the tasks this ballot moved."""
        if not labels:
            return set()
        moved = set(
            self._session.scalars(
                update(DocumentationTask)
                .where(
                    DocumentationTask.id.in_(list(labels)),
                    DocumentationTask.status == "drafting",
                )
                .values(status="voting", last_error=None, updated_at=utcnow())
                .returning(DocumentationTask.id)
            )
        )
        rows = [
            {"draft_id": draft_id, "new_label": label}
            for task_id in moved
            for draft_id, label in labels[task_id].items()
        ]
        if rows:
            already = self._session.scalars(
                select(DraftVersion.id).where(
                    DraftVersion.id.in_([row["draft_id"] for row in rows]),
                    DraftVersion.label.is_not(None),
                )
            ).all()
            if already:
                raise RuntimeError(f"drafts {sorted(already)} were already labelled")
            table = _table(DraftVersion)
            self._session.connection().execute(
                update(table)
                .where(table.c.id == bindparam("draft_id"))
                .values(label=bindparam("new_label")),
                rows,
            )
        return moved

    def keep_below_quorum(self, decisions: dict[str, tuple[str, str]]) -> None:
        """Count one more attempt for each task (task id -> (new status, reason)): `drafting`
        to try again, `failed` when attempts ran out."""
        if not decisions:
            return
        table = _table(DocumentationTask)
        self._session.connection().execute(
            update(table)
            .where(table.c.id == bindparam("task_id"), table.c.status == "drafting")
            .values(
                attempts=table.c.attempts + 1,
                last_error=bindparam("reason"),
                status=bindparam("decision"),
                updated_at=utcnow(),
            ),
            [
                {"task_id": task_id, "decision": decision, "reason": reason}
                for task_id, (decision, reason) in decisions.items()
            ],
        )


@rides_out_outages
class BallotQueries(Queries):
    @contextmanager
    def ballot_box(self, task_ids: Sequence[str], run_id: str | None) -> Iterator[BallotBox]:
        """The tasks of a batch locked (in id order, so two batches cannot deadlock; SQLite's
        BEGIN IMMEDIATE lets one writer in at a time) for one transaction of ballots."""
        with self._session() as session, session.begin():
            rows = session.execute(
                select(
                    DocumentationTask.id,
                    DocumentationTask.status,
                    DocumentationTask.attempts,
                    DocumentationTask.held_until,
                    DocumentationTask.hold_reason,
                )
                .where(DocumentationTask.id.in_(task_ids))
                .order_by(DocumentationTask.id)
                .with_for_update()
            ).all()
            statuses = {row.id: row.status for row in rows}
            drafting = [row.id for row in rows if row.status == "drafting"]
            # Claims first: a draft whose claim is gone is stored by then (its store waits for
            # these locks, or committed before them).
            elsewhere = live_claim_holders(session, drafting, other_than=run_id)
            valid, unusable = _newest_drafts(session, drafting)
            candidates = {
                row.id: BallotCandidate(
                    row.id,
                    row.attempts,
                    valid.get(row.id, {}),
                    elsewhere.get(row.id),
                    unusable.get(row.id, {}),
                    _hold(row.held_until, row.hold_reason),
                )
                for row in rows
                if row.status == "drafting"
            }
            yield BallotBox(session, statuses, candidates)

    def ballot_labels(self, task_ids: Sequence[str]) -> dict[str, list[str]]:
        """task id -> labels of its current ballot's drafts, for the labels check."""
        with self._reading() as session:
            rows = session.execute(
                select(DraftVersion.task_id, DraftVersion.label).where(
                    DraftVersion.task_id.in_(task_ids),
                    DraftVersion.label.is_not(None),
                    on_current_ballot(),
                )
            )
            labels: dict[str, list[str]] = {task_id: [] for task_id in task_ids}
            for task_id, label in rows:
                if label is not None:
                    labels[task_id].append(label)
            return labels

    def newest_unusable_drafts(
        self, provider: str, task_ids: Sequence[str] | None = None
    ) -> tuple[int, dict[str, UnusableDraft]]:
        """For the drafts checks: how many tasks (of `task_ids`, or every task) have a draft by
        `provider`, and each one's newest draft where that draft is not valid."""
        newest = select(DraftVersion.task_id, func.max(DraftVersion.version).label("version"))
        newest = newest.where(DraftVersion.provider == provider)
        if task_ids is not None:
            newest = newest.where(DraftVersion.task_id.in_(task_ids))
        latest = newest.group_by(DraftVersion.task_id).subquery()
        with self._reading() as session:
            checked = session.scalar(select(func.count()).select_from(latest)) or 0
            rows = session.execute(
                select(
                    DraftVersion.task_id,
                    DraftVersion.status,
                    DraftVersion.attempts,
                    DraftVersion.validation,
                )
                .join(
                    latest,
                    (DraftVersion.task_id == latest.c.task_id)
                    & (DraftVersion.version == latest.c.version)
                    & (DraftVersion.provider == provider),
                )
                .where(DraftVersion.status != "valid")
                .order_by(DraftVersion.task_id)
            )
            return checked, {
                task_id: UnusableDraft(status, attempts, validation or {})
                for task_id, status, attempts, validation in rows
            }

    def voting_labels(self, task_ids: Sequence[str] | None = None) -> dict[str, list[str]]:
        """task id -> labels of its current ballot's drafts, for each task in `voting` (of
        `task_ids`, or every one): what the labels check reads."""
        query = (
            select(DocumentationTask.id, DraftVersion.label)
            .outerjoin(
                DraftVersion,
                (DraftVersion.task_id == DocumentationTask.id)
                & (DraftVersion.ballot == DocumentationTask.ballot)
                & DraftVersion.label.is_not(None),
            )
            .where(DocumentationTask.status == "voting")
        )
        if task_ids is not None:
            query = query.where(DocumentationTask.id.in_(task_ids))
        labels: dict[str, list[str]] = {}
        with self._reading() as session:
            for task_id, label in session.execute(query):
                found = labels.setdefault(task_id, [])
                if label is not None:
                    found.append(label)
        return labels


def _hold(until: datetime | None, reason: str | None) -> str | None:
    if until is None:
        return None
    return f"held until {as_utc(until):%Y-%m-%d %H:%M} UTC: {reason or 'no reason given'}"


def _table(model: type[Base]) -> Table:
    """The model's table, for executemany updates keyed by a bound parameter."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _newest_drafts(
    session: Session, task_ids: Sequence[str]
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, UnusableDraft]]]:
    """Each provider's newest draft of each task's current ballot: task id -> provider ->
    draft id where it is valid, and task id -> provider -> the draft where it is not."""
    if not task_ids:
        return {}, {}
    rows = session.execute(
        select(
            DraftVersion.task_id,
            DraftVersion.provider,
            DraftVersion.id,
            DraftVersion.status,
            DraftVersion.attempts,
            DraftVersion.validation,
        )
        .where(DraftVersion.task_id.in_(task_ids), on_current_ballot())
        .order_by(DraftVersion.task_id, DraftVersion.provider, DraftVersion.version.desc())
    )
    valid: dict[str, dict[str, int]] = {}
    unusable: dict[str, dict[str, UnusableDraft]] = {}
    seen: set[tuple[str, str]] = set()
    for task_id, provider, draft_id, status, attempts, validation in rows:
        if (task_id, provider) in seen:
            continue
        seen.add((task_id, provider))
        if status == "valid":
            valid.setdefault(task_id, {})[provider] = draft_id
        else:
            draft = UnusableDraft(status, attempts, validation or {})
            unusable.setdefault(task_id, {})[provider] = draft
    return valid, unusable
