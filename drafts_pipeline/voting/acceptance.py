"""Which draft of a task is accepted: the rule (pure, on `VoteOutcome`s) and the accepted
drafts read back from the store.

A task's draft is accepted when the task has at least `min_votes` current votes and more than
half of them put that draft first (as the winner, or at the top of a ranking). Ties and
`all_bad` votes count among the votes but put no draft first, so they make a majority harder;
a majority is always at least one first place ahead of the runner-up, so an even split stays
open. The verdict is read from the current votes each time: a later vote can reopen a task.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from drafts_pipeline.store.votes import VoteOutcome

if TYPE_CHECKING:
    from drafts_pipeline.store import DraftStore
    from drafts_pipeline.store.vote_results import AcceptedDraft

VerdictStatus = Literal["accepted", "open", "needs_votes"]


@dataclass(frozen=True)
class TaskVerdict:
    """What a task's current votes decide."""

    task_id: str
    status: VerdictStatus
    """`accepted`; `open` (enough votes, no majority); `needs_votes` (fewer than asked)."""
    votes: int
    first_places: tuple[tuple[str, int], ...]
    """(provider, votes that put its draft first), most first; providers never first left out."""
    winner: str | None
    """The provider of the accepted draft; None unless accepted."""
    reason: str


def task_verdict(task_id: str, outcomes: Sequence[VoteOutcome], min_votes: int) -> TaskVerdict:
    """The verdict on one task from its current votes."""
    firsts = Counter(outcome.order[0] for outcome in outcomes if outcome.order)
    ranked = tuple(sorted(firsts.items(), key=lambda item: (-item[1], item[0])))
    votes = len(outcomes)
    if votes < min_votes:
        return TaskVerdict(
            task_id,
            "needs_votes",
            votes,
            ranked,
            None,
            f"{votes} vote(s), {min_votes} needed (DRAFTS_MIN_VOTES)",
        )
    if not ranked:
        return TaskVerdict(task_id, "open", votes, (), None, f"no draft first in {votes} vote(s)")
    top, top_firsts = ranked[0]
    if 2 * top_firsts <= votes:
        return TaskVerdict(
            task_id,
            "open",
            votes,
            ranked,
            None,
            f"no majority: {top} first in {top_firsts} of {votes} vote(s)",
        )
    runner_up = ranked[1][1] if len(ranked) > 1 else 0
    return TaskVerdict(
        task_id,
        "accepted",
        votes,
        ranked,
        top,
        f"{top} first in {top_firsts} of {votes} vote(s), runner-up {runner_up}",
    )


def task_verdicts(outcomes: Sequence[VoteOutcome], min_votes: int) -> list[TaskVerdict]:
    """A verdict for every task with a current vote, in task id order."""
    by_task: dict[str, list[VoteOutcome]] = {}
    for outcome in outcomes:
        by_task.setdefault(outcome.task_id, []).append(outcome)
    return [task_verdict(task_id, by_task[task_id], min_votes) for task_id in sorted(by_task)]


def current_verdicts(store: "DraftStore", min_votes: int) -> list[TaskVerdict]:
    """The verdicts acceptance goes by: on each task's current ballot while it is in
    `voting` (a reopened task has none until its new ballot is voted on)."""
    return task_verdicts(store.vote_outcomes(current_ballots_only=True), min_votes)


def accepted_drafts(store: "DraftStore", min_votes: int) -> list["AcceptedDraft"]:
    """The draft accepted for each task whose current votes accept one, with its task's
    source path, symbol, language and code: what applying accepted drafts needs."""
    verdicts = current_verdicts(store, min_votes)
    return store.winning_drafts(
        {verdict.task_id: verdict.winner for verdict in verdicts if verdict.winner is not None}
    )
