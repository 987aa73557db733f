"""`drafts-pipeline tasks retry`: failed tasks come back on purpose, the sensor requests them
again, and the next run calls only the providers whose draft is not valid."""

import os
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import select

from drafts_pipeline.definitions import ASSETS, build_resources
from drafts_pipeline.defs.drafting.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    TASK_PARTITIONS_NAME,
)
from drafts_pipeline.defs.drafting.sensors import drafting_tasks_sensor
from drafts_pipeline.drafting.ballot import cast_ballots
from drafts_pipeline.errors import RetryRefused
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DocumentationTask, DraftVersion, LLMCall
from drafts_pipeline_tests.factories import make_task, seed_drafts
from drafts_pipeline_tests.fake_providers import FakeProviderServer

FAST_RETRIES = {
    "initial_delay_s": 0.01,
    "max_delay_s": 0.05,
    "max_attempts": 4,
    "requests_per_minute": 60_000,
}
# One ballot below quorum fails a task.
ONE_BALLOT = {"ops": {"voting_ballot": {"config": {"max_attempts": 1}}}}


def cli(*args: str, database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRAFTS_DATA_DIR": str(tmp_path / "data"),
           "DRAFTS_DATABASE_URL": database_url}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "drafts_pipeline", *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip


def tick(instance: dg.DagsterInstance, store: DraftStore, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"store": store})
    return drafting_tasks_sensor(context)


def ranges(result: dg.SensorResult) -> list[tuple[str, str]]:
    return sorted((r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in result.run_requests)


def launch(
    instance: dg.DagsterInstance, store: DraftStore, result: dg.SensorResult, providers: dict
) -> None:
    """Run each request of a tick as the daemon would: the job over the request's range."""
    for request in result.run_requests:
        run = dg.materialize(
            ASSETS,
            instance=instance,
            resources={**build_resources("offline", store.database_url), **providers},
            tags=request.tags,
            run_config=ONE_BALLOT,
        )
        assert run.success


def live_providers(server: FakeProviderServer) -> dict[str, object]:
    """Fresh resources (a provider's memory of an account failure lasts one resource)."""
    return {
        spec.resource_key: server.resource(spec.name, **FAST_RETRIES) for spec in SHIPPED_PROVIDERS
    }


def draft_statuses(store: DraftStore, ids: list[str]) -> dict[tuple[str, str], list[str]]:
    """(task, provider) -> the status of each draft version, oldest first."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    with store._session() as session:
        rows = session.execute(
            select(DraftVersion.task_id, DraftVersion.provider, DraftVersion.status)
            .where(DraftVersion.task_id.in_(ids))
            .order_by(DraftVersion.version)
        )
        for task_id, provider, status in rows:
            found[(task_id, provider)].append(status)
    return dict(found)


def seqs(store: DraftStore) -> dict[str, int]:
    with store._session() as session:
        rows = session.execute(select(DocumentationTask.id, DocumentationTask.seq))
        return {task_id: seq for task_id, seq in rows}


@pytest.mark.slow
def test_failed_tasks_are_retried_by_the_sensors_next_run_calling_only_failed_providers(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    ids = ["svc.users.get_user", "svc.users.put_user", "svc.users.delete_user"]
    store.add_tasks([make_task(task_id) for task_id in ids])
    # Claude is down and OpenAI out of credit: one valid draft each, and the ballot fails them.
    fake_providers.script("claude").down = "500"
    fake_providers.script("openai").fail("quota", times=len(ids))
    first = tick(instance, store, None)
    launch(instance, store, first, live_providers(fake_providers))
    assert store.task_ids("failed") == ids
    for task in store.tasks_by_id(ids).values():
        assert task.last_error == (
            "1 valid draft(s), quorum is 2; claude: server_error after 4 attempts; openai: quota"
        )
    assert not tick(instance, store, first.cursor).run_requests  # seen, and failed
    calls_before = {spec.name: fake_providers.script(spec.name).calls for spec in SHIPPED_PROVIDERS}
    with store._session() as session:
        logged_before = len(session.scalars(select(LLMCall.id)).all())

    retried = cli("tasks", "retry", "--all-failed", database_url=store.database_url,
                  tmp_path=tmp_path)  # fmt: skip
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == "3 failed task(s) moved back to drafting"
    tasks = store.tasks_by_id(ids)
    assert {(task.status, task.attempts) for task in tasks.values()} == {("drafting", 0)}

    # Claude is back and OpenAI has credit again; the sensor reads the tasks past its cursor.
    fake_providers.script("claude").down = None
    fake_providers.script("openai").faults.clear()
    second = tick(instance, store, first.cursor)
    assert ranges(second) == [(ids[0], ids[-1])]
    launch(instance, store, second, live_providers(fake_providers))

    assert store.task_ids("voting") == ids
    assert all(task.last_error is None for task in store.tasks_by_id(ids).values())
    calls = {n: fake_providers.script(n).calls - calls_before[n] for n in calls_before}
    assert calls == {"claude": 3, "openai": 3, "kimi": 0}  # Kimi's valid drafts reused
    statuses = draft_statuses(store, ids)
    for task_id in ids:
        # The failed drafts stay as history; the new ones are the next versions.
        assert statuses[(task_id, "claude")] == ["failed", "valid"]
        assert statuses[(task_id, "openai")] == ["failed", "valid"]
        assert statuses[(task_id, "kimi")] == ["valid"]
        assert sorted(store.ballot_labels([task_id])[task_id]) == ["A", "B", "C"]
    with store._session() as session:
        assert len(session.scalars(select(LLMCall.id)).all()) == logged_before + 6


def test_the_sensor_requests_retried_neighbours_together_and_spans_no_other_task(
    instance: dg.DagsterInstance, store: DraftStore
) -> None:
    ids = [f"t.{i}" for i in range(10)]
    store.add_tasks([make_task(task_id) for task_id in ids])
    cursor = tick(instance, store, None).cursor
    retried = ["t.0", "t.1", "t.2", "t.3", "t.5", "t.6", "t.7"]
    for task_id in ids:
        if task_id in retried:
            store.fail_task(task_id, "below quorum")
        else:
            seed_drafts(store, task_id, {"claude": "valid", "openai": "valid"})
    cast_ballots(store, ids, min_drafts=2, max_attempts=3, rng=random.Random(0))
    assert store.task_ids("voting") == ["t.4", "t.8", "t.9"]

    store.requeue_failed(retried)
    result = tick(instance, store, cursor)
    # t.0 to t.2 are older than the tick's newest partitions: batched by the instance's order
    # all the same, not a run each; no range covers t.4, t.8 or t.9.
    assert ranges(result) == [("t.0", "t.2"), ("t.3", "t.3"), ("t.5", "t.7")]
    assert len({r.run_key for r in result.run_requests}) == 3
    assert list(instance.get_dynamic_partitions(TASK_PARTITIONS_NAME)) == ids


def test_named_tasks_are_retried_with_a_new_place_in_the_queue(store: DraftStore) -> None:
    ids = [f"t.{i}" for i in range(4)]
    store.add_tasks([make_task(task_id) for task_id in ids])
    for task_id in ("t.0", "t.2", "t.3"):
        store.fail_task(task_id, "1 valid draft(s), quorum is 2")
    before = seqs(store)

    assert store.requeue_failed(["t.3", "t.0", "t.3"]) == ["t.0", "t.3"]

    after = seqs(store)
    assert store.task_ids("failed") == ["t.2"]
    # Past every task, in their old order; the others keep theirs.
    assert after["t.3"] > after["t.0"] > max(before.values())
    assert {k: after[k] for k in ("t.1", "t.2")} == {k: before[k] for k in ("t.1", "t.2")}
    # The failure stays readable until the next ballot replaces it.
    assert store.tasks_by_id(["t.0"])["t.0"].last_error == "1 valid draft(s), quorum is 2"
    store.add_tasks([make_task("t.new")])
    assert seqs(store)["t.new"] > after["t.3"]
    assert store.requeue_failed(None) == ["t.2"]
    assert store.requeue_failed(None) == []


@pytest.mark.slow
def test_a_bad_id_refuses_the_whole_retry_and_changes_nothing(
    store: DraftStore, tmp_path: Path
) -> None:
    store.add_tasks([make_task("t.failed"), make_task("t.drafting")])
    store.fail_task("t.failed", "below quorum")
    before = seqs(store)

    with pytest.raises(RetryRefused) as refused:
        store.requeue_failed(["t.failed", "t.missing", "t.drafting"])
    assert refused.value.problems == [
        "no task 't.missing'",
        "task 't.drafting' is in drafting, not failed",
    ]
    result = cli("tasks", "retry", "t.failed", "t.missing", database_url=store.database_url,
                 tmp_path=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: nothing retried: no task 't.missing'"]
    assert store.task_ids("failed") == ["t.failed"]
    assert seqs(store) == before


@pytest.mark.slow
@pytest.mark.parametrize("args", [(), ("t.a", "--all-failed")], ids=["nothing", "both"])
def test_retry_needs_ids_or_all_failed(
    args: tuple[str, ...], store: DraftStore, tmp_path: Path
) -> None:
    store.add_tasks([make_task("t.a")])
    store.fail_task("t.a", "below quorum")
    result = cli("tasks", "retry", *args, database_url=store.database_url, tmp_path=tmp_path)
    assert result.returncode == 2
    assert "name the failed tasks to retry, or give --all-failed (not both)" in result.stderr
    assert store.task_ids("failed") == ["t.a"]
