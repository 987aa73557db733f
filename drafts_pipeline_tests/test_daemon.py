"""The real Dagster path: `dagster-daemon` with this repository's instance settings, its sensor,
queued runs started by Dagster's default launcher, live calls to the fake provider server."""

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.runner import batch_sizes
from drafts_pipeline.store import DraftStore
from drafts_pipeline_tests.daemon_process import REPOSITORY, start_daemon, stop_daemon
from drafts_pipeline_tests.factories import make_task
from drafts_pipeline_tests.fake_providers import FakeProviderServer


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str, dict[str, str]]:
    """A Dagster home and a store: the quickstart's (`dagster.yaml`, SQLite) or production's
    (`deploy/dagster.yaml` and the store in PostgreSQL, each in a database of its own)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    if request.param == "sqlite":
        shutil.copy(REPOSITORY / "dagster.yaml", home / "dagster.yaml")
        return home, request.getfixturevalue("sqlite_url"), {}
    from sqlalchemy.engine import make_url

    shutil.copy(REPOSITORY / "deploy" / "dagster.yaml", home / "dagster.yaml")
    store_url = request.getfixturevalue("postgres_url")
    instance_url = make_url(request.getfixturevalue("second_postgres_url"))
    return (
        home,
        store_url,
        {
            "DAGSTER_PG_HOST": instance_url.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(instance_url.port or 5432),
            "DAGSTER_PG_USERNAME": instance_url.username or "postgres",
            "DAGSTER_PG_PASSWORD": instance_url.password or "",
            "DAGSTER_PG_DB": instance_url.database or "",
        },
    )


@contextlib.contextmanager
def running_daemon(home: Path, env: dict[str, str]) -> Iterator[Path]:
    log = home / "daemon.log"
    with log.open("w") as output:
        daemon = start_daemon(home, env, output)
        try:
            yield log
        finally:
            stop_daemon(daemon, timeout_s=30)


@pytest.mark.slow
def test_the_daemon_drafts_new_tasks_in_batched_runs(
    tmp_path: Path,
    deployment: tuple[Path, str, dict[str, str]],
    fake_providers: FakeProviderServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon_home, store_url, instance_env = deployment
    store = DraftStore(database_url=store_url)
    store.upgrade()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= instance_env
    env |= {
        "DRAFTS_DATABASE_URL": store_url,
        "DRAFTS_DATA_DIR": str(tmp_path / "data"),
        "DRAFTS_LLM_MODE": "live",
        "DRAFTS_BATCH_SIZE": "3",
        "DRAFTS_SENSOR_INTERVAL_S": "1",
    }
    for spec in SHIPPED_PROVIDERS:
        env[spec.key_env] = fake_providers.script(spec.name).api_key or ""
        env[spec.base_url_env] = fake_providers.base_url(spec.name)
    ids = [f"svc.daemon.step_{i}" for i in range(7)]

    with running_daemon(daemon_home, env) as log:
        store.add_tasks([make_task(task_id) for task_id in ids])
        deadline = time.monotonic() + 180
        while len(store.task_ids("voting")) < len(ids):
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.25)

    for name, value in instance_env.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(daemon_home)) as instance:
        # The daemon also runs the schedules: the usage schedule fires at 00:15 UTC, so a test
        # that spans it sees that run as well. Only the sensor's runs are counted.
        runs = instance.get_runs(
            filters=dg.RunsFilter(
                job_name="draft_tasks", tags={"dagster/sensor_name": "drafting_tasks_sensor"}
            )
        )
    # Seven tasks in runs of at most three (batch_sizes(7, 3)).
    assert len(runs) == len(batch_sizes(7, 3)), [r.tags for r in runs]
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    for spec in SHIPPED_PROVIDERS:
        requests = fake_providers.script(spec.name).requests
        drafted = sorted(re.findall(r"Symbol: (\w+)", json.dumps(r.body))[0] for r in requests)
        assert drafted == sorted(task.rsplit(".", 1)[-1] for task in ids), spec.name
