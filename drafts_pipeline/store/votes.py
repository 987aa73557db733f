"""Votes: what a vote says, and recording votes all or nothing against the ballots they name.
Reading them back, with the provider behind each label resolved inside the store and nowhere
else, is `store/vote_results.py`'s.

A voter sees a task's drafts under blind labels and answers one of: the best label (`B`), a
full ranking best first (`B>A>C`), `tie` (they are as good as each other) or `all_bad` (none
is usable). `VoteInput` is a vote as the voter gives it, labels only; `VoteOutcome` is the same
vote after the store has put the provider behind each label. Both are plain values, so the
leaderboard's statistics run without a database.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import combinations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from drafts_pipeline.errors import VotesRejected
from drafts_pipeline.store.models import (
    DocumentationTask,
    DraftVersion,
    Vote,
    as_utc,
    column_length,
    utcnow,
)
from drafts_pipeline.store.outages import rides_out_outages
from drafts_pipeline.store.queries import Queries, on_current_ballot

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
    ballot: int | None = None
    """The ballot the voter saw; None (votes written before ballots): the task's current one."""


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
    ballot: int = 1
    """The ballot voted on: each vote is resolved within its own ballot."""

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


@rides_out_outages
class VoteQueries(Queries):
    def record_votes(self, votes: Sequence[VoteInput], *, dry_run: bool = False) -> VotesRecorded:
        """Record `votes` in one transaction, all or none: `VotesRejected` lists every vote
        that names no task in `voting`, a label its ballot lacks, an incomplete ranking, or a
        vote id already used for a different vote.

        A vote is on the task's current ballot, and records it; a vote naming another ballot
        (cast before the task was reopened) is refused, never moved to the current one, whose
        labels stand for other drafts. A voter's vote replaces their
        current vote on the same ballot (the older stays as history);
        a vote created before the current one goes straight to history. A vote id already
        recorded with the same vote changes nothing, so a re-import is a no-op.

        `dry_run` checks and writes nothing (what `replaced` would be is not counted).
        """
        if not votes:
            return VotesRecorded(0, 0, 0)
        now = utcnow()
        with self._session() as session, session.begin():
            task_ids = sorted({vote.task_id for vote in votes})
            statuses: dict[str, str] = {}
            ballots: dict[str, int] = {}
            for task_id, status, ballot in session.execute(
                select(DocumentationTask.id, DocumentationTask.status, DocumentationTask.ballot)
                .where(DocumentationTask.id.in_(task_ids))
                .order_by(DocumentationTask.id)
                .with_for_update()
            ):
                statuses[task_id] = status
                ballots[task_id] = ballot
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
                before = known.get(vote.vote_id)
                if before is not None and vote.ballot == before.ballot and _same_vote(before, vote):
                    continue  # the very vote recorded, its ballot named: a re-import
                problem = _vote_problem(vote, statuses, ballots, labels)
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
            replaced = _insert_votes(session, fresh, labels, ballots, now)
        return VotesRecorded(len(fresh), replaced, len(votes) - len(fresh))


def _ballot_labels(session: Session, task_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """task id -> its current ballot's labels, in label order."""
    labels: dict[str, list[str]] = {}
    for task_id, label in session.execute(
        select(DraftVersion.task_id, DraftVersion.label)
        .where(
            DraftVersion.task_id.in_(task_ids),
            DraftVersion.label.is_not(None),
            on_current_ballot(),
        )
        .order_by(DraftVersion.task_id, DraftVersion.label)
    ):
        labels.setdefault(task_id, []).append(str(label))
    return {task_id: tuple(found) for task_id, found in labels.items()}


def _vote_problem(
    vote: VoteInput,
    statuses: dict[str, str],
    ballots: dict[str, int],
    labels: dict[str, tuple[str, ...]],
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
    current = ballots[vote.task_id]
    if vote.ballot is not None and vote.ballot < current:
        return (
            f"task {vote.task_id!r} was reopened: the vote is for ballot {vote.ballot}, "
            f"its current ballot is {current}"
        )
    if vote.ballot is not None and vote.ballot != current:
        return f"task {vote.task_id!r} has no ballot {vote.ballot}: its current ballot is {current}"
    ballot = labels.get(vote.task_id, ())
    problem = choice_problem(vote.choice, ballot)
    if problem is None and vote.display_order is not None:
        problem = display_order_problem(vote.display_order, ballot)
    return None if problem is None else f"task {vote.task_id!r}: {problem}"


def _canonical_choice(choice: str) -> str:
    kind, labels = parse_choice(choice)
    return kind if kind in ("tie", "all_bad") else ">".join(labels)


def _same_vote(row: Vote, vote: VoteInput) -> bool:
    """Whether `row` records `vote` (on the ballot it names, when it names one)."""
    return (row.task_id, row.voter, row.choice, row.ballot) == (
        vote.task_id,
        vote.voter,
        _canonical_choice(vote.choice),
        row.ballot if vote.ballot is None else vote.ballot,
    )


def _insert_votes(
    session: Session,
    votes: Sequence[VoteInput],
    labels: dict[str, tuple[str, ...]],
    ballots: dict[str, int],
    now: datetime,
) -> int:
    """Insert checked votes in order, each on its task's current ballot; returns how many
    current votes they replaced."""
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
        if (row.task_id, row.voter) in keys and row.ballot == ballots[row.task_id]
    }
    replaced = 0
    for vote in votes:
        # In UTC: SQLite keeps no offset, only the digits.
        created = as_utc(vote.created_at).astimezone(UTC) if vote.created_at is not None else now
        row = Vote(
            vote_id=vote.vote_id,
            task_id=vote.task_id,
            voter=vote.voter,
            ballot=ballots[vote.task_id],
            labels=list(labels[vote.task_id]),
            display_order=None if vote.display_order is None else list(vote.display_order),
            kind=parse_choice(vote.choice)[0],
            choice=_canonical_choice(vote.choice),
            created_at=created,
            recorded_at=now,
        )
        before = current.get((vote.task_id, vote.voter))
        if before is not None and as_utc(before.created_at) > created:
            row.replaced_at = now  # older than the vote it would replace: history at once
        elif before is not None:
            session.execute(update(Vote).where(Vote.id == before.id).values(replaced_at=now))
            replaced += 1
        if row.replaced_at is None:
            current[(vote.task_id, vote.voter)] = row
        session.add(row)
        session.flush()
    return replaced
