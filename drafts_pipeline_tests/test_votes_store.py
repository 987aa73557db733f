"""Votes in the store: checked against their ballots, all or nothing, one current vote per
voter and task with history, and labels resolved to providers only on the way out."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from drafts_pipeline.errors import VotesRejected
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import Vote
from drafts_pipeline.store.votes import VoteInput, VoteOutcome, choice_problem, parse_choice
from drafts_pipeline_tests.factories import in_voting, make_task, reopened_in_voting

BALLOT = ("A", "B", "C")


@pytest.mark.parametrize(
    ("choice", "parsed"),
    [
        ("B", ("winner", ("B",))),
        (" b ", ("winner", ("B",))),
        ("B>A>C", ("ranking", ("B", "A", "C"))),
        ("b > a > c", ("ranking", ("B", "A", "C"))),
        ("tie", ("tie", ())),
        ("TIE", ("tie", ())),
        ("all_bad", ("all_bad", ())),
        ("all bad", ("all_bad", ())),
    ],
)
def test_parse_choice(choice: str, parsed: tuple[str, tuple[str, ...]]) -> None:
    assert parse_choice(choice) == parsed


@pytest.mark.parametrize(
    ("choice", "problem"),
    [
        ("D", "label(s) D not on the ballot (it has A, B, C)"),
        ("B>A", "ranking B>A leaves out C: rank every label"),
        ("B>B>A", "names a label twice"),
        ("", "is not a label"),
        ("best", "is not a label"),
        ("A>", "is not a label"),
    ],
)
def test_choice_problems(choice: str, problem: str) -> None:
    found = choice_problem(choice, BALLOT)
    assert found is not None and problem in found


def outcome(kind: str, order: tuple[str, ...]) -> VoteOutcome:
    return VoteOutcome(
        "v", "t", "ann", "python", "docstring", kind, ("x", "y", "z"), order, None,
        datetime(2026, 11, 30, tzinfo=UTC),
    )  # fmt: skip


def test_pairs_a_vote_implies() -> None:
    assert outcome("winner", ("y",)).pairs() == [("y", "x", 1.0), ("y", "z", 1.0)]
    assert outcome("ranking", ("z", "x", "y")).pairs() == [
        ("z", "x", 1.0),
        ("z", "y", 1.0),
        ("x", "y", 1.0),
    ]
    assert outcome("tie", ()).pairs() == [("x", "y", 0.5), ("x", "z", 0.5), ("y", "z", 0.5)]
    assert outcome("all_bad", ()).pairs() == []


def test_votes_resolve_to_providers_in_the_store_only(store: DraftStore) -> None:
    labels = in_voting(store, "t.one")
    provider_of = labels.__getitem__
    recorded = store.record_votes(
        [
            VoteInput("v1", "t.one", "ann", "B", display_order=("C", "A", "B")),
            VoteInput("v2", "t.one", "bob", "c>a>b"),
        ]
    )
    assert recorded.added == 2 and recorded.replaced == 0 and recorded.unchanged == 0
    by_voter = {vote.voter: vote for vote in store.vote_outcomes()}
    ann, bob = by_voter["ann"], by_voter["bob"]
    assert ann.kind == "winner" and ann.order == (provider_of("B"),)
    assert ann.providers == tuple(provider_of(label) for label in BALLOT)
    assert ann.display_order == tuple(provider_of(label) for label in ("C", "A", "B"))
    assert bob.order == tuple(provider_of(label) for label in ("C", "A", "B"))
    assert bob.display_order is None
    # The table holds labels, never a provider.
    with store._session() as session:
        rows = session.scalars(select(Vote)).all()
    assert {row.choice for row in rows} == {"B", "C>A>B"}
    assert all(row.labels == list(BALLOT) for row in rows)


def test_a_bad_vote_rejects_the_whole_batch(store: DraftStore) -> None:
    in_voting(store, "t.one")
    store.add_tasks([make_task("t.new")])
    votes = [
        VoteInput("v1", "t.one", "ann", "A"),
        VoteInput("v2", "t.new", "ann", "A"),
        VoteInput("v3", "t.gone", "ann", "A"),
        VoteInput("v4", "t.one", "bob", "D"),
        VoteInput("v5", "t.one", "cy", "A", display_order=("A", "B")),
        VoteInput("", "t.one", "dee", "A"),
        VoteInput("v7", "t.one", " ", "A"),
    ]
    with pytest.raises(VotesRejected) as raised:
        store.record_votes(votes)
    problems = dict(raised.value.problems)
    assert sorted(problems) == [1, 2, 3, 4, 5, 6]
    assert "'t.new' is in drafting, not voting" in problems[1]
    assert "'t.gone' does not exist" in problems[2]
    assert "label(s) D not on the ballot" in problems[3]
    assert "display order A,B is not the ballot's labels" in problems[4]
    assert problems[5] == "vote_id is empty" and problems[6] == "voter is empty"
    assert store.vote_outcomes() == []


def test_reimport_is_a_no_op_and_a_reused_id_is_refused(store: DraftStore) -> None:
    in_voting(store, "t.one")
    votes = [VoteInput("v1", "t.one", "ann", "A"), VoteInput("v2", "t.one", "bob", "tie")]
    assert store.record_votes(votes).added == 2
    again = store.record_votes(votes)
    assert (again.added, again.replaced, again.unchanged) == (0, 0, 2)
    assert len(store.vote_outcomes()) == 2
    with pytest.raises(VotesRejected, match="'v1' is already recorded for another vote"):
        store.record_votes([VoteInput("v1", "t.one", "ann", "B")])
    with pytest.raises(VotesRejected, match="'v9' is given twice for different votes"):
        store.record_votes(
            [VoteInput("v9", "t.one", "cy", "A"), VoteInput("v9", "t.one", "cy", "B")]
        )


def test_a_second_vote_replaces_the_first_and_keeps_it_as_history(store: DraftStore) -> None:
    in_voting(store, "t.one")
    start = datetime(2026, 11, 30, 9, tzinfo=UTC)
    store.record_votes([VoteInput("v1", "t.one", "ann", "A", created_at=start)])
    later = store.record_votes(
        [VoteInput("v2", "t.one", "ann", "B", created_at=start + timedelta(minutes=5))]
    )
    assert later.replaced == 1
    # A vote older than the current one goes straight to history.
    older = store.record_votes(
        [VoteInput("v0", "t.one", "ann", "C", created_at=start - timedelta(minutes=5))]
    )
    assert older.replaced == 0
    [current] = store.vote_outcomes()
    assert current.vote_id == "v2"
    with store._session() as session:
        history = {
            row.vote_id: row.replaced_at is not None for row in session.scalars(select(Vote))
        }
    assert history == {"v0": True, "v1": True, "v2": False}


def test_a_vote_on_a_ballot_since_closed_is_refused_not_moved_to_the_next(
    store: DraftStore,
) -> None:
    first = in_voting(store, "t.one", seed=0)
    # Cast on ballot 1, recorded only after the task was reopened and is in voting again:
    # its label A is another draft now.
    second = reopened_in_voting(store, "t.one", seed=4)
    assert first["A"] != second["A"]
    stale = VoteInput("v1", "t.one", "ann", "A", ballot=1)
    with pytest.raises(VotesRejected) as raised:
        store.record_votes([stale, VoteInput("v2", "t.one", "bob", "B", ballot=2)])
    assert raised.value.problems == [
        (0, "task 't.one' was reopened: the vote is for ballot 1, its current ballot is 2")
    ]
    assert store.vote_outcomes() == []
    # Naming the current ballot, or none (files written before ballots), it is recorded there.
    store.record_votes(
        [VoteInput("v2", "t.one", "bob", "B", ballot=2), VoteInput("v3", "t.one", "cy", "C")]
    )
    outcomes = {outcome.voter: outcome for outcome in store.vote_outcomes()}
    assert {voter: outcome.ballot for voter, outcome in outcomes.items()} == {"bob": 2, "cy": 2}
    assert outcomes["bob"].order == (second["B"],)


def test_the_next_task_for_a_voter(store: DraftStore) -> None:
    in_voting(store, "t.one")
    in_voting(store, "t.two", seed=1)
    store.add_tasks([make_task("t.drafting")])
    first = store.voting_task_for("ann")
    assert first is not None
    assert [draft.label for draft in first.drafts] == list(BALLOT)
    assert all(draft.content.startswith("Draft by ") for draft in first.drafts)
    # bob voted on the first one: ann is sent to the one with fewer votes.
    store.record_votes([VoteInput("b1", first.task_id, "bob", "A")])
    other = store.voting_task_for("ann")
    assert other is not None and other.task_id != first.task_id and other.votes == 0
    store.record_votes([VoteInput("a1", other.task_id, "ann", "A")])
    last = store.voting_task_for("ann")
    assert last is not None and (last.task_id, last.votes) == (first.task_id, 1)
    store.record_votes([VoteInput("a2", first.task_id, "ann", "tie")])
    assert store.voting_task_for("ann") is None
    skip = {(first.task_id, first.ballot), (other.task_id, other.ballot)}
    assert store.voting_task_for("cy", skip=skip) is None
    # The same task on another ballot is not skipped.
    assert store.voting_task_for("cy", skip={(first.task_id, first.ballot + 1)}) is not None


def test_the_database_keeps_one_current_vote_per_voter_and_task(store: DraftStore) -> None:
    in_voting(store, "t.one")
    store.record_votes([VoteInput("v1", "t.one", "ann", "A")])
    now = datetime.now(UTC)
    second = Vote(
        vote_id="v2", task_id="t.one", voter="ann", labels=list(BALLOT), kind="winner",
        choice="B", created_at=now, recorded_at=now,
    )  # fmt: skip
    with pytest.raises(IntegrityError), store._session() as session, session.begin():
        session.add(second)
