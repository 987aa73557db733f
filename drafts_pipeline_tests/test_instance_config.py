"""The Dagster instance files: the quickstart's needs no PostgreSQL, production's uses it."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

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


@pytest.mark.postgres
def test_production_instance_stores_in_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USERNAME", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", url.database or "")
    instance = load_instance(ROOT / "deploy", tmp_path)
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.run_launcher).__name__ == "WarmRunLauncher"
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 4

    @dg.asset
    def probe() -> None:
        """Writes a run, its events and a materialisation to the production storage."""

    try:
        assert dg.materialize([probe], instance=instance).success
        assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None
    finally:
        instance.dispose()
