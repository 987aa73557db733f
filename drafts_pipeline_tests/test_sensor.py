"""`drafting_tasks_sensor`: new tasks only, batched, bounded, never a scan of everything."""

import dagster as dg
import pytest

from drafts_pipeline.definitions import defs
from drafts_pipeline.defs.drafting.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    TASK_PARTITIONS_NAME,
)
from drafts_pipeline.defs.drafting.sensors import drafting_tasks_sensor
from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.store import DraftStore
from drafts_pipeline_tests.factories import make_task


def tick(instance: dg.DagsterInstance, store: DraftStore, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"store": store})
    return drafting_tasks_sensor(context)


def partitions(instance: dg.DagsterInstance) -> list[str]:
    return list(instance.event_log_storage.get_dynamic_partitions(TASK_PARTITIONS_NAME))


def ranges(result: dg.SensorResult) -> list[tuple[str, str]]:
    return [
        (r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG])
        for r in result.run_requests or []
        if RANGE_START_TAG in r.tags
    ]


@pytest.fixture
def no_full_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the sensor lists every partition or every task (a page of the newest
    partitions, no longer than the tick's cap, is allowed)."""

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the sensor must not list every partition or task")

    page = dg.DagsterInstance.get_paginated_dynamic_partitions

    def bounded_page(
        self: dg.DagsterInstance, name: str, limit: int, ascending: bool, cursor: str | None = None
    ) -> object:
        assert limit <= 1000 and not ascending and cursor is None
        return page(self, name, limit=limit, ascending=ascending, cursor=cursor)

    monkeypatch.setattr(dg.DagsterInstance, "get_dynamic_partitions", forbidden)
    monkeypatch.setattr(dg.DagsterInstance, "get_paginated_dynamic_partitions", bounded_page)
    monkeypatch.setattr(DraftStore, "task_ids", forbidden)


def test_new_tasks_become_partitions_and_batched_runs(
    instance: dg.DagsterInstance,
    store: DraftStore,
    no_full_scans: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRAFTS_BATCH_SIZE", "2")
    store.add_tasks([make_task(f"t.{i}") for i in range(5)])
    result = tick(instance, store, None)
    # The tick adds the partitions itself, before the daemon creates the runs over them.
    assert partitions(instance) == [f"t.{i}" for i in range(5)]
    assert not result.dynamic_partitions_requests
    # Runs of at most 2, small first (runner.batch_sizes(5, 2) == [1, 2, 2]).
    assert ranges(result) == [("t.0", "t.0"), ("t.1", "t.2"), ("t.3", "t.4")]
    assert len({r.run_key for r in result.run_requests}) == 3

    again = tick(instance, store, result.cursor)
    assert not again.run_requests
    assert again.cursor in (None, result.cursor)

    store.add_tasks([make_task("t.new")])
    later = tick(instance, store, result.cursor)
    assert ranges(later) == [("t.new", "t.new")]
    assert partitions(instance) == [*(f"t.{i}" for i in range(5)), "t.new"]


def test_a_tick_repeated_after_a_failure_adds_no_partition_twice(
    instance: dg.DagsterInstance, store: DraftStore
) -> None:
    store.add_tasks([make_task(f"t.{i}") for i in range(3)])
    first = tick(instance, store, None)
    # The daemon did not store the cursor (say the tick failed): the next tick reads the same.
    repeated = tick(instance, store, None)
    assert ranges(repeated) == ranges(first)
    assert partitions(instance) == ["t.0", "t.1", "t.2"]


def test_tick_reads_at_most_its_cap(
    instance: dg.DagsterInstance,
    store: DraftStore,
    no_full_scans: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRAFTS_SENSOR_MAX_TASKS", "3")
    monkeypatch.setenv("DRAFTS_BATCH_SIZE", "10")
    store.add_tasks([make_task(f"t.{i}") for i in range(7)])
    cursor = None
    for expected in (["t.0", "t.1", "t.2"], ["t.3", "t.4", "t.5"], ["t.6"]):
        before = partitions(instance)
        result = tick(instance, store, cursor)
        assert partitions(instance)[len(before) :] == expected
        # One run over the tick's tasks: batch_sizes(3, 10) == [3].
        assert ranges(result) == [(expected[0], expected[-1])]
        cursor = result.cursor
    assert not tick(instance, store, cursor).run_requests


def test_tasks_not_drafting_are_ignored(instance: dg.DagsterInstance, store: DraftStore) -> None:
    store.add_tasks([make_task("t.a"), make_task("t.b")])
    store.fail_task("t.a", "bad")
    result = tick(instance, store, None)
    assert ranges(result) == [("t.b", "t.b")]


def test_a_bad_batch_size_fails_the_tick_naming_the_variable(
    instance: dg.DagsterInstance, store: DraftStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRAFTS_BATCH_SIZE", "abc")
    store.add_tasks([make_task("t.0")])
    with pytest.raises(ConfigurationError, match="DRAFTS_BATCH_SIZE='abc'"):
        tick(instance, store, None)
    assert partitions(instance) == []


def test_partitions_a_command_line_run_added_before_are_never_spanned(
    instance: dg.DagsterInstance, store: DraftStore, no_full_scans: None
) -> None:
    """`drafts-pipeline run` on this instance added t.3 (and others' partitions) before the
    tick: the runs still cover each new task once and no other partition."""
    store.add_tasks([make_task(f"t.{i}") for i in range(5)])
    instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, ["t.3", "x.a", "x.b"])
    result = tick(instance, store, None)
    order = partitions(instance)
    assert order == ["t.3", "x.a", "x.b", "t.0", "t.1", "t.2", "t.4"]
    # batch_sizes(4, 100) over the four added in this tick; t.3 alone.
    assert ranges(result) == [("t.0", "t.4"), ("t.3", "t.3")]
    covered = [
        key
        for start, end in ranges(result)
        for key in order[order.index(start) : order.index(end) + 1]
    ]
    assert sorted(covered) == [f"t.{i}" for i in range(5)]


def test_runs_follow_the_backlog_and_the_runs_already_going(
    instance: dg.DagsterInstance, store: DraftStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRAFTS_BATCH_SIZE", "10")
    monkeypatch.setenv("DRAFTS_SENSOR_MAX_TASKS", "30")
    store.add_tasks([make_task(f"t.{i:02}") for i in range(40)])

    first = tick(instance, store, None)
    # Nothing drafting yet: a small first run, growing; ten tasks are left for the next tick,
    # so the last runs are not shrunk (batch_sizes(30, 10, ramp_down=False)).
    assert [int(end[2:]) - int(start[2:]) + 1 for start, end in ranges(first)] == [2, 8, 10, 10]

    # A run of the job waits to start: the next tick's runs need no small first run, and
    # nothing follows them, so the last ones shrink (batch_sizes(10, 10, ramp_up=False)).
    job = defs.resolve_job_def("draft_tasks")
    instance.create_run_for_job(job, tags=first.run_requests[0].tags)
    second = tick(instance, store, first.cursor)
    assert ranges(second) == [("t.30", "t.34"), ("t.35", "t.39")]


def test_a_tick_leaves_a_short_last_run_to_the_next_when_more_follow(
    instance: dg.DagsterInstance, store: DraftStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRAFTS_BATCH_SIZE", "10")
    monkeypatch.setenv("DRAFTS_SENSOR_MAX_TASKS", "25")
    store.add_tasks([make_task(f"t.{i:02}") for i in range(45)])

    first = tick(instance, store, None)
    # batch_sizes(25, 10, ramp_down=False) == [2, 8, 10, 5]: the 5 wait for the next tick.
    assert ranges(first) == [("t.00", "t.01"), ("t.02", "t.09"), ("t.10", "t.19")]
    assert partitions(instance) == [f"t.{i:02}" for i in range(20)]

    second = tick(instance, store, first.cursor)
    # The last 25 tasks, nothing after them: the tick takes them all and shrinks its end.
    assert ranges(second)[0][0] == "t.20" and ranges(second)[-1][1] == "t.44"
    assert not tick(instance, store, second.cursor).run_requests
