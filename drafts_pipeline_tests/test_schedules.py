"""`below_quorum_schedule`: tasks a ballot left in `drafting` get another run."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import update

from drafts_pipeline.definitions import ASSETS, build_resources, defs
from drafts_pipeline.defs.drafting.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    TASK_PARTITIONS_NAME,
)
from drafts_pipeline.defs.drafting.schedules import STALLED_AFTER_S, plan_retries
from drafts_pipeline.defs.drafting.sensors import drafting_tasks_sensor
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DocumentationTask
from drafts_pipeline_tests.factories import make_task
from drafts_pipeline_tests.graph_runs import materialize_tasks
from drafts_pipeline_tests.provider_doubles import down_provider

TASKS = [f"lib.f{i}" for i in range(6)]
OUTAGE = {"openai_llm": down_provider("openai"), "kimi_llm": down_provider("kimi")}


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A Dagster instance on disk, not the suite's ephemeral one: a schedule's context opens its
    own instance from the instance's reference, which an ephemeral instance has not."""
    with dg.instance_for_test() as test_instance:
        yield test_instance


def evaluate(instance: dg.DagsterInstance, store: DraftStore) -> list[dg.RunRequest]:
    schedule = defs.resolve_schedule_def("below_quorum_schedule")
    # As a context manager: the context opens its own instance from `instance`'s ref, and
    # leaving it unclosed left Dagster's current-instance state pointing at that instance
    # after it was garbage-collected (a later run then failed, now and then).
    with dg.build_schedule_context(instance=instance, resources={"store": store}) as context:
        return list(schedule.evaluate_tick(context).run_requests or [])


def ranges(requests: list[dg.RunRequest]) -> list[tuple[str, str]]:
    return [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in requests]


def test_runs_cover_only_neighbouring_partitions_below_quorum() -> None:
    order = {key: index for index, key in enumerate(TASKS)}
    tasks = [("lib.f4", 1), ("lib.f1", 2), ("lib.f2", 1), ("lib.f5", 1)]
    requests = plan_retries(tasks, order, batch=2)
    assert ranges(requests) == [("lib.f1", "lib.f2"), ("lib.f4", "lib.f5")]
    again = plan_retries(tasks, order, batch=2)
    assert [r.run_key for r in again] == [r.run_key for r in requests]
    later = plan_retries([("lib.f1", 3), ("lib.f2", 1)], order, batch=2)
    assert later[0].run_key != requests[0].run_key  # another attempt is another run
    assert ranges(plan_retries(tasks, order, batch=1)) == [(t, t) for t in sorted(dict(tasks))]


@pytest.mark.slow
def test_an_outage_left_tasks_below_quorum_and_the_schedule_finishes_them(
    instance: dg.DagsterInstance, store: DraftStore, data_dir: Path
) -> None:
    store.add_tasks([make_task(task_id) for task_id in TASKS])
    assert evaluate(instance, store) == []  # nothing balloted yet

    # Two providers down while f1, f2 and f4 are drafted: one valid draft each, below quorum.
    for batch in (["lib.f0"], ["lib.f1", "lib.f2"], ["lib.f3"], ["lib.f4"], ["lib.f5"]):
        outage = OUTAGE if batch[0] in {"lib.f1", "lib.f4"} else None
        materialize_tasks(instance, store.database_url, batch, providers=outage)
    assert store.task_ids("drafting") == ["lib.f1", "lib.f2", "lib.f4"]

    requests = evaluate(instance, store)
    assert ranges(requests) == [("lib.f1", "lib.f2"), ("lib.f4", "lib.f4")]
    for request in requests:
        result = dg.materialize(
            ASSETS,
            instance=instance,
            resources=build_resources("offline", store.database_url),
            tags=request.tags,
        )
        assert result.success
    assert store.task_ids("drafting") == []
    assert store.task_ids("voting") == TASKS
    assert evaluate(instance, store) == []


def test_a_task_drafted_outside_this_instance_gets_its_partition(
    instance: dg.DagsterInstance, store: DraftStore, data_dir: Path
) -> None:
    store.add_tasks([make_task("lib.f0")])
    with dg.instance_for_test() as elsewhere:  # as `drafts-pipeline run` drafts
        materialize_tasks(elsewhere, store.database_url, ["lib.f0"], providers=OUTAGE)
    assert not instance.has_dynamic_partition(TASK_PARTITIONS_NAME, "lib.f0")
    assert ranges(evaluate(instance, store)) == [("lib.f0", "lib.f0")]
    assert instance.has_dynamic_partition(TASK_PARTITIONS_NAME, "lib.f0")


def older_by(store: DraftStore, task_id: str, seconds: float) -> None:
    """Move the task's last change `seconds` into the past, as if that much time went by."""
    updated_at = store.tasks_by_id([task_id])[task_id].updated_at
    with store.engine.begin() as connection:
        connection.execute(
            update(DocumentationTask)
            .where(DocumentationTask.id == task_id)
            .values(updated_at=updated_at - timedelta(seconds=seconds))
        )


def test_tasks_of_a_run_that_failed_to_start_are_requested_again_after_30_minutes(
    instance: dg.DagsterInstance,
    store: DraftStore,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No keys set (as in a UI started without them): the sensor's run fails before any
    provider is called. The sensor has read the task past its cursor; the schedule takes it over
    once it has stalled, and asks again at each tick while runs keep failing."""
    for spec in SHIPPED_PROVIDERS:
        monkeypatch.delenv(spec.key_env, raising=False)
    store.add_tasks([make_task("lib.f0")])
    context = dg.build_sensor_context(instance=instance, resources={"store": store})
    tick = drafting_tasks_sensor(context)
    [request] = tick.run_requests

    def launch(request: dg.RunRequest) -> None:
        run = dg.materialize(
            ASSETS,
            instance=instance,
            resources=build_resources("live", store.database_url),
            tags=request.tags,
            raise_on_error=False,
        )
        assert not run.success
        drafted = {event.asset_key for event in run.get_asset_materialization_events()}
        assert drafted <= {dg.AssetKey("pending_tasks")}
        assert all(not store.latest_drafts(["lib.f0"], spec.name) for spec in SHIPPED_PROVIDERS)
        task = store.tasks_by_id(["lib.f0"])["lib.f0"]
        assert (task.status, task.attempts) == ("drafting", 0)

    launch(request)
    again = dg.build_sensor_context(
        instance=instance, cursor=tick.cursor, resources={"store": store}
    )
    assert not drafting_tasks_sensor(again).run_requests
    older_by(store, "lib.f0", STALLED_AFTER_S - 60)
    assert evaluate(instance, store) == []  # not stalled yet
    older_by(store, "lib.f0", 61)
    [retry] = evaluate(instance, store)
    assert ranges([retry]) == [("lib.f0", "lib.f0")]
    launch(retry)
    assert ranges(evaluate(instance, store)) == [("lib.f0", "lib.f0")]


def test_tasks_whose_run_is_queued_get_no_second_run(
    instance: dg.DagsterInstance, store: DraftStore
) -> None:
    store.add_tasks([make_task(task_id) for task_id in TASKS])
    with store.engine.begin() as connection:  # every task left below quorum by a ballot
        connection.execute(update(DocumentationTask).values(attempts=1))
    instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, TASKS)
    job = defs.resolve_job_def("draft_tasks")
    # The schedule's earlier run for f1..f3 waits to start; a UI run of f5 alone is going.
    instance.create_run_for_job(job, tags={RANGE_START_TAG: "lib.f1", RANGE_END_TAG: "lib.f3"})
    instance.create_run_for_job(job, tags={"dagster/partition": "lib.f5"})
    assert ranges(evaluate(instance, store)) == [("lib.f0", "lib.f0"), ("lib.f4", "lib.f4")]

    for run in instance.get_runs():
        instance.report_run_canceled(run)
    assert ranges(evaluate(instance, store)) == [("lib.f0", "lib.f5")]
