"""Votes: recorded all or nothing against the ballots they name, and read back with the
provider behind each label, which is resolved here and nowhere else.

A voter sees a task's drafts under blind labels and answers one of: the best label (`B`), a
full ranking best first (`B>A>C`), `tie` (they are as good as each other) or `all_bad` (none
is usable). `VoteInput` is a vote as the voter gives it, labels only; `VoteOutcome` is the same
vote after the store has put the provider behind each label. Both are plain values, so the
leaderboard's statistics run without a database.
"""

import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import combinations

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from drafts_pipeline.errors import VotesRejected
from drafts_pipeline.store.models import (
    DocumentationTask,
    DraftVersion,
    Vote,
    column_length,
    utcnow,
)
from drafts_pipeline.store.outages import rides_out_outages
from drafts_pipeline.store.queries import Queries

TIE = "tie"
ALL_BAD = "all_bad"
_LABEL = re.compile(r"[A-Z]")


@dataclass(frozen=True)
class VoteInput:
    """One voter's vote on one task, in the words the voter saw."""

    vote_id: str
    task_id: str
    voter: str
    choice: str
    """A label (`B`), a full ranking best first (`B>A>C`), `tie` or `all_bad`."""
    display_order: tuple[str, ...] | None = None
    """The labels in the order they were shown, when known (the voting page records it)."""
    created_at: datetime | None = None


def parse_choice(choice: str) -> tuple[str, tuple[str, ...]]:
    """(`winner` | `ranking` | `tie` | `all_bad`, labels best first) of a choice as written;
    `ValueError` saying what is wrong otherwise. Case and spaces around labels are forgiven."""
    text = choice.strip()
    if text.lower() in (TIE, ALL_BAD, "all bad"):
        return (TIE if text.lower() == TIE else ALL_BAD), ()
    labels = tuple(part.strip().upper() for part in text.split(">"))
    bad = [label for label in labels if not _LABEL.fullmatch(label)]
    if not text or bad:
        raise ValueError(
            f"choice {choice!r} is not a label (A), a ranking (B>A>C), 'tie' or 'all_bad'"
        )
    if len(set(labels)) != len(labels):
        raise ValueError(f"ranking {choice!r} names a label twice")
    return ("winner" if len(labels) == 1 else "ranking"), labels


def choice_problem(choice: str, ballot_labels: tuple[str, ...]) -> str | None:
    """Why `choice` cannot be a vote on a ballot with `ballot_labels`; None when it can."""
    try:
        kind, labels = parse_choice(choice)
    except ValueError as error:
        return str(error)
    unknown = [label for label in labels if label not in ballot_labels]
    if unknown:
        return (
            f"label(s) {', '.join(unknown)} not on the ballot "
            f"(it has {', '.join(ballot_labels) or 'no labels'})"
        )
    if kind == "ranking" and len(labels) != len(ballot_labels):
        return (
            f"ranking {'>'.join(labels)} leaves out "
            f"{', '.join(sorted(set(ballot_labels) - set(labels)))}: rank every label"
        )
    return None


def display_order_problem(order: tuple[str, ...], ballot_labels: tuple[str, ...]) -> str | None:
    """Why `order` is not the ballot's labels each once; None when it is."""
    if sorted(order) != sorted(ballot_labels):
        return (
            f"display order {','.join(order)} is not the ballot's labels "
            f"{','.join(ballot_labels)} each once"
        )
    return None


@dataclass(frozen=True)
class VoteOutcome:
    """A stored vote with each label replaced by the provider behind it (store side only)."""

    vote_id: str
    task_id: str
    voter: str
    language: str
    template: str
    kind: str
    """`winner`, `ranking`, `tie` or `all_bad`."""
    providers: tuple[str, ...]
    """The providers on the task's ballot, in label order."""
    order: tuple[str, ...]
    """Providers best first: the winner alone, or the whole ranking; empty for tie and all_bad."""
    display_order: tuple[str, ...] | None
    """Providers in the order the voter saw them, when known."""
    created_at: datetime

    def pairs(self) -> list[tuple[str, str, float]]:
        """The pairwise outcomes the vote implies, as (a, b, score of a): 1.0 a beat b, 0.5 a
        tie. A winner beats every other provider on the ballot; a ranking orders every pair; a
        tie ties every pair; `all_bad` says nothing of which is better, so no pair."""
        if self.kind == ALL_BAD:
            return []
        if self.kind == TIE:
            return [(a, b, 0.5) for a, b in combinations(self.providers, 2)]
        if self.kind == "winner":
            (best,) = self.order
            return [(best, other, 1.0) for other in self.providers if other != best]
        return [(a, b, 1.0) for a, b in combinations(self.order, 2)]


@dataclass(frozen=True)
class VotesRecorded:
    """What `record_votes` did."""

    added: int
    replaced: int
    """Earlier votes of the same voter on the same task that the new ones replaced."""
    unchanged: int
    """Votes whose id was already recorded with the same vote (a re-import)."""


@dataclass(frozen=True)
class BallotDraft:
    """A labelled draft as a voter sees it: label and text, nothing that names its author."""

    label: str
    content: str


@dataclass(frozen=True)
class VotingTask:
    """A task in `voting` as the voting page shows it."""

    task_id: str
    symbol: str
    language: str
    source_path: str | None
    code: str
    context: str
    drafts: tuple[BallotDraft, ...]
    votes: int
    """Current votes on it, from every voter."""


@dataclass(frozen=True)
class VoteCount:
    """The votes one voter cast on one UTC day."""

    day: date
    voter: str
    current: int
    replaced: int
    """Cast that day and replaced since by the same voter's newer vote on the same task."""


@dataclass(frozen=True)
class VoteRows:
    """Vote rows recorded past a row id: how many, and the newest row id (the given one when
    there are none). A replacing vote is a new row, so it counts."""

    added: int
    newest: int


@dataclass(frozen=True)
class AcceptedDraft:
    """A task's accepted draft with what writing it into the source needs."""

    task_id: str
    draft_id: int
    label: str
    provider: str
    model: str
    content: str
    source_path: str | None
    symbol: str
    language: str
    code: str


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@rides_out_outages
class VoteQueries(Queries):
    def record_votes(self, votes: Sequence[VoteInput], *, dry_run: bool = False) -> VotesRecorded:
        """Record `votes` in one transaction, all or none: `VotesRejected` lists every vote
        that names no task in `voting`, a label its ballot lacks, an incomplete ranking, or a
        vote id already used for a different vote.

        A voter's vote replaces their current vote on the task (the older stays as history);
        a vote created before the current one goes straight to history. A vote id already
        recorded with the same vote changes nothing, so a re-import is a no-op.

        `dry_run` checks and writes nothing (what `replaced` would be is not counted).
        """
        if not votes:
            return VotesRecorded(0, 0, 0)
        now = utcnow()
        with self._session() as session, session.begin():
            task_ids = sorted({vote.task_id for vote in votes})
            statuses = {
                task_id: status
                for task_id, status in session.execute(
                    select(DocumentationTask.id, DocumentationTask.status)
                    .where(DocumentationTask.id.in_(task_ids))
                    .order_by(DocumentationTask.id)
                    .with_for_update()
                )
            }
            labels = _ballot_labels(session, task_ids)
            known = {
                row.vote_id: row
                for row in session.scalars(
                    select(Vote).where(Vote.vote_id.in_({vote.vote_id for vote in votes}))
                )
            }
            problems: list[tuple[int, str]] = []
            fresh: list[VoteInput] = []
            in_batch: dict[str, VoteInput] = {}
            for index, vote in enumerate(votes):
                problem = _vote_problem(vote, statuses, labels)
                if problem is None and vote.vote_id in known:
                    if _same_vote(known[vote.vote_id], vote):
                        continue
                    problem = f"vote id {vote.vote_id!r} is already recorded for another vote"
                if problem is None and vote.vote_id in in_batch:
                    if in_batch[vote.vote_id] == vote:
                        continue
                    problem = f"vote id {vote.vote_id!r} is given twice for different votes"
                if problem is not None:
                    problems.append((index, problem))
                    continue
                in_batch[vote.vote_id] = vote
                fresh.append(vote)
            if problems:
                raise VotesRejected(problems)
            if dry_run:
                return VotesRecorded(len(fresh), 0, len(votes) - len(fresh))
            replaced = _insert_votes(session, fresh, labels, now)
        return VotesRecorded(len(fresh), replaced, len(votes) - len(fresh))

    def voting_task_for(self, voter: str, skip: Collection[str] = ()) -> VotingTask | None:
        """The task in `voting` with the fewest current votes that `voter` has never voted on
        (oldest in voting first among equals), with its labelled drafts; None when there is no
        such task. `skip`: task ids the caller will not show."""
        voted = select(Vote.task_id).where(Vote.voter == voter)
        query = _voting_tasks().where(DocumentationTask.id.not_in(voted))
        if skip:
            query = query.where(DocumentationTask.id.not_in(list(skip)))
        return self._voting_task(query)

    def voting_task(self, task_id: str) -> VotingTask | None:
        """Task `task_id` with its labelled drafts, if it is in `voting`."""
        return self._voting_task(_voting_tasks().where(DocumentationTask.id == task_id))

    def _voting_task(self, query: Select[DocumentationTask, int]) -> VotingTask | None:
        with self._session() as session:
            found = session.execute(query.limit(1)).first()
            if found is None:
                return None
            task, count = found
            drafts = session.execute(
                select(DraftVersion.label, DraftVersion.content)
                .where(DraftVersion.task_id == task.id, DraftVersion.label.is_not(None))
                .order_by(DraftVersion.label)
            )
            return VotingTask(
                task_id=task.id,
                symbol=task.symbol,
                language=task.language,
                source_path=task.source_path,
                code=task.code,
                context=task.context,
                drafts=tuple(BallotDraft(str(label), content) for label, content in drafts),
                votes=int(count),
            )

    def vote_outcomes(self) -> list[VoteOutcome]:
        """Every current vote (not the replaced ones), oldest first, each label replaced by
        the provider of the draft it stands for."""
        with self._session() as session:
            rows = session.execute(
                select(Vote, DocumentationTask.language, DocumentationTask.template)
                .join(DocumentationTask, DocumentationTask.id == Vote.task_id)
                .where(Vote.replaced_at.is_(None))
                .order_by(Vote.created_at, Vote.id)
            )
            voted = select(Vote.task_id).where(Vote.replaced_at.is_(None))
            providers: dict[tuple[str, str], str] = {
                (task_id, str(label)): provider
                for task_id, label, provider in session.execute(
                    select(DraftVersion.task_id, DraftVersion.label, DraftVersion.provider).where(
                        DraftVersion.label.is_not(None), DraftVersion.task_id.in_(voted)
                    )
                )
            }
            outcomes = []
            for vote, language, template in rows:

                def provider(label: str, task_id: str = vote.task_id) -> str:
                    return providers[(task_id, label)]

                kind, order = parse_choice(vote.choice)
                outcomes.append(
                    VoteOutcome(
                        vote_id=vote.vote_id,
                        task_id=vote.task_id,
                        voter=vote.voter,
                        language=language,
                        template=template,
                        kind=kind,
                        providers=tuple(map(provider, vote.labels)),
                        order=tuple(map(provider, order)),
                        display_order=(
                            None
                            if vote.display_order is None
                            else tuple(map(provider, vote.display_order))
                        ),
                        created_at=_aware(vote.created_at),
                    )
                )
            return outcomes

    def vote_counts(self) -> list[VoteCount]:
        """Votes per UTC day (of `created_at`, when cast) and voter, current and replaced,
        by day then voter."""
        counts: Counter[tuple[date, str, bool]] = Counter()
        with self._session() as session:
            for created_at, voter, current in session.execute(
                select(Vote.created_at, Vote.voter, Vote.replaced_at.is_(None))
            ):
                counts[(_aware(created_at).date(), voter, bool(current))] += 1
        keys = sorted({(day, voter) for day, voter, _ in counts})
        return [
            VoteCount(day, voter, counts[(day, voter, True)], counts[(day, voter, False)])
            for day, voter in keys
        ]

    def vote_rows_after(self, row_id: int) -> VoteRows:
        """The vote rows recorded past `row_id` (a sensor's cursor)."""
        with self._session() as session:
            added, newest = session.execute(
                select(func.count(), func.max(Vote.id)).where(Vote.id > row_id)
            ).one()
        return VoteRows(int(added), row_id if newest is None else int(newest))

    def voted_models(self) -> dict[str, list[str]]:
        """provider -> the models of its labelled drafts on tasks with a current vote, sorted:
        the models a leaderboard's strengths speak for."""
        voted = select(Vote.task_id).where(Vote.replaced_at.is_(None))
        with self._session() as session:
            rows = session.execute(
                select(DraftVersion.provider, DraftVersion.model)
                .where(DraftVersion.label.is_not(None), DraftVersion.task_id.in_(voted))
                .distinct()
                .order_by(DraftVersion.provider, DraftVersion.model)
            )
            models: dict[str, list[str]] = {}
            for provider, model in rows:
                models.setdefault(provider, []).append(model)
        return models

    def winning_drafts(self, winners: Mapping[str, str]) -> list[AcceptedDraft]:
        """For each task id in `winners`, the labelled draft of the provider it names, with the
        task's source path, symbol, language and code; in task id order. A task that has no
        labelled draft by that provider is left out."""
        if not winners:
            return []
        with self._session() as session:
            rows = session.execute(
                select(DraftVersion, DocumentationTask)
                .join(DocumentationTask, DocumentationTask.id == DraftVersion.task_id)
                .where(
                    DraftVersion.task_id.in_(list(winners)),
                    DraftVersion.label.is_not(None),
                )
                .order_by(DraftVersion.task_id)
            )
            return [
                AcceptedDraft(
                    task_id=task.id,
                    draft_id=draft.id,
                    label=str(draft.label),
                    provider=draft.provider,
                    model=draft.model,
                    content=draft.content,
                    source_path=task.source_path,
                    symbol=task.symbol,
                    language=task.language,
                    code=task.code,
                )
                for draft, task in rows
                if winners[task.id] == draft.provider
            ]


def _voting_tasks() -> Select[DocumentationTask, int]:
    """Tasks in `voting` with their current votes, fewest first, then oldest in voting."""
    votes = func.count(Vote.id).label("votes")
    return (
        select(DocumentationTask, votes)
        .outerjoin(Vote, (Vote.task_id == DocumentationTask.id) & Vote.replaced_at.is_(None))
        .where(DocumentationTask.status == "voting")
        .group_by(DocumentationTask.seq)
        .order_by(votes, DocumentationTask.updated_at, DocumentationTask.id)
    )


def _ballot_labels(session: Session, task_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """task id -> its drafts' labels, in label order."""
    labels: dict[str, list[str]] = {}
    for task_id, label in session.execute(
        select(DraftVersion.task_id, DraftVersion.label)
        .where(DraftVersion.task_id.in_(task_ids), DraftVersion.label.is_not(None))
        .order_by(DraftVersion.task_id, DraftVersion.label)
    ):
        labels.setdefault(task_id, []).append(str(label))
    return {task_id: tuple(found) for task_id, found in labels.items()}


def _vote_problem(
    vote: VoteInput, statuses: dict[str, str], labels: dict[str, tuple[str, ...]]
) -> str | None:
    """Why `vote` cannot be recorded; None when it can."""
    for name, value in (("vote_id", vote.vote_id), ("voter", vote.voter)):
        if not value.strip():
            return f"{name} is empty"
        if len(value) > column_length(Vote, name):
            return f"{name} is longer than {column_length(Vote, name)} characters"
    status = statuses.get(vote.task_id)
    if status is None:
        return f"task {vote.task_id!r} does not exist"
    if status != "voting":
        return f"task {vote.task_id!r} is in {status}, not voting: it takes no votes"
    ballot = labels.get(vote.task_id, ())
    problem = choice_problem(vote.choice, ballot)
    if problem is None and vote.display_order is not None:
        problem = display_order_problem(vote.display_order, ballot)
    return None if problem is None else f"task {vote.task_id!r}: {problem}"


def _canonical_choice(choice: str) -> str:
    kind, labels = parse_choice(choice)
    return kind if kind in ("tie", "all_bad") else ">".join(labels)


def _same_vote(row: Vote, vote: VoteInput) -> bool:
    return (row.task_id, row.voter, row.choice) == (
        vote.task_id,
        vote.voter,
        _canonical_choice(vote.choice),
    )


def _insert_votes(
    session: Session,
    votes: Sequence[VoteInput],
    labels: dict[str, tuple[str, ...]],
    now: datetime,
) -> int:
    """Insert checked votes in order; returns how many current votes they replaced."""
    keys = {(vote.task_id, vote.voter) for vote in votes}
    current: dict[tuple[str, str], Vote] = {
        (row.task_id, row.voter): row
        for row in session.scalars(
            select(Vote).where(
                Vote.replaced_at.is_(None),
                Vote.task_id.in_({task_id for task_id, _ in keys}),
                Vote.voter.in_({voter for _, voter in keys}),
            )
        )
        if (row.task_id, row.voter) in keys
    }
    replaced = 0
    for vote in votes:
        # In UTC: SQLite keeps no offset, only the digits.
        created = _aware(vote.created_at).astimezone(UTC) if vote.created_at is not None else now
        row = Vote(
            vote_id=vote.vote_id,
            task_id=vote.task_id,
            voter=vote.voter,
            labels=list(labels[vote.task_id]),
            display_order=None if vote.display_order is None else list(vote.display_order),
            kind=parse_choice(vote.choice)[0],
            choice=_canonical_choice(vote.choice),
            created_at=created,
            recorded_at=now,
        )
        before = current.get((vote.task_id, vote.voter))
        if before is not None and _aware(before.created_at) > created:
            row.replaced_at = now  # older than the vote it would replace: history at once
        elif before is not None:
            session.execute(update(Vote).where(Vote.id == before.id).values(replaced_at=now))
            replaced += 1
        if row.replaced_at is None:
            current[(vote.task_id, vote.voter)] = row
        session.add(row)
        session.flush()
    return replaced
