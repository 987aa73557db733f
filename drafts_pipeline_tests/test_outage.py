"""The draft store's database goes away mid-run: short outages are ridden out, long ones end
the run with one line per failed step and exit status 2, and nothing paid for is lost or paid
twice. A PostgreSQL server of the test's own is stopped and started again."""

import logging
import multiprocessing
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from drafts_pipeline import runner
from drafts_pipeline.errors import DraftsError, StoreLocked
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.store import DraftStore, schema
from drafts_pipeline.store.models import DraftVersion, LLMCall
from drafts_pipeline.store.outages import OUTAGES, run_riding_out
from drafts_pipeline.store.schema import engine_for
from drafts_pipeline_tests.factories import make_task
from drafts_pipeline_tests.fake_providers import FakeProviderServer
from drafts_pipeline_tests.postgres_server import (
    ThrowawayServer,
    create_database,
    throwaway_server,
)

TASKS = 30


@pytest.fixture
def server() -> Iterator[ThrowawayServer]:
    """A server of the test's own (the tests that use it are `slow`)."""
    with throwaway_server() as started:
        if started is None:
            pytest.skip("no initdb on this machine to start a PostgreSQL server of the test's own")
        yield started


@pytest.fixture
def store(server: ThrowawayServer) -> Iterator[DraftStore]:
    url = create_database(server.admin_url, "drafts")
    draft_store = DraftStore(database_url=url)
    draft_store.upgrade()
    draft_store.add_tasks([make_task(f"svc.outage.step_{i:02d}") for i in range(TASKS)])
    yield draft_store
    engine_for(url).dispose()


def start_run(
    store: DraftStore, fake_providers: FakeProviderServer, tmp_path: Path, **settings: str
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {
        "DRAFTS_DATABASE_URL": store.database_url,
        "DRAFTS_DATA_DIR": str(tmp_path / "data"),
        "DRAFTS_LLM_MODE": "live",
        "DRAFTS_BATCH_SIZE": "10",
        **settings,
    }
    env.pop("DAGSTER_HOME", None)
    for spec in SHIPPED_PROVIDERS:
        # Slow enough answers that the outage starts with the run under way.
        fake_providers.script(spec.name).latency_s = 0.3
        env[spec.key_env] = fake_providers.script(spec.name).api_key or ""
        env[spec.base_url_env] = fake_providers.base_url(spec.name)
    return subprocess.Popen(
        [sys.executable, "-m", "drafts_pipeline", "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip


def wait_for_requests(fake_providers: FakeProviderServer, at_least: int) -> None:
    """Until every provider has been sent `at_least` requests (seen at the fake server)."""
    deadline = time.monotonic() + 120
    while min(fake_providers.script(s.name).calls for s in SHIPPED_PROVIDERS) < at_least:
        assert time.monotonic() < deadline, "the run never reached the providers"
        time.sleep(0.05)


def answered(fake_providers: FakeProviderServer) -> Counter[str]:
    """Successful answers the fake server sent, per provider."""
    return Counter(
        {
            spec.name: sum(r.status == 200 for r in fake_providers.script(spec.name).requests)
            for spec in SHIPPED_PROVIDERS
        }
    )


def stored(store: DraftStore) -> tuple[Counter[str], int, int, int]:
    """Drafts per provider, drafts past version 1, call rows, unfinished call rows."""
    with store.engine.connect() as connection:
        drafts = Counter(
            dict(
                connection.execute(
                    select(DraftVersion.provider, func.count()).group_by(DraftVersion.provider)
                ).all()
            )
        )
        later = connection.scalar(select(func.count()).where(DraftVersion.version > 1))
        calls = connection.scalar(select(func.count()).select_from(LLMCall))
        unfinished = connection.scalar(select(func.count()).where(LLMCall.finished_at.is_(None)))
    return drafts, later or 0, calls or 0, unfinished or 0


@pytest.mark.slow
def test_a_ten_second_outage_mid_run_loses_nothing_and_pays_nothing_twice(
    server: ThrowawayServer,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    tmp_path: Path,
) -> None:
    run = start_run(store, fake_providers, tmp_path, DRAFTS_DB_RETRY_S="60")
    wait_for_requests(fake_providers, 5)
    server.stop()
    time.sleep(10)  # the outage
    server.start()
    _, err = run.communicate(timeout=300)

    assert run.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert "lost the draft store" in err and "reachable again" in err
    assert len(store.task_ids("voting")) == TASKS
    drafts, later, calls, unfinished = stored(store)
    # Every answer the providers sent is stored, once: each provider answered each task once.
    assert answered(fake_providers) == drafts == Counter({s.name: TASKS for s in SHIPPED_PROVIDERS})
    assert later == 0
    assert calls == sum(fake_providers.script(s.name).calls for s in SHIPPED_PROVIDERS)
    assert unfinished == 0


@pytest.mark.slow
def test_an_outage_longer_than_the_retry_limit_fails_clearly_and_a_rerun_completes(
    server: ThrowawayServer,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    tmp_path: Path,
) -> None:
    settings = {"DRAFTS_DB_RETRY_S": "2", "DRAFTS_CLAIM_LEASE_S": "3"}
    run = start_run(store, fake_providers, tmp_path, **settings)
    wait_for_requests(fake_providers, 5)
    server.stop()
    _, err = run.communicate(timeout=300)
    server.start()

    assert run.returncode == 2, err[-3000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors and len(errors) == len(set(errors))
    for line in errors:
        assert f"127.0.0.1:{server.port}, database drafts" in line, line
        assert "bring the database back" in line
    # Each error line is one failed step; nothing else but the outage warning and the
    # progress lines (plain: stderr is a pipe) is printed.
    others = [line for line in err.splitlines() if not line.startswith("error:")]
    allowed = ("lost the draft store", "progress ", "drafted in ")
    assert all(line.startswith(allowed) for line in others), err

    time.sleep(3)  # the dead run's claims pass their lease
    rerun = start_run(store, fake_providers, tmp_path, **settings)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    assert len(store.task_ids("voting")) == TASKS
    drafts, later, _, _ = stored(store)
    assert drafts == Counter({s.name: TASKS for s in SHIPPED_PROVIDERS}) and later == 0


@pytest.mark.slow
def test_a_command_given_an_unreachable_database_exits_2_with_one_line(
    server: ThrowawayServer, tmp_path: Path
) -> None:
    port = server.port
    server.stop()
    env = {**os.environ, "DRAFTS_DATA_DIR": str(tmp_path / "data")}
    for url in (
        f"postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:{port}/drafts",
        "postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:5432/no_such_database_here",
    ):
        for command in (["db", "upgrade"], ["run"], ["export", "voting-set", "--format",
                                                    "jsonl", "--output", "x.jsonl"]):  # fmt: skip
            result = subprocess.run(
                [sys.executable, "-m", "drafts_pipeline", *command],
                capture_output=True, text=True, cwd=tmp_path, timeout=120,
                env={**env, "DRAFTS_DATABASE_URL": url, "DRAFTS_LLM_MODE": "offline"},
            )  # fmt: skip
            assert result.returncode == 2, (command, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, (command, result.stderr)
            database = url.rsplit("/", 1)[1]
            assert f"database {database}" in lines[0] and "127.0.0.1" in lines[0]
            assert "s3cret-pw" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url at all", "is not a database URL"),
        ("mysql://user:s3cret-pw@localhost/drafts", "names a mysql database"),
        ("sqlite:////no/such/folder/drafts.sqlite3", "SQLite file /no/such/folder"),
    ],
)
def test_a_database_url_the_store_cannot_use_is_one_clear_error(url: str, expected: str) -> None:
    with pytest.raises(DraftsError) as raised:
        DraftStore(database_url=url).upgrade()
    assert expected in str(raised.value)
    assert "s3cret-pw" not in str(raised.value) and "\n" not in str(raised.value)


LOCK = "SELECT 1 FROM documentation_tasks WHERE id = '{}' FOR UPDATE"


@pytest.mark.postgres
@pytest.mark.slow
def test_a_deadlock_victim_runs_again_and_is_no_outage(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two transactions lock two task rows in opposite orders; PostgreSQL rolls the store
    operation back as the deadlock's victim. The operation runs again and succeeds, and no
    outage is declared: a real outage afterwards still gets its whole retry budget."""
    store = DraftStore(database_url=postgres_url)
    store.upgrade()
    store.add_tasks([make_task("t.a"), make_task("t.b")])
    engine = engine_for(postgres_url)
    other_holds_a = threading.Event()
    operation_holds_b = threading.Event()
    runs: list[int] = []

    def other() -> None:
        # Waits long before checking for a deadlock, so the operation is the one rolled back.
        with engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL deadlock_timeout = '20s'")
            connection.exec_driver_sql(LOCK.format("t.a"))
            other_holds_a.set()
            assert operation_holds_b.wait(10)
            connection.exec_driver_sql(LOCK.format("t.b"))

    def operation() -> str:
        runs.append(1)
        with engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL deadlock_timeout = '100ms'")
            connection.exec_driver_sql(LOCK.format("t.b"))
            operation_holds_b.set()
            connection.exec_driver_sql(LOCK.format("t.a"))
        return "done"

    thread = threading.Thread(target=other)
    thread.start()
    assert other_holds_a.wait(10)
    with caplog.at_level(logging.INFO, logger="drafts_pipeline.store.outages"):
        assert run_riding_out(engine, operation) == "done"
    thread.join(10)

    assert len(runs) == 2
    assert "rolled a transaction back (40P01)" in caplog.text
    assert "lost the draft store" not in caplog.text
    assert engine not in OUTAGES._since
    engine.dispose()


@pytest.fixture
def busy_sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated SQLite store whose busy timeout is 0.2 s instead of 30."""
    monkeypatch.setattr(schema, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    url = f"sqlite:///{tmp_path / 'busy.sqlite3'}"
    DraftStore(database_url=url).upgrade()
    yield url
    engine_for(url).dispose()


def hold_write_lock(url: str, release: threading.Event) -> threading.Thread:
    """Another writer holds SQLite's write lock (as a long import would), from a connection of
    its own, until `release` is set; returns once the lock is taken."""
    taken = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        taken.set()
        release.wait(30)
        connection.execute("COMMIT")
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(5)
    return holder


class _SetOnRecord(logging.Handler):
    """Sets `event` at the first record that says `words`."""

    def __init__(self, event: threading.Event, words: str) -> None:
        super().__init__(logging.WARNING)
        self.event, self.words = event, words

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.event.set()


def test_a_write_that_finds_sqlite_locked_past_the_busy_timeout_runs_again(
    busy_sqlite_url: str,
) -> None:
    """The lock is held through the first try (until its warning) and then let go: the write
    runs again and is stored once."""
    store = DraftStore(database_url=busy_sqlite_url)
    retried = threading.Event()
    handler = _SetOnRecord(retried, "locked by another writer")
    outages_log = logging.getLogger("drafts_pipeline.store.outages")
    outages_log.addHandler(handler)
    holder = hold_write_lock(busy_sqlite_url, retried)
    try:
        assert store.add_tasks([make_task("t.locked")]) == 1
    finally:
        retried.set()
        holder.join()
        outages_log.removeHandler(handler)

    assert store.task_ids("drafting") == ["t.locked"]


def test_a_write_that_stays_locked_fails_naming_the_file_and_writes_nothing(
    busy_sqlite_url: str,
) -> None:
    store = DraftStore(database_url=busy_sqlite_url)
    release = threading.Event()
    holder = hold_write_lock(busy_sqlite_url, release)
    try:
        with pytest.raises(StoreLocked, match=r"busy\.sqlite3\) stayed locked by another"):
            store.add_tasks([make_task("t.locked")])
    finally:
        release.set()
        holder.join()

    assert store.task_ids("drafting") == []


def first_store_error() -> str:
    """The error of a first read of the draft store at DRAFTS_DATABASE_URL, in this process."""
    store = DraftStore(database_url=os.environ["DRAFTS_DATABASE_URL"])
    try:
        store.task_ids("drafting")
    except DraftsError as error:
        return str(error)
    return "reached"


@pytest.mark.slow
def test_a_worker_that_starts_during_an_outage_rides_it_out_as_the_command_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The command reached its store before it started workers; one that starts while the
    # server is down must report an outage, not a wrong URL. No server listens on `port`.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("DRAFTS_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")
    monkeypatch.setenv("DRAFTS_DB_RETRY_S", "0.5")
    monkeypatch.setenv("DRAFTS_LLM_MODE", "offline")

    # A process that never reached the store: the URL may be wrong, and the line says so.
    assert first_store_error().startswith("cannot reach the draft store")

    context = multiprocessing.get_context("spawn")
    output, worker_output = context.Pipe(duplex=False)
    workers = ProcessPoolExecutor(
        max_workers=1,
        mp_context=context,
        initializer=runner._start_worker,
        initargs=(context.Queue(), worker_output, os.getpid()),
    )
    with runner._relayed(output, worker_output), workers:
        message = workers.submit(first_store_error).result(timeout=120)
    assert "has been out of reach for 0.5 s" in message, message
    assert "bring the database back" in message
