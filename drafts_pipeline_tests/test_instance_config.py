"""The Dagster instance files: the quickstart's needs no PostgreSQL, production's uses it; both
name only Dagster's own classes."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

ROOT = Path(__file__).resolve().parent.parent
INSTANCE_FILES = [ROOT / "dagster.yaml", ROOT / "deploy" / "dagster.yaml"]


def load_instance(config_dir: Path, home: Path) -> dg.DagsterInstance:
    shutil.copy(config_dir / "dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


def assert_stock_settings(instance: dg.DagsterInstance) -> None:
    assert type(instance.run_launcher) is dg.DefaultRunLauncher
    assert type(instance.run_coordinator) is dg.QueuedRunCoordinator
    assert instance.run_coordinator.dequeue_interval_seconds == 1
    concurrency = instance.get_concurrency_config()
    assert concurrency.pool_config.default_pool_limit == 4
    assert concurrency.run_queue_config.max_concurrent_runs == 3
    assert instance.run_monitoring_enabled


@pytest.mark.parametrize("path", INSTANCE_FILES, ids=["top-level", "deploy"])
def test_instance_files_name_no_class_of_their_own(path: Path) -> None:
    """No `module:`/`class:` anywhere: Dagster's documented blocks choose its own classes."""

    def keys(node: object) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for value in node.values() for k in keys(value)}
        return set()

    assert not {"module", "class", "run_launcher", "run_coordinator"} & keys(
        yaml.safe_load(path.read_text())
    )


def test_top_level_instance_works_without_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB"):
        monkeypatch.delenv(name, raising=False)
    with load_instance(ROOT, tmp_path) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert_stock_settings(instance)


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
    with load_instance(ROOT / "deploy", tmp_path) as instance:
        yield instance


@dg.asset
def probe() -> None:
    """Writes a run, its events and a materialisation to the production storage."""


@pytest.mark.postgres
def test_production_instance_stores_in_postgres(production_instance: dg.DagsterInstance) -> None:
    instance = production_instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert_stock_settings(instance)
    assert dg.materialize([probe], instance=instance).success
    assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None
