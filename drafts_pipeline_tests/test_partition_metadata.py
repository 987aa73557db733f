"""Each task partition of a provider's draft asset shows that task's own draft, as the UI reads
it from the instance, as soon as the provider's draft for it is known; a later run that drafts
nothing for the task keeps those figures."""

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from drafts_pipeline.drafting.provider_batch import TaskDraft, draft_with_provider
from drafts_pipeline.errors import StoreUnavailable
from drafts_pipeline.llm.budget import DailyBudget
from drafts_pipeline.llm.calling import OnStart
from drafts_pipeline.llm.generation import CallLog
from drafts_pipeline.llm.provider import DraftRequest, Outcome
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.store import DraftStore
from drafts_pipeline_tests.factories import make_task, with_prompts
from drafts_pipeline_tests.fake_providers import HOLD_LIMIT_S, FakeProviderServer
from drafts_pipeline_tests.graph_runs import FAST, latest_metadata, materialize_tasks
from drafts_pipeline_tests.provider_doubles import DownProvider, down_provider

BATCH_TOTALS = {"valid", "invalid", "failed", "reused", "latency_p50_ms", "latency_p95_ms"}


def test_each_partition_shows_its_task_draft_and_a_later_run_keeps_it(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
) -> None:
    # Prompts of different lengths: the fake server counts tokens from the prompt.
    ids = [f"svc.sized.handler_{i}" for i in range(4)]
    store.add_tasks(
        [
            make_task(task_id, code=f"def handler_{i}(event, context=None):\n    return event\n",
                      context="# notes\n" * (40 * i))
            for i, task_id in enumerate(ids)
        ]
    )  # fmt: skip
    # One claude call is refused for good (400): that task's claude draft is `failed`.
    fake_providers.script("claude").fail("bad_request")
    providers = {
        spec.resource_key: fake_providers.resource(spec.name, **FAST) for spec in SHIPPED_PROVIDERS
    }
    first = materialize_tasks(instance, store.database_url, ids, providers=providers)
    assert first.success and store.task_ids("voting") == ids

    shown: dict[tuple[str, str], dict[str, object]] = {}
    for spec in SHIPPED_PROVIDERS:
        drafts = store.latest_drafts(ids, spec.name)
        for task_id in ids:
            draft = drafts[task_id]
            metadata = latest_metadata(instance, spec.asset_name, task_id)
            shown[spec.name, task_id] = metadata
            assert metadata["run_id"] == first.run_id
            assert not BATCH_TOTALS & set(metadata), metadata
            assert metadata["this_run"] == "drafted"
            assert metadata["status"] == draft.status
            assert metadata["model"] == draft.model
            assert metadata["attempts"] == draft.attempts
            if draft.status == "failed":
                assert "input_tokens" not in metadata and "cost_usd" not in metadata
                assert "400" in str(metadata["problem"])
                continue
            assert metadata["input_tokens"] == draft.input_tokens
            assert metadata["output_tokens"] == draft.output_tokens
            assert metadata["cached_tokens"] == draft.cached_tokens
            assert metadata["cache_write_tokens"] == draft.cache_write_tokens
            assert metadata["latency_ms"] == draft.latency_ms
            assert draft.cost_usd is not None and draft.cost_usd > 0
            assert Decimal(str(metadata["cost_usd"])) == draft.cost_usd.normalize()
        valid = [shown[spec.name, t] for t in ids if shown[spec.name, t]["status"] == "valid"]
        # Each task its own figures: no two prompts were alike.
        assert len({m["input_tokens"] for m in valid}) == len(valid)
        # The fixed part was written to the cache once, and read back by the other calls.
        if spec.name != "kimi":
            assert sum(bool(m["cache_write_tokens"]) for m in valid) == 1
        assert len({m["cost_usd"] for m in valid}) == len(valid)
    assert [shown["claude", t]["status"] for t in ids].count("failed") == 1
    # What it costs: per task, one materialisation of pending_tasks and of the ballot, two of
    # each provider's draft (the step's output, then the task's own figures).
    records = instance.get_records_for_run(
        first.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    per_task = [r for r in records if r.partition_key is not None]
    assert len(per_task) == (2 + 2 * len(SHIPPED_PROVIDERS)) * len(ids)

    # A backfill over the same tasks, now in voting: nothing is drafted or called again.
    calls = sum(fake_providers.script(spec.name).calls for spec in SHIPPED_PROVIDERS)
    again = materialize_tasks(instance, store.database_url, ids, providers=providers)
    assert again.success
    assert sum(fake_providers.script(spec.name).calls for spec in SHIPPED_PROVIDERS) == calls
    for (provider, task_id), before in shown.items():
        after = latest_metadata(instance, f"{provider}_draft", task_id)
        assert after["run_id"] == again.run_id
        assert after["this_run"] == "not drafting"
        figures = {k: v for k, v in before.items() if k not in ("run_id", "this_run")}
        assert {k: v for k, v in after.items() if k not in ("run_id", "this_run")} == figures


def add_handlers(store: DraftStore, prefix: str, count: int) -> list[str]:
    ids = [f"{prefix}.handler_{i}" for i in range(count)]
    store.add_tasks(
        [
            make_task(task_id, code=f"def handler_{i}(event):\n    return event\n")
            for i, task_id in enumerate(ids)
        ]
    )
    return ids


def test_a_batch_tells_each_task_as_its_draft_is_stored(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    """The fast tasks are heard of while the slow task's answer is still kept at the server;
    every task once, with what the report holds."""
    ids = add_handlers(store, "svc.told", 4)
    slow, fast = ids[0], set(ids[1:])
    heard: dict[str, TaskDraft] = {}
    fast_heard = threading.Event()
    heard_by_the_slow_answer: list[set[str]] = []

    def hear(task_id: str, task: TaskDraft) -> None:
        assert task_id not in heard
        heard[task_id] = task
        if fast <= heard.keys():
            fast_heard.set()

    def keep_the_slow_answer(prompt: str) -> None:
        if "Symbol: handler_0\n" in prompt:
            fast_heard.wait(HOLD_LIMIT_S)
            heard_by_the_slow_answer.append(set(heard))

    fake_providers.script("claude").before_answer = keep_the_slow_answer
    resource = fake_providers.resource("claude", **FAST)
    tasks = with_prompts(store, ids)
    report = draft_with_provider(store, resource, tasks, run_id="run-1", on_task=hear)
    assert heard_by_the_slow_answer == [fast]
    assert heard == report.tasks and set(heard) == set(ids) and slow in heard
    assert {task.outcome for task in heard.values()} == {"drafted"}

    # Again, with a task the batch is not to draft: reused, and not drafting.
    heard.clear()
    other = add_handlers(store, "svc.voting", 1)
    report = draft_with_provider(store, resource, tasks, run_id="run-2", others=other, on_task=hear)
    assert heard == report.tasks
    assert {t: task.outcome for t, task in heard.items()} == {
        **dict.fromkeys(ids, "reused"),
        other[0]: "not_drafting",
    }


def figures_shown(instance: dg.DagsterInstance, asset: str, task_ids: list[str]) -> set[str]:
    """The tasks whose partition of `asset` shows its figures, not `in progress`."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(dg.AssetKey(asset), asset_partitions=task_ids), limit=1000
    ).records
    return {
        record.partition_key
        for record in records
        if record.asset_materialization is not None
        and record.asset_materialization.metadata["this_run"].value != "in progress"
        and record.partition_key is not None
    }


def test_figures_are_recorded_while_the_provider_is_still_called(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
) -> None:
    """Claude's answer for one task is kept at the server until its other tasks' figures are
    in the run's event log (or the hold's limit passes): they are written while claude is
    still being called, not once its whole batch is done."""
    ids = add_handlers(store, "svc.streamed", 4)
    slow, fast = ids[0], ids[1:]
    shown_by_the_slow_answer: list[set[str]] = []

    def keep_the_slow_answer(prompt: str) -> None:
        if "Symbol: handler_0\n" not in prompt:
            return
        deadline = time.monotonic() + HOLD_LIMIT_S
        pause = threading.Event()
        while (shown := figures_shown(instance, "claude_draft", fast)) != set(fast):
            if time.monotonic() > deadline:
                break
            pause.wait(0.02)
        shown_by_the_slow_answer.append(shown)

    fake_providers.script("claude").before_answer = keep_the_slow_answer
    providers = {
        spec.resource_key: fake_providers.resource(spec.name, **FAST) for spec in SHIPPED_PROVIDERS
    }
    run = materialize_tasks(instance, store.database_url, ids, providers=providers)
    assert run.success
    assert shown_by_the_slow_answer == [set(fast)]

    # In the event log: each partition's output first, then exactly one figures event.
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=10_000
    ).records
    for spec in SHIPPED_PROVIDERS:
        shown = [
            (record.partition_key, record.asset_materialization.metadata["this_run"].value)
            for record in records
            if record.asset_materialization is not None
            and record.asset_materialization.asset_key == dg.AssetKey(spec.asset_name)
        ]
        outputs = [key for key, this_run in shown if this_run == "in progress"]
        figures = [key for key, this_run in shown if this_run != "in progress"]
        assert sorted(outputs) == sorted(figures) == sorted(ids)
        assert shown[: len(ids)] == [(key, "in progress") for key in outputs]
        if spec.name == "claude":
            assert figures[-1] == slow


class StoreLostProvider(DownProvider):
    """A provider whose batch breaks off: the store is lost as its calls would begin."""

    def generate_each(
        self,
        requests: list[DraftRequest],
        on_start: OnStart | None = None,
        call_log: CallLog | None = None,
        budget: DailyBudget | None = None,
    ) -> Iterator[Outcome]:
        raise StoreUnavailable(f"{self.name}: the draft store went away (a test's outage)")


def test_a_provider_that_breaks_off_fails_the_step_after_the_others_figures(
    instance: dg.DagsterInstance, store: DraftStore, data_dir: Path
) -> None:
    """The step fails with the broken provider's error, and still shows what the other
    providers drafted for every task."""
    ids = add_handlers(store, "svc.broken", 3)
    lost = down_provider("claude")
    broken = StoreLostProvider(**lost.model_dump())
    with pytest.raises(StoreUnavailable, match="claude: the draft store went away"):
        materialize_tasks(instance, store.database_url, ids, providers={"claude_llm": broken})
    for spec in SHIPPED_PROVIDERS:
        shown = figures_shown(instance, spec.asset_name, ids)
        assert shown == (set() if spec.name == "claude" else set(ids)), spec.name
