"""Shared fixtures: a fresh database per test, on SQLite and on PostgreSQL."""

import contextlib
import os
import signal
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.schema import engine_for
from drafts_pipeline_tests.fake_providers import fake_providers  # noqa: F401  (a shared fixture)
from drafts_pipeline_tests.postgres_server import create_database, drop_database, postgres_server

# Scratch files (SQLite stores, Dagster instances, data folders) go to a RAM disk when the
# machine has a roomy one and TMPDIR is not set: the suite commits to SQLite thousands of times,
# and on a disk each commit waits for the write to land (the graph tests took 24% less time on
# a 2-core machine, measured while their Dagster instances were on disk too).
RAM_DISK = "/dev/shm"
RAM_DISK_MIN_FREE_BYTES = 2 << 30


def pytest_configure(config: pytest.Config) -> None:
    if "TMPDIR" in os.environ or not os.access(RAM_DISK, os.W_OK | os.X_OK):
        return
    disk = os.statvfs(RAM_DISK)
    if disk.f_bavail * disk.f_frsize >= RAM_DISK_MIN_FREE_BYTES:
        # Set before pytest picks its temporary root and before xdist starts its workers,
        # which inherit it, as do the processes the tests start.
        os.environ["TMPDIR"] = RAM_DISK
        tempfile.tempdir = RAM_DISK


@pytest.fixture(autouse=True)
def default_sigterm() -> None:
    """Each test starts with SIGTERM's default action. Dagster's interrupt handling, run in
    the main thread, gives SIGTERM whatever SIGINT has, and an xdist worker ignores SIGINT.
    A process started with SIGTERM ignored passes that on to everything it starts, including
    the `tail` behind Dagster's compute-log capture on a DAGSTER_HOME instance: `tail` then
    outlives its `terminate()`, and each run of a command-line test waits 30 s for it twice,
    and again at exit."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    with postgres_server() as url:
        if url is None:
            pytest.skip("no PostgreSQL server reachable and no initdb on this machine")
        yield url


@contextlib.contextmanager
def _new_database(admin_url: str) -> Iterator[str]:
    name = f"drafts_test_{uuid.uuid4().hex[:12]}"
    url = create_database(admin_url, name)
    try:
        yield url
    finally:
        engine_for(url).dispose()
        drop_database(admin_url, name)


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database with a random name, dropped afterwards."""
    with _new_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def second_postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """Another one, for a test that needs two (the draft store and a Dagster instance)."""
    with _new_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'drafts.sqlite3'}"
    yield url
    engine_for(url).dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL (the PostgreSQL run is `slow`: the
    quick loop, `pytest -m "not slow"`, covers SQLite, the full run both)."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite store at the newest migration, made once per worker: a test's SQLite
    store starts as a copy of it (the migrations take some 80 ms a store on a 2-core machine:
    the quick loop's fixture setup went from 35 s to 13 s of worker time). `test_store.py`
    runs the migrations on empty databases and compares what they make with the models."""
    path = tmp_path_factory.mktemp("migrated") / "drafts.sqlite3"
    url = f"sqlite:///{path}"
    DraftStore(database_url=url).upgrade()
    engine_for(url).dispose()
    return path


def _copy_store(template: Path, url: str) -> None:
    """Write a copy of the SQLite store `template` where `url` points (SQLite's backup, which
    copies what the template's write-ahead log holds too)."""
    with (
        contextlib.closing(sqlite3.connect(template)) as source,
        contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as target,
    ):
        source.backup(target)


def _upgraded(url: str) -> DraftStore:
    draft_store = DraftStore(database_url=url)
    draft_store.upgrade()  # on a copy of the migrated store, one query that finds it current
    return draft_store


@pytest.fixture
def store(database_url: str, request: pytest.FixtureRequest) -> DraftStore:
    if database_url.startswith("sqlite:///"):
        _copy_store(request.getfixturevalue("migrated_sqlite"), database_url)
    return _upgraded(database_url)


@pytest.fixture
def sqlite_store(sqlite_url: str, migrated_sqlite: Path) -> DraftStore:
    """A test's store on SQLite only."""
    _copy_store(migrated_sqlite, sqlite_url)
    return _upgraded(sqlite_url)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the project's data folder and Dagster's home at temporary folders."""
    folder = tmp_path / "data"
    monkeypatch.setenv("DRAFTS_DATA_DIR", str(folder))
    monkeypatch.delenv("DRAFTS_DATABASE_URL", raising=False)
    return folder


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A Dagster instance that outlives the runs of a test, so their results can be read back:
    Dagster's ephemeral instance, storages in memory, as `drafts-pipeline run` uses without
    DAGSTER_HOME (the tests of an instance on disk set DAGSTER_HOME themselves). Against
    `dg.instance_for_test()`'s SQLite files it takes 43% off the graph tests: those open and
    close a database connection for almost every event."""
    with dg.DagsterInstance.ephemeral() as test_instance:
        yield test_instance
