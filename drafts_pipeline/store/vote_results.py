"""What votes are read back as: the task a voter should see next (labels and text only), every
current vote with the provider behind each label, counts for the `votes` asset and the sensor,
and the drafts that won. Recording votes is `store/votes.py`'s."""

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Exists, Select, and_, func, not_, select
from sqlalchemy.orm import aliased

from drafts_pipeline.store.models import DocumentationTask, DraftVersion, Vote, as_utc
from drafts_pipeline.store.outages import rides_out_outages
from drafts_pipeline.store.queries import Queries
from drafts_pipeline.store.votes import VoteOutcome, parse_choice


def has_current_vote() -> Exists:
    """A draft's ballot has a current vote (correlated to `DraftVersion`)."""
    return (
        select(Vote.id)
        .where(
            Vote.task_id == DraftVersion.task_id,
            Vote.ballot == DraftVersion.ballot,
            Vote.replaced_at.is_(None),
        )
        .exists()
    )


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
    ballot: int = 1
    """The ballot the drafts are of: a vote from the page names it."""


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


@rides_out_outages
class VoteResultQueries(Queries):
    def voting_task_for(
        self, voter: str, skip: Collection[tuple[str, int]] = ()
    ) -> VotingTask | None:
        """The task in `voting` with the fewest current votes that `voter` has never voted on
        (oldest in voting first among equals), with its labelled drafts; None when there is no
        such task. `skip`: (task id, ballot) pairs the caller will not show; the same task on
        another ballot is shown."""
        earlier = aliased(Vote)
        voted = (
            select(earlier.id)
            .where(
                earlier.task_id == DocumentationTask.id,
                earlier.ballot == DocumentationTask.ballot,
                earlier.voter == voter,
            )
            .correlate(DocumentationTask)
            .exists()
        )
        query = _voting_tasks().where(~voted)
        for task_id, ballot in skip:
            query = query.where(
                not_(and_(DocumentationTask.id == task_id, DocumentationTask.ballot == ballot))
            )
        return self._voting_task(query)

    def voting_task(self, task_id: str) -> VotingTask | None:
        """Task `task_id` with its labelled drafts, if it is in `voting`."""
        return self._voting_task(_voting_tasks().where(DocumentationTask.id == task_id))

    def _voting_task(self, query: Select[DocumentationTask, int]) -> VotingTask | None:
        with self._reading() as session:
            found = session.execute(query.limit(1)).first()
            if found is None:
                return None
            task, count = found
            drafts = session.execute(
                select(DraftVersion.label, DraftVersion.content)
                .where(
                    DraftVersion.task_id == task.id,
                    DraftVersion.ballot == task.ballot,
                    DraftVersion.label.is_not(None),
                )
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
                ballot=task.ballot,
            )

    def vote_outcomes(self, current_ballots_only: bool = False) -> list[VoteOutcome]:
        """Every current vote (not the replaced ones), oldest first, each label replaced by
        the provider of the draft it stood for on the ballot voted on. With
        `current_ballots_only`, only the votes on a task's current ballot while it is in
        `voting` (what acceptance reads); otherwise every ballot's (the leaderboard)."""
        query = (
            select(Vote, DocumentationTask.language, DocumentationTask.template)
            .join(DocumentationTask, DocumentationTask.id == Vote.task_id)
            .where(Vote.replaced_at.is_(None))
            .order_by(Vote.created_at, Vote.id)
        )
        if current_ballots_only:
            query = query.where(
                Vote.ballot == DocumentationTask.ballot, DocumentationTask.status == "voting"
            )
        with self._reading() as session:
            rows = session.execute(query).all()
            voted = has_current_vote()
            providers: dict[tuple[str, int, str], str] = {
                (task_id, ballot, str(label)): provider
                for task_id, ballot, label, provider in session.execute(
                    select(
                        DraftVersion.task_id,
                        DraftVersion.ballot,
                        DraftVersion.label,
                        DraftVersion.provider,
                    ).where(DraftVersion.label.is_not(None), voted)
                )
            }
            outcomes = []
            for vote, language, template in rows:

                def provider(
                    label: str, task_id: str = vote.task_id, ballot: int = vote.ballot
                ) -> str:
                    return providers[(task_id, ballot, label)]

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
                        created_at=as_utc(vote.created_at),
                        ballot=vote.ballot,
                    )
                )
            return outcomes

    def vote_counts(self) -> list[VoteCount]:
        """Votes per UTC day (of `created_at`, when cast) and voter, current and replaced,
        by day then voter."""
        counts: Counter[tuple[date, str, bool]] = Counter()
        with self._reading() as session:
            for created_at, voter, current in session.execute(
                select(Vote.created_at, Vote.voter, Vote.replaced_at.is_(None))
            ):
                counts[(as_utc(created_at).date(), voter, bool(current))] += 1
        keys = sorted({(day, voter) for day, voter, _ in counts})
        return [
            VoteCount(day, voter, counts[(day, voter, True)], counts[(day, voter, False)])
            for day, voter in keys
        ]

    def vote_rows_after(self, row_id: int) -> VoteRows:
        """The vote rows recorded past `row_id` (a sensor's cursor)."""
        with self._reading() as session:
            added, newest = session.execute(
                select(func.count(), func.max(Vote.id)).where(Vote.id > row_id)
            ).one()
        return VoteRows(int(added), row_id if newest is None else int(newest))

    def voted_models(self) -> dict[str, list[str]]:
        """provider -> the models of its labelled drafts on tasks with a current vote, sorted:
        the models a leaderboard's strengths speak for."""
        voted = has_current_vote()
        with self._reading() as session:
            rows = session.execute(
                select(DraftVersion.provider, DraftVersion.model)
                .where(DraftVersion.label.is_not(None), voted)
                .distinct()
                .order_by(DraftVersion.provider, DraftVersion.model)
            )
            models: dict[str, list[str]] = {}
            for provider, model in rows:
                models.setdefault(provider, []).append(model)
        return models

    def winning_drafts(self, winners: Mapping[str, str]) -> list[AcceptedDraft]:
        """For each task id in `winners`, the current ballot's labelled draft of the provider
        it names, with the
        task's source path, symbol, language and code; in task id order. A task that has no
        labelled draft by that provider is left out."""
        if not winners:
            return []
        with self._reading() as session:
            rows = session.execute(
                select(DraftVersion, DocumentationTask)
                .join(DocumentationTask, DocumentationTask.id == DraftVersion.task_id)
                .where(
                    DraftVersion.task_id.in_(list(winners)),
                    DraftVersion.ballot == DocumentationTask.ballot,
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
        .outerjoin(
            Vote,
            (Vote.task_id == DocumentationTask.id)
            & (Vote.ballot == DocumentationTask.ballot)
            & Vote.replaced_at.is_(None),
        )
        .where(DocumentationTask.status == "voting")
        .group_by(DocumentationTask.seq)
        .order_by(votes, DocumentationTask.updated_at, DocumentationTask.id)
    )
