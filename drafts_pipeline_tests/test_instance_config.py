"""The Dagster instance files: the quickstart's needs no PostgreSQL, production's uses it."""

import multiprocessing
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import Pool

from drafts_pipeline.dagster_storage import POOL_SIZE

ROOT = Path(__file__).resolve().parent.parent


def load_instance(config_dir: Path, home: Path) -> dg.DagsterInstance:
    shutil.copy(config_dir / "dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


def test_top_level_instance_works_without_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB"):
        monkeypatch.delenv(name, raising=False)
    instance = load_instance(ROOT, tmp_path)
    assert type(instance.run_storage).__name__ == "SqliteRunStorage"
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 4
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
    assert instance.run_coordinator.dequeue_interval_seconds == 1
    assert type(instance.run_launcher).__name__ == "WarmRunLauncher"


@pytest.fixture
def production_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> Iterator[dg.DagsterInstance]:
    """deploy/dagster.yaml's instance, its storage in a new PostgreSQL database."""
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USERNAME", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", url.database or "")
    instance = load_instance(ROOT / "deploy", tmp_path)
    try:
        yield instance
    finally:
        instance.dispose()


@dg.asset
def probe() -> None:
    """Writes a run, its events and a materialisation to the production storage."""


@pytest.mark.postgres
def test_production_instance_stores_in_postgres(production_instance: dg.DagsterInstance) -> None:
    instance = production_instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert type(instance.run_launcher).__name__ == "WarmRunLauncher"
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 4
    assert dg.materialize([probe], instance=instance).success
    assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None


@pytest.mark.postgres
def test_production_instance_reuses_its_connections(
    production_instance: dg.DagsterInstance, postgres_url: str
) -> None:
    """Five runs write some 80 events and run records; Dagster's default would open a
    connection for each read and write, the project's storages keep a few open."""
    database = make_url(postgres_url).database
    opened: list[str] = []

    def count(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection.info.dbname == database:
            opened.append(database)

    event.listen(Pool, "connect", count)
    try:
        for _ in range(5):
            assert dg.materialize([probe], instance=production_instance).success
    finally:
        event.remove(Pool, "connect", count)
    assert len(production_instance.get_runs()) == 5
    assert 1 <= len(opened) <= POOL_SIZE


def _backend_pid(instance: dg.DagsterInstance) -> int:
    with instance.run_storage.connect() as connection:  # type: ignore[attr-defined]
        return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()


def _child_backend_pid(instance: dg.DagsterInstance, answers: Any) -> None:
    answers.put(_backend_pid(instance))


@pytest.mark.postgres
def test_a_forked_process_opens_its_own_connections(
    production_instance: dg.DagsterInstance,
) -> None:
    parent = _backend_pid(production_instance)
    fork = multiprocessing.get_context("fork")
    answers = fork.Queue()
    child = fork.Process(target=_child_backend_pid, args=(production_instance, answers))
    child.start()
    child_pid = answers.get(timeout=30)
    child.join(timeout=30)
    assert child.exitcode == 0
    assert child_pid != parent
    assert _backend_pid(production_instance) == parent  # the parent's session is untouched
