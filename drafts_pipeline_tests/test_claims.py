"""Claims: each (task, provider) is drafted by one live run; a dead run's claims expire."""

import dataclasses
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select, update

from drafts_pipeline.drafting.ballot import cast_ballots
from drafts_pipeline.llm.generation import CallAttempt, TokenUsage
from drafts_pipeline.prompts.templates import prompt_for
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.batches import NewBatch
from drafts_pipeline.store.drafts import FinishedCall
from drafts_pipeline.store.models import DocumentationTask, DraftClaim, LLMCall
from drafts_pipeline.store.schema import engine_for
from drafts_pipeline.voting_set import export_voting_set
from drafts_pipeline_tests.factories import make_draft, make_task, seed_drafts, with_prompts

LEASE_S = 60.0


def test_a_live_claim_belongs_to_one_run(store: DraftStore) -> None:
    store.add_tasks([make_task(f"t.{n}") for n in range(3)])
    assert store.claim_drafts(["t.0", "t.1"], "claude", "run-a", LEASE_S) == {"t.0", "t.1"}
    assert store.claim_drafts(["t.0", "t.1", "t.2"], "claude", "run-b", LEASE_S) == {"t.2"}
    # Another provider's claim on the same task is a separate piece of work.
    assert store.claim_drafts(["t.0"], "openai", "run-b", LEASE_S) == {"t.0"}
    # The holder claiming again renews its own claims.
    assert store.claim_drafts(["t.0", "t.2"], "claude", "run-a", LEASE_S) == {"t.0"}


def test_an_expired_claim_is_taken_over_and_a_renewed_one_is_not(store: DraftStore) -> None:
    store.add_tasks([make_task("t.slow"), make_task("t.dead")])
    start = datetime.now(UTC)
    assert store.claim_drafts(["t.slow", "t.dead"], "kimi", "run-a", 10, now=start) == {
        "t.slow",
        "t.dead",
    }
    # Run A is alive and renews what it still calls for; t.dead's lease is left to run out.
    later = start + timedelta(seconds=8)
    assert store.renew_claims(["t.slow"], "kimi", "run-a", 10, now=later) == {"t.slow"}
    past_first_lease = start + timedelta(seconds=12)
    assert store.claim_drafts(["t.slow", "t.dead"], "kimi", "run-b", 10, now=past_first_lease) == {
        "t.dead"
    }
    # Run A's renewal no longer holds what run B took over.
    assert store.renew_claims(["t.slow", "t.dead"], "kimi", "run-a", 10, now=later) == {"t.slow"}
    with store._session() as session:
        holders = dict(session.execute(select(DraftClaim.task_id, DraftClaim.run_id)).all())
    assert holders == {"t.slow": "run-a", "t.dead": "run-b"}


def test_only_the_holder_stores_the_draft_and_that_releases_the_claim(store: DraftStore) -> None:
    store.add_tasks([make_task("t.x")])
    [task] = with_prompts(store, ["t.x"])
    store.claim_drafts(["t.x"], "claude", "run-a", LEASE_S)
    draft = make_draft("t.x", "claude", prompt_hash=task.prompt_hash)
    assert store.add_draft(draft, holder="run-b") is None
    stored = store.add_draft(draft, holder="run-a")
    assert stored is not None and stored.version == 1
    assert store.add_draft(draft, holder="run-a") is None
    assert store.live_claims(["t.x"]) == {}


def test_a_run_that_read_the_old_source_and_claimed_after_the_change_stores_nothing(
    store: DraftStore,
) -> None:
    """The run read the task (and its prompt) before a changed source dropped the claims and
    cleared the prompt, and claimed it after: its answer is about the old code."""
    store.add_tasks([make_task("t.x")])
    [task] = with_prompts(store, ["t.x"])
    changed = make_task("t.x", code="def compute_total(lines):\n    return sum(lines)\n")
    assert store.sync_tasks([changed]).updated == ["t.x"]
    assert store.claim_drafts(["t.x"], "claude", "run-a", LEASE_S) == {"t.x"}
    old = make_draft("t.x", "claude", prompt_hash=task.prompt_hash, run_id="run-a")
    assert store.add_draft(old, holder="run-a") is None
    assert store.latest_drafts(["t.x"], "claude") == {} and _claims(store) == []


def test_release_drops_only_the_runs_own_claims(store: DraftStore) -> None:
    store.add_tasks([make_task("t.a"), make_task("t.b")])
    store.claim_drafts(["t.a"], "claude", "run-a", LEASE_S)
    store.claim_drafts(["t.b"], "claude", "run-b", LEASE_S)
    store.release_claims(["t.a", "t.b"], "claude", "run-a")
    assert store.live_claims(["t.a", "t.b"]) == {"t.b": "run-b"}


def test_a_ballot_waits_for_the_run_still_drafting_the_task(store: DraftStore) -> None:
    store.add_tasks([make_task("t.x")])
    seed_drafts(store, "t.x", {"claude": "valid", "openai": "valid"})
    store.claim_drafts(["t.x"], "kimi", "run-a", LEASE_S)

    def ballot(run_id: str) -> str:
        outcome = cast_ballots(
            store, ["t.x"], min_drafts=2, max_attempts=3, rng=random.Random(1), run_id=run_id
        )[0]
        return outcome.outcome

    assert ballot("run-b") == "unchanged"
    task = store.tasks_by_id(["t.x"])["t.x"]
    assert (task.status, task.attempts) == ("drafting", 0)
    # The run that holds the claim may ballot its own task.
    assert ballot("run-a") == "voting"


def test_a_ballot_ignores_an_expired_claim(store: DraftStore) -> None:
    store.add_tasks([make_task("t.x")])
    seed_drafts(store, "t.x", {"claude": "valid", "openai": "valid"})
    store.claim_drafts(["t.x"], "kimi", "dead-run", 5, now=datetime.now(UTC) - timedelta(minutes=1))
    outcome = cast_ballots(
        store, ["t.x"], min_drafts=2, max_attempts=3, rng=random.Random(1), run_id="run-b"
    )[0]
    assert outcome.outcome == "voting"


def _attempt(provider: str, **outcome: object) -> CallAttempt:
    return CallAttempt(
        provider=provider, model=f"{provider}-model", attempt=1, started_at=datetime.now(UTC),
        **outcome,  # type: ignore[arg-type]
    )  # fmt: skip


def _claims(store: DraftStore) -> list[tuple[str, str, str]]:
    with store._session() as session:
        found = session.execute(select(DraftClaim.task_id, DraftClaim.provider, DraftClaim.run_id))
        return sorted((task_id, provider, run_id) for task_id, provider, run_id in found)


def test_a_draft_of_a_prompt_the_task_no_longer_has_is_refused_and_its_call_kept(
    store: DraftStore,
) -> None:
    store.add_tasks([make_task("t.x")])
    [task] = with_prompts(store, ["t.x"])
    old = task.prompt_hash
    assert old is not None
    store.claim_drafts(["t.x"], "claude", "batch-1", LEASE_S)
    store.claim_drafts(["t.x"], "openai", "run-a", LEASE_S)
    # The task's prompt is rebuilt (another template) while both calls are out.
    rebuilt = dataclasses.replace(prompt_for(task), text="Another prompt.", prompt_hash="n" * 64)
    store.record_prompts([("t.x", rebuilt)])
    paid = [
        FinishedCall(_attempt("claude", status_code=200, request_id="msg_1"), datetime.now(UTC))
    ]
    stale = make_draft("t.x", "claude", prompt_hash=old)
    assert store.add_draft(stale, holder="batch-1", calls=paid) is None
    assert store.add_draft(make_draft("t.x", "openai", prompt_hash=old), holder="run-a") is None
    assert store.add_draft(make_draft("t.x", "kimi", prompt_hash=old)) is None
    assert _claims(store) == []
    with store._session() as session:
        rows = session.scalars(select(LLMCall).where(LLMCall.task_id == "t.x")).all()
    assert [row.request_id for row in rows] == ["msg_1"]
    assert store.latest_drafts(["t.x"], "claude") == {}
    # A draft of the current prompt is stored; so is any draft of a task with no prompt yet.
    current = store.add_draft(make_draft("t.x", "claude", prompt_hash="n" * 64))
    assert current is not None and current.version == 1
    store.add_tasks([make_task("t.unbuilt")])
    assert store.add_draft(make_draft("t.unbuilt", "claude", prompt_hash="q" * 64)) is not None


def test_a_reopening_drops_the_claims_of_runs_still_drafting_the_old_ballot(
    store: DraftStore,
) -> None:
    store.add_tasks([make_task("t.x")])
    [task] = with_prompts(store, ["t.x"])
    for provider in ("claude", "openai"):
        record = make_draft("t.x", provider, prompt_hash=task.prompt_hash)
        assert store.add_draft(record) is not None
    # kimi's call is out when the ballot closes with two drafts, and the task is reopened.
    store.claim_drafts(["t.x"], "kimi", "run-old", LEASE_S)
    [outcome] = cast_ballots(
        store, ["t.x"], min_drafts=2, max_attempts=3, rng=random.Random(1), run_id="run-old"
    )
    assert outcome.outcome == "voting"
    assert store.reopen_tasks(["t.x"], "reopen", reason="new style").ballots == {"t.x": 2}
    assert _claims(store) == []
    late = make_draft("t.x", "kimi", prompt_hash=task.prompt_hash, run_id="run-old")
    assert store.add_draft(late, holder="run-old") is None
    assert store.latest_drafts(["t.x"], "kimi") == {}


def test_a_changed_source_drops_the_claims_on_the_old_one(store: DraftStore) -> None:
    store.add_tasks([make_task("t.x"), make_task("t.same")])
    [task, _] = with_prompts(store, ["t.x", "t.same"])
    for task_id in ("t.x", "t.same"):
        store.claim_drafts([task_id], "claude", "run-old", LEASE_S)
    changed = make_task("t.x", code="def compute_total(lines):\n    return sum(lines)\n")
    assert store.sync_tasks([changed, make_task("t.same")]).updated == ["t.x"]
    # The unchanged task's claim stays with its run.
    assert _claims(store) == [("t.same", "claude", "run-old")]
    old = make_draft("t.x", "claude", prompt_hash=task.prompt_hash, run_id="run-old")
    assert store.add_draft(old, holder="run-old") is None
    assert store.latest_drafts(["t.x"], "claude") == {}
    # Once the next run builds the new prompt, a draft of the old one is refused too.
    [rebuilt] = with_prompts(store, ["t.x"])
    assert rebuilt.prompt_hash != task.prompt_hash
    assert store.add_draft(make_draft("t.x", "claude", prompt_hash=task.prompt_hash)) is None
    fresh = make_draft("t.x", "claude", prompt_hash=rebuilt.prompt_hash)
    assert store.add_draft(fresh) is not None


def test_a_call_is_logged_when_sent_and_completed_when_answered(store: DraftStore) -> None:
    store.add_tasks([make_task("t.x")])
    log = store.call_log("run-a")
    answered = log.call_sent("t.x", _attempt("claude"))
    log.call_sent("t.x", _attempt("openai"))  # its run dies before the answer
    log.call_finished(
        answered,
        _attempt(
            "claude",
            latency_ms=900,
            status_code=200,
            usage=TokenUsage(input_tokens=120, output_tokens=40, cached_tokens=20),
        ),
    )
    with store._session() as session:
        rows = {
            row.provider: row
            for row in session.scalars(select(LLMCall).where(LLMCall.run_id == "run-a"))
        }
    assert rows["claude"].finished_at is not None
    assert (rows["claude"].status_code, rows["claude"].input_tokens) == (200, 120)
    assert rows["claude"].cached_tokens == 20
    assert rows["openai"].finished_at is None and rows["openai"].status_code is None
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    usage = {row["provider"]: row for row in store.usage_between(day, day + timedelta(days=1))}
    assert (usage["claude"]["calls"], usage["claude"]["unfinished"]) == (1, 0)
    assert (usage["openai"]["calls"], usage["openai"]["unfinished"]) == (1, 1)


def test_a_row_written_ahead_of_its_start_takes_the_real_start_or_goes(
    store: DraftStore,
) -> None:
    """Rows are written in the pace's wait, due at the booked start: completing one records
    when the request went out; a withdrawn one (never sent) leaves no row."""
    store.add_tasks([make_task("t.x")])
    log = store.call_log("run-w")
    due = _attempt("claude")
    sent_at = due.started_at + timedelta(milliseconds=40)
    answered = log.call_sent("t.x", due)
    log.call_finished(
        answered, dataclasses.replace(due, started_at=sent_at, latency_ms=900, status_code=200)
    )
    log.call_withdrawn(log.call_sent("t.x", _attempt("openai")))
    with store._session() as session:
        rows = session.scalars(select(LLMCall).where(LLMCall.run_id == "run-w")).all()
    assert [(row.provider, row.started_at.replace(tzinfo=UTC)) for row in rows] == [
        ("claude", sent_at)
    ]


def test_runs_claiming_at_once_each_get_a_share_and_no_task_twice(store: DraftStore) -> None:
    ids = [f"t.{n}" for n in range(40)]
    store.add_tasks([make_task(task_id) for task_id in ids])
    runners = 6
    barrier = threading.Barrier(runners)
    held: dict[str, set[str]] = {}

    def claim(run: int) -> None:
        order = random.Random(run).sample(ids, len(ids))  # each run lists them in its own order
        barrier.wait()
        held[f"run-{run}"] = store.claim_drafts(order, "claude", f"run-{run}", LEASE_S)

    threads = [threading.Thread(target=claim, args=(run,)) for run in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [task_id for share in held.values() for task_id in share]
    assert sorted(claimed) == sorted(ids)
    with store._session() as session:
        holders = dict(session.execute(select(DraftClaim.task_id, DraftClaim.run_id)).all())
    assert all(task_id in held[holders[task_id]] for task_id in ids)


def test_a_task_no_longer_drafting_is_not_claimed(store: DraftStore) -> None:
    store.add_tasks([make_task("t.voted"), make_task("t.failed"), make_task("t.open")])
    seed_drafts(store, "t.voted", {"claude": "valid", "openai": "valid"})
    cast_ballots(store, ["t.voted"], min_drafts=2, max_attempts=3, rng=random.Random(1))
    store.fail_task("t.failed", "bad template")
    claimed = store.claim_drafts(["t.voted", "t.failed", "t.open", "t.missing"], "kimi", "r", 60)
    assert claimed == {"t.open"}


def test_tasks_below_quorum_or_stalled_are_due_for_another_run(store: DraftStore) -> None:
    store.add_tasks([make_task(f"t.{name}") for name in ("below", "stalled", "busy", "new")])
    seed_drafts(store, "t.below", {"claude": "valid"})
    cast_ballots(store, ["t.below"], min_drafts=2, max_attempts=3, rng=random.Random(1))
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    with store._session() as session, session.begin():
        session.execute(
            update(DocumentationTask)
            .where(DocumentationTask.id.in_(["t.stalled", "t.busy"]))
            .values(updated_at=long_ago)
        )
    store.claim_drafts(["t.busy"], "openai", "run-alive", LEASE_S)
    # t.new arrived a moment ago: its sensor run may still be queued.
    assert store.retry_candidates(10, stalled_after_s=1800) == [("t.below", 1), ("t.stalled", 0)]
    assert store.retry_candidates(1, stalled_after_s=1800) == [("t.below", 1)]


def test_exports_written_at_once_to_one_path_each_land_whole(tmp_path: Path) -> None:
    """Two runs finishing together publish the voting-ready set to the same file: each write
    goes through a temporary file of its own, so neither loses the other's on the rename."""
    frame = pd.DataFrame({"task_id": [f"t.{n}" for n in range(2000)], "label": "A"})
    output = tmp_path / "voting_ready_set.parquet"
    writers = 6
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write() -> None:
        barrier.wait()
        try:
            export_voting_set(frame, "parquet", output)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert pd.read_parquet(output).equals(frame)
    assert [path.name for path in tmp_path.iterdir()] == ["voting_ready_set.parquet"]


def test_a_batch_answer_read_before_the_source_changed_is_recorded_and_not_stored(
    store: DraftStore,
) -> None:
    """A batch keeps its claim through a changed source, which marks the batch's prompt for
    the task as gone. A collection that read the task and the batch before that must still
    not store the answer: the task's prompt is cleared (its ballot stays, as it has no draft),
    and the answer is about the old code."""
    store.add_tasks([make_task("t.x")])
    [task] = with_prompts(store, ["t.x"])
    assert task.prompt_hash is not None
    new = NewBatch("claude", "m", "s" * 64, "batch-1", "run-1")
    assert store.open_batch(new, [("t.x", task.prompt_hash)], datetime.now(UTC)) is not None
    changed = make_task("t.x", code="def compute_total(lines):\n    return sum(lines)\n")
    assert store.sync_tasks([changed]).updated == ["t.x"]
    assert _claims(store) == [("t.x", "claude", "batch-1")]  # kept for the collection
    paid = [
        FinishedCall(_attempt("claude", status_code=200, request_id="msg_1"), datetime.now(UTC))
    ]
    answer = make_draft("t.x", "claude", prompt_hash=task.prompt_hash)

    assert store.add_draft(answer, holder="batch-1", calls=paid, for_ballot=task.ballot) is None

    assert _claims(store) == [] and store.latest_drafts(["t.x"], "claude") == {}
    with store._session() as session:
        rows = session.scalars(select(LLMCall.request_id).where(LLMCall.task_id == "t.x")).all()
    assert rows == ["msg_1"]


@pytest.mark.postgres
@pytest.mark.slow
def test_a_claim_that_waited_for_the_task_row_longer_than_its_lease_still_gets_a_whole_lease(
    postgres_url: str,
) -> None:
    """A ballot (or a reopening) holds the task row while a run asks for its claim: the lease
    runs from when the claim is taken, not from when the run began to wait, so another run
    asking right after finds it live."""
    store = DraftStore(database_url=postgres_url)
    store.upgrade()
    store.add_tasks([make_task("t.x")])
    engine = engine_for(postgres_url)
    lease_s = 3.0  # past the wait by far more than a busy machine stalls
    claimed: list[set[str]] = []
    waiter = threading.Thread(
        target=lambda: claimed.append(store.claim_drafts(["t.x"], "claude", "run-a", lease_s))
    )
    with engine.begin() as holder, engine.connect() as watcher:
        holder.exec_driver_sql("SELECT 1 FROM documentation_tasks WHERE id = 't.x' FOR UPDATE")
        waiter.start()
        deadline = time.monotonic() + 10
        # Each look in a transaction of its own: the activity view is a snapshot per transaction.
        while not watcher.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).scalar():
            watcher.rollback()
            assert time.monotonic() < deadline, "the claim never waited for the row"
            time.sleep(0.01)
        time.sleep(lease_s + 0.5)  # the claim waits for longer than its lease
    waiter.join(10)

    assert claimed == [{"t.x"}]
    assert store.claim_drafts(["t.x"], "claude", "run-b", lease_s) == set()
    engine.dispose()
