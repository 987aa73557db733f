"""One provider pace shared through the draft store by every limiter (run, process) using it."""

import itertools
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from drafts_pipeline.drafting.provider_batch import draft_with_provider
from drafts_pipeline.drafting.turns import TURNS
from drafts_pipeline.llm.limits import (
    PACE_HEADROOM,
    LimiterPaused,
    LocalPaceBook,
    RequestLimiter,
)
from drafts_pipeline.llm.provider import DraftRequest, LiveProvider
from drafts_pipeline.prompts.templates import prompt_for
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DocumentationTask, ProviderPace
from drafts_pipeline.store.pacing import StorePaceBook, StoreSendingTurn
from drafts_pipeline_tests.factories import make_task
from drafts_pipeline_tests.fake_clock import FakeTime
from drafts_pipeline_tests.fake_providers import FakeProviderServer


def shared_limiter(store: DraftStore, fake: FakeTime, per_minute: float = 120) -> RequestLimiter:
    """A limiter as one run's resource makes it: its own in-flight cap, the store's pace."""
    book = StorePaceBook(store.engine, "claude", clock=fake.clock)
    return RequestLimiter(4, per_minute, book=book, sleep=fake.sleep)


def test_limiters_on_one_store_book_one_pace(store: DraftStore) -> None:
    fake = FakeTime()
    first, second = shared_limiter(store, fake), shared_limiter(store, fake)

    starts = []
    for limiter in (first, second, first, second):
        with limiter.slot():
            starts.append(fake.now)

    # 120 a minute, booked half a percent under: one start every 0.5 / 0.995 s.
    interval = 0.5 / PACE_HEADROOM
    assert starts == pytest.approx([1000.0 + k * interval for k in range(4)])


def test_a_429_seen_by_one_limiter_pauses_and_slows_the_others(store: DraftStore) -> None:
    fake = FakeTime()
    first, second = shared_limiter(store, fake, per_minute=60), shared_limiter(store, fake, 60)
    with first.slot():
        pass

    first.on_rate_limited(5.0)
    first.on_rate_limited(5.0)
    starts = []
    for _ in range(2):
        with second.slot():
            starts.append(fake.now)

    assert second.rate_factor == 0.5
    # After the pause, at half of 60 a minute (less the headroom).
    assert starts == pytest.approx([1005.0, 1005.0 + 2 / PACE_HEADROOM])
    for _ in range(20):
        second.on_success()
    assert first.rate_factor == 1.0


def test_a_shared_pause_longer_than_the_caller_accepts_raises(store: DraftStore) -> None:
    fake = FakeTime()
    first, second = shared_limiter(store, fake), shared_limiter(store, fake)
    first.on_rate_limited(3600)

    with pytest.raises(LimiterPaused), second.slot(max_pause_s=60):
        pass

    assert fake.slept == []
    assert second.paused_for_s == pytest.approx(3600)


def test_the_store_book_books_from_when_it_was_asked_not_when_it_got_in(
    store: DraftStore,
) -> None:
    """A booking that waits 0.1 s for its transaction (another writer holds the lock) still
    gets the start that was due when it asked."""
    fake = FakeTime()
    book = StorePaceBook(store.engine, "kimi", clock=fake.clock)
    book.book(1.0, None)
    fake.advance(1.0)  # the next start is due now

    def wait_for_the_lock(*_: object) -> None:
        fake.advance(0.1)

    event.listen(store.engine, "begin", wait_for_the_lock)
    try:
        start, _ = book.book(1.0, None)
    finally:
        event.remove(store.engine, "begin", wait_for_the_lock)

    assert start == pytest.approx(1001.0)
    assert fake.now == pytest.approx(1001.1)


def test_the_store_book_and_the_local_book_keep_one_pace(store: DraftStore) -> None:
    """The same bookings, 429s and successes give the same starts and factors in both books."""
    results = []
    for make in (LocalPaceBook, lambda clock: StorePaceBook(store.engine, "openai", clock=clock)):
        fake = FakeTime()
        book = make(fake.clock)
        seen: list[object] = [book.book(1.0, None), book.book(1.0, None)]
        book.slow_down(4.0)
        fake.advance(1.0)
        book.slow_down(4.0)
        seen += [book.rate_factor(), book.paused_until(), book.book(1.0, None)]
        book.speed_up(0.25)
        seen += [book.rate_factor(), book.book(1.0, None)]
        with pytest.raises(LimiterPaused):
            book.slow_down(100.0)
            book.book(1.0, 10.0)
        results.append(seen)

    assert results[0] == results[1]
    assert results[0][2:5] == [0.5, 1005.0, (1005.0, 1005.0)]


def test_many_threads_first_booking_at_once_each_get_their_own_start(store: DraftStore) -> None:
    """The first bookings of a new provider race to make its row; none may find it missing."""
    book = store.pace_book("kimi")
    ready = threading.Barrier(12)

    def first_booking(_: int) -> float:
        ready.wait()
        return book.book(0.01, None)[0]

    with ThreadPoolExecutor(max_workers=12) as pool:
        starts = sorted(pool.map(first_booking, range(12)))

    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= 0.01 - 1e-6


def requests(prefix: str, count: int) -> list[DraftRequest]:
    code = "def f(x):\n    return x\n"
    return [DraftRequest(f"{prefix}{n}", f"Symbol: f\n{code}", "f", code) for n in range(count)]


def two_runs_at_once(
    fake_providers: FakeProviderServer, store: DraftStore | None, per_minute: int
) -> list[object]:
    """Two resource instances, as two concurrent runs hold them, each drafting 8 tasks."""
    resources: list[LiveProvider] = []
    for _ in range(2):
        resource = fake_providers.resource("claude", requests_per_minute=per_minute,
                                           max_in_flight=4, initial_delay_s=0.05)  # fmt: skip
        if store is not None:
            resource.share_pace(store.pace_book("claude"))
        resources.append(resource)
    with ThreadPoolExecutor(max_workers=2) as pool:
        batches = pool.map(
            lambda pair: pair[0].generate_many(requests(pair[1], 8)),
            zip(resources, ("a", "b"), strict=True),
        )
        return [outcome for batch in batches for outcome in batch.values()]


@pytest.mark.slow
def test_concurrent_runs_split_one_rate_at_the_server(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    """Each run paced alone at 10 a second makes 20 a second together and draws 429s from a
    server allowing 14; sharing the store's pace keeps the pair at 10 a second, with no 429."""
    script = fake_providers.script("claude")
    script.rate_limit, script.rate_window_s = 7, 0.5

    two_runs_at_once(fake_providers, None, per_minute=600)
    assert 429 in script.statuses

    script.requests.clear()
    script.accepted_at.clear()
    outcomes = two_runs_at_once(fake_providers, store, per_minute=600)

    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert 429 not in script.statuses
    starts = sorted(request.received_at for request in script.requests)
    assert len(starts) == 16
    # One pace of 10 a second: 16 starts span at least 15 intervals of 0.1 s.
    assert starts[-1] - starts[0] >= 15 * 0.1 * 0.9


def prompted_tasks(store: DraftStore, prefix: str, count: int) -> list[DocumentationTask]:
    ids = [f"svc.mod.{prefix}_handler_{i}" for i in range(count)]
    store.add_tasks([make_task(task_id) for task_id in ids])
    tasks = store.tasks_by_id(ids)
    store.record_prompts([(t.id, prompt_for(t)) for t in tasks.values()])
    return list(store.tasks_by_id(ids).values())


@pytest.mark.slow
def test_overlapping_batches_take_turns_sending_not_waiting_for_answers(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    """Two batches at once in one process: the second sends nothing until the first has sent
    all its requests, and starts right after that, while the first's answers are still due.
    (Two in flight each: the first batch sends its six requests over about 1.6 s.) The second
    batch starts once the first has begun sending, as the runner observes it."""
    script = fake_providers.script("claude")
    script.latency_s = 0.8
    batches = {name: prompted_tasks(store, name, 6) for name in ("first", "second")}
    resources = [
        fake_providers.resource("claude", max_in_flight=2, requests_per_minute=6000)
        for _ in range(2)
    ]
    for resource in resources:
        resource.share_pace(store.pace_book("claude"))

    def run(name: str, resource: LiveProvider) -> None:
        draft_with_provider(store, resource, batches[name], run_id=name)

    TURNS.watch("first")
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            first = pool.submit(run, "first", resources[0])
            assert TURNS.wait_until_begun("first", 1, 30)
            second = pool.submit(run, "second", resources[1])
            first.result(), second.result()
    finally:
        TURNS.unwatch("first")

    sent = {
        name: sorted(
            r.received_at for r in script.requests if f"{name}_handler_" in json.dumps(r.body)
        )
        for name in batches
    }
    assert len(sent["first"]) == len(sent["second"]) == 6
    assert max(sent["first"]) <= min(sent["second"])
    # ... and before the server answered the first batch's last request.
    first_answers = [
        r.answered_at for r in script.requests if "first_handler_" in json.dumps(r.body)
    ]
    assert min(sent["second"]) < max(a for a in first_answers if a is not None)


def test_a_watched_run_counts_each_provider_batch_as_begun_once(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    """The in-process runner starts its next run once every provider batch of the last one has
    begun: sent its first request (before any answer is back), or ended with nothing to send.
    Each batch counts once, and only for a run that is watched."""
    script = fake_providers.script("claude")
    script.hold = threading.Event()
    tasks = prompted_tasks(store, "watched", 3)
    ids = [t.id for t in tasks]
    resource = fake_providers.resource("claude", max_in_flight=3, requests_per_minute=6000)
    resource.share_pace(store.pace_book("claude"))
    TURNS.watch("run-1")
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            drafting = pool.submit(draft_with_provider, store, resource, tasks, run_id="run-1")
            assert TURNS.wait_until_begun("run-1", 1, 10)
            assert store.latest_drafts(ids, "claude") == {}  # begun, no answer yet
            script.hold.set()
            drafting.result()
        assert len(script.requests) == 3
        assert not TURNS.wait_until_begun("run-1", 2, 0)  # three requests, one count
        # Every draft is reused now: nothing to send, so the batch counts as it ends.
        report = draft_with_provider(store, resource, tasks, run_id="run-1")
        assert report.outcomes["reused"] == 3 and len(script.requests) == 3
        assert TURNS.wait_until_begun("run-1", 2, 0)
        draft_with_provider(store, resource, tasks, run_id="run-2")  # nobody watches run-2
        assert not TURNS.wait_until_begun("run-2", 1, 0)
    finally:
        TURNS.unwatch("run-1")


def take_then_signal(turn: StoreSendingTurn, taken: threading.Event) -> None:
    turn.acquire()
    taken.set()


def test_a_sending_turn_is_one_batch_at_a_time_across_stores(database_url: str) -> None:
    """Two processes' stores (two engines here) on one database: the second batch waits."""
    first, second = DraftStore(database_url=database_url), DraftStore(database_url=database_url)
    first.upgrade()
    holder = first.sending_turn("claude")
    holder.acquire()
    taken = threading.Event()
    other = second.sending_turn("claude")
    waiter = threading.Thread(target=take_then_signal, args=(other, taken))
    waiter.start()
    assert not taken.wait(0.5)
    # Another provider's turn is its own.
    kimi = second.sending_turn("kimi")
    kimi.acquire()
    kimi.release()
    holder.release()
    assert taken.wait(10)
    other.release()
    waiter.join()


@pytest.mark.slow
def test_a_sending_turn_is_released_when_its_process_dies(database_url: str) -> None:
    DraftStore(database_url=database_url).upgrade()
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\n"
            "from drafts_pipeline.store import DraftStore\n"
            "turn = DraftStore(database_url=sys.argv[1]).sending_turn('openai')\n"
            "turn.acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n"
        ), database_url],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        turn = DraftStore(database_url=database_url).sending_turn("openai")
        taken = threading.Event()
        waiter = threading.Thread(target=take_then_signal, args=(turn, taken), daemon=True)
        waiter.start()
        assert not taken.wait(0.5)
        holder.kill()
        assert taken.wait(10)
        turn.release()
    finally:
        holder.kill()
        holder.wait()


def test_reading_the_pause_does_not_wait_for_a_writer(store: DraftStore) -> None:
    """Every request reads the pause after its wait; a writer holding the store (a booking, a
    draft being stored) must not hold that read up (on SQLite: no write lock for a read)."""
    book = StorePaceBook(store.engine, "claude")
    book.slow_down(0.0)  # the provider's row exists
    read: list[float] = []
    with store.engine.begin() as writer:
        # Holds SQLite's write lock, and on PostgreSQL the provider's row, until the block ends.
        writer.execute(
            select(ProviderPace.paused_until)
            .where(ProviderPace.provider == "claude")
            .with_for_update()
        )
        reader = threading.Thread(target=lambda: read.append(book.paused_until()))
        reader.start()
        reader.join(timeout=5)
        finished_while_held = not reader.is_alive()
    reader.join()
    assert finished_while_held and len(read) == 1


class UnwritablePace(LocalPaceBook):
    """A shared pace whose store cannot take a change just now (locked, out of reach)."""

    def slow_down(self, pause_s: float) -> None:
        raise OperationalError("UPDATE provider_pace", {}, Exception("database is locked"))

    def speed_up(self, step: float) -> None:
        raise OperationalError("UPDATE provider_pace", {}, Exception("database is locked"))


def test_a_pace_the_store_cannot_update_costs_no_answer(
    fake_providers: FakeProviderServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Telling the pace about a success or a 429 is advice to the other callers: when the
    store cannot take it, the answer already paid for is still returned (and a 429 still
    retried), with a warning."""
    fake_providers.script("claude").fail("rate_limit", times=1, retry_after="0.01")
    resource = fake_providers.resource("claude", initial_delay_s=0.01, max_delay_s=0.05)
    resource.share_pace(UnwritablePace())

    [(task_id, outcome)] = list(resource.generate_each(requests("t.", 1)))

    assert task_id == "t.0" and not isinstance(outcome, Exception)
    assert [call.status_code for call in outcome.calls] == [429, 200]
    assert caplog.text.count("the request pace could not be updated") == 2
