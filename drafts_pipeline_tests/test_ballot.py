"""Blind labels and quorum: the pure rules, their statistics, and the race for `voting`."""

import itertools
import math
import random
import threading
from collections import Counter

import pytest

from drafts_pipeline.drafting.ballot import (
    assign_labels,
    below_quorum_reason,
    cast_ballots,
    decide,
    unusable_cause,
)
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.ballots import UnusableDraft
from drafts_pipeline_tests.factories import make_draft, make_task, seed_drafts

PROVIDERS = ["claude", "openai", "kimi"]


@pytest.mark.parametrize(
    ("valid", "attempts", "expected"),
    [
        (3, 0, "voting"),
        (2, 2, "voting"),
        (1, 0, "drafting"),
        (1, 1, "drafting"),
        (1, 2, "failed"),
        (0, 2, "failed"),
    ],
)
def test_decide(valid: int, attempts: int, expected: str) -> None:
    assert decide(valid, min_drafts=2, attempts=attempts, max_attempts=3) == expected


def failed_call(kind: str | None, attempts: int) -> UnusableDraft:
    reason = {"ok": False, "reason": "claude: 529 overloaded_error: try later (key sk-ant-1234)"}
    return UnusableDraft("failed", attempts, {"provider": {**reason, "error_type": kind}})


@pytest.mark.parametrize(
    ("draft", "cause"),
    [
        (failed_call("server_error", 4), "server_error after 4 attempts"),
        (failed_call("quota", 1), "quota"),
        # Not attempted: an earlier call of the run found the key wrong.
        (failed_call("authentication", 0), "authentication"),
        # Stored before drafts recorded their error kind.
        (UnusableDraft("failed", 2, {"provider": {"ok": False}}), "failed after 2 attempts"),
        (
            UnusableDraft(
                "invalid",
                1,
                {
                    "complete": {"ok": True},
                    "schema": {"ok": False, "reason": "not JSON"},
                    "blind": {"ok": False, "reason": "names a provider: 'Claude'"},
                },
            ),
            "invalid: schema, blind",
        ),
    ],
)
def test_a_draft_that_does_not_count_says_why_in_a_few_words(
    draft: UnusableDraft, cause: str
) -> None:
    assert unusable_cause(draft) == cause


def test_below_quorum_reason_names_each_provider_in_order() -> None:
    unusable = {"openai": failed_call("quota", 1), "claude": failed_call("server_error", 4)}
    assert below_quorum_reason(1, 2, unusable) == (
        "1 valid draft(s), quorum is 2; claude: server_error after 4 attempts; openai: quota"
    )
    assert below_quorum_reason(0, 2, {}) == "0 valid draft(s), quorum is 2"


def test_a_ballot_below_quorum_stores_which_providers_failed_and_why(store: DraftStore) -> None:
    store.add_tasks([make_task("t.a")])
    claude = failed_call("server_error", 4)
    store.add_draft(make_draft("t.a", "claude", "failed", attempts=4, validation=claude.validation))
    store.add_draft(
        make_draft("t.a", "openai", "invalid", validation={"schema": {"ok": False, "reason": "x"}})
    )
    # Kimi failed once, then drafted a valid answer: only its newest draft counts.
    store.add_draft(
        make_draft("t.a", "kimi", "failed", validation=failed_call("timeout", 4).validation)
    )
    store.add_draft(make_draft("t.a", "kimi", "valid"))
    [outcome] = cast_ballots(store, ["t.a"], min_drafts=2, max_attempts=3, rng=random.Random(0))
    expected = (
        "1 valid draft(s), quorum is 2; claude: server_error after 4 attempts; "
        "openai: invalid: schema"
    )
    assert (outcome.outcome, outcome.reason) == ("drafting", expected)
    task = store.tasks_by_id(["t.a"])["t.a"]
    # The provider's own message (here with a key-like token) stays on the draft only.
    assert (task.status, task.attempts, task.last_error) == ("drafting", 1, expected)


def test_labels_are_a_bijection_independent_of_arrival_order() -> None:
    labels = assign_labels(PROVIDERS, random.Random(5))
    assert sorted(labels.values()) == ["A", "B", "C"]
    assert assign_labels(list(reversed(PROVIDERS)), random.Random(5)) == labels


def test_labels_refuse_duplicate_providers() -> None:
    with pytest.raises(ValueError, match="distinct"):
        assign_labels(["claude", "claude"], random.Random())


def test_label_distribution_is_uniform() -> None:
    """6,000 ballots with the production RNG: each provider gets each label ~1/3 of the time
    (within 5 standard deviations), and each of the 6 permutations ~1/6 (chi-square)."""
    ballots, rng = 6000, random.SystemRandom()
    cells: Counter[tuple[str, str]] = Counter()
    permutations: Counter[tuple[str, ...]] = Counter()
    for _ in range(ballots):
        labels = assign_labels(PROVIDERS, rng)
        cells.update(labels.items())
        permutations[tuple(labels[p] for p in PROVIDERS)] += 1
    p = 1 / 3
    bound = 5 * math.sqrt(ballots * p * (1 - p))
    for provider, label in itertools.product(PROVIDERS, "ABC"):
        assert abs(cells[(provider, label)] - ballots * p) < bound, (provider, label, cells)
    expected = ballots / 6
    chi_square = sum(
        (permutations[perm] - expected) ** 2 / expected for perm in itertools.permutations("ABC")
    )
    assert len(permutations) == 6
    # 5 degrees of freedom: P(chi2 > 25.7) < 1e-4.
    assert chi_square < 25.7, permutations


@pytest.mark.postgres
@pytest.mark.parametrize("batched", [False, True], ids=["one_by_one", "batched"])
def test_two_runs_racing_move_a_task_to_voting_exactly_once(
    postgres_url: str, batched: bool
) -> None:
    _race(postgres_url, batched)


@pytest.mark.parametrize("batched", [False, True], ids=["one_by_one", "batched"])
def test_racing_on_sqlite_moves_a_task_exactly_once(sqlite_url: str, batched: bool) -> None:
    _race(sqlite_url, batched)


def _race(url: str, batched: bool, runners: int = 8, tasks: int = 10) -> None:
    """Runners ballot the same tasks at once, each taking them in its own order."""
    store = DraftStore(database_url=url)
    store.upgrade()
    ids = [f"race.t{i}" for i in range(tasks)]
    store.add_tasks([make_task(task_id) for task_id in ids])
    for task_id in ids:
        seed_drafts(store, task_id, dict.fromkeys(PROVIDERS, "valid"))
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(runners)

    def runner(seed: int) -> None:
        rng = random.Random(seed)
        order = rng.sample(ids, len(ids))
        barrier.wait()
        if batched:
            ballots = cast_ballots(store, order, min_drafts=2, max_attempts=3, rng=rng)
        else:
            ballots = [
                cast_ballots(store, [task_id], min_drafts=2, max_attempts=3, rng=rng)[0]
                for task_id in order
            ]
        with lock:
            outcomes.update(outcome.outcome for outcome in ballots)

    threads = [threading.Thread(target=runner, args=(seed,)) for seed in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == {"voting": tasks, "unchanged": tasks * (runners - 1)}
    for task_id, labels in store.ballot_labels(ids).items():
        assert sorted(labels) == ["A", "B", "C"], task_id
