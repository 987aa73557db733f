"""Batch mode end to end: the drafting step submits one batch per provider to the fake server's
batch endpoints, `provider_batches_sensor` sees it end and requests the collecting run, which
stores each answer once at the batch price and holds the ballot; claims keep live runs off the
tasks meanwhile."""

import logging
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner
from pydantic import PrivateAttr
from sqlalchemy import func, select, update

from drafts_pipeline.cli import main
from drafts_pipeline.definitions import ASSETS, build_resources, defs
from drafts_pipeline.defs.drafting.assets import HELD
from drafts_pipeline.defs.drafting.batch_sensors import (
    BATCH_POLL_INTERVAL_S,
    COLLECT_CONFIG,
    batch_tag,
    collection_requests,
    plan_collection,
    provider_batches_sensor,
)
from drafts_pipeline.defs.drafting.jobs import draft_tasks_job
from drafts_pipeline.defs.drafting.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    TASK_PARTITIONS_NAME,
    range_tags,
)
from drafts_pipeline.drafting import batch_collect
from drafts_pipeline.drafting.batch_collect import BATCH_ITEM_ERROR, collect_batches
from drafts_pipeline.drafting.batch_submit import CLAIM_MARGIN, submit_batch
from drafts_pipeline.drafting.estimates import call_estimator
from drafts_pipeline.drafting.requests import draft_request
from drafts_pipeline.errors import ConfigurationError, DraftsError
from drafts_pipeline.llm.budget import DailyBudget, daily_caps, utc_day
from drafts_pipeline.llm.generation import CallAttempt, TokenUsage
from drafts_pipeline.llm.pricing import cost_usd, resolve_price
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS, provider_resource
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.batches import HeldBatch, NewBatch
from drafts_pipeline.store.drafts import FinishedCall
from drafts_pipeline.store.models import DraftClaim, DraftVersion, LLMCall, ProviderBatch, utcnow
from drafts_pipeline.store.schema import engine_for
from drafts_pipeline_tests.factories import make_draft, make_task, with_prompts
from drafts_pipeline_tests.fake_providers import FakeProviderServer, Fault, FixedUsage
from drafts_pipeline_tests.graph_runs import materialize_tasks
from drafts_pipeline_tests.provider_doubles import HookedOpenAIProvider

FAST: dict[str, Any] = {"initial_delay_s": 0.01, "max_delay_s": 0.05, "requests_per_minute": 60_000}
BATCH = {"ops": {"provider_drafts": {"config": {"submit": "batch"}}}}
NAMES = [spec.name for spec in SHIPPED_PROVIDERS]
# What the fake server reports for every answer, live or in a batch, so costs are round figures.
USAGE = FixedUsage(input_tokens=1_000, output_tokens=200)


@pytest.fixture
def server(fake_providers: FakeProviderServer) -> FakeProviderServer:
    for name in NAMES:
        fake_providers.script(name).usage = USAGE
    return fake_providers


def add_tasks(store: DraftStore, count: int) -> list[str]:
    ids = [f"bulk.module.handler_{i}" for i in range(count)]
    store.add_tasks(
        [make_task(task_id, code=f"def handler_{i}(event, context=None):\n    return event\n")
         for i, task_id in enumerate(ids)]
    )  # fmt: skip
    return ids


class LenientOpenAIProvider(HookedOpenAIProvider):
    """Kimi's resource: its SDK client parses answers leniently, as in production (Moonshot's
    file objects carry a status outside OpenAI's schema). A class default, because Dagster
    builds a run's resources anew and the instance's private settings do not follow."""

    _strict: bool = PrivateAttr(default=False)


def providers_of(server: FakeProviderServer, **kimi_settings: Any) -> dict[str, object]:
    """Live resources on the fake server (Kimi's with `kimi_settings` besides)."""
    kimi = next(spec for spec in SHIPPED_PROVIDERS if spec.name == "kimi")
    resources: dict[str, object] = {
        spec.resource_key: server.resource(spec.name, **FAST) for spec in SHIPPED_PROVIDERS
    }
    resources[kimi.resource_key] = LenientOpenAIProvider(
        name=kimi.name,
        model=kimi.default_model,
        api_key=server.script(kimi.name).api_key,
        api_key_env_var=kimi.key_env,
        base_url=server.base_url(kimi.name),
        **FAST,
        **kimi_settings,
    )
    return resources


def job_over(
    store: DraftStore, server: FakeProviderServer, **kimi_settings: Any
) -> dg.JobDefinition:
    """`draft_tasks` as the daemon runs it, with the fake server's providers."""
    providers = providers_of(server, **kimi_settings)
    defs = dg.Definitions(
        assets=ASSETS,
        jobs=[draft_tasks_job],
        resources={**build_resources("live", store.database_url), **providers},
        executor=dg.in_process_executor,
    )
    return defs.resolve_job_def(draft_tasks_job.name)


def run(
    instance: dg.DagsterInstance,
    store: DraftStore,
    server: FakeProviderServer,
    ids: list[str],
    run_config: dict | None = None,
    tags: dict[str, str] | None = None,
    **kimi_settings: Any,
) -> dg.ExecuteInProcessResult:
    new = [k for k in ids if not instance.has_dynamic_partition(TASK_PARTITIONS_NAME, k)]
    instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, new)
    return job_over(store, server, **kimi_settings).execute_in_process(
        instance=instance,
        tags={**range_tags(ids[0], ids[-1]), **(tags or {})},
        run_config=run_config,
        raise_on_error=False,
    )


def tick(
    instance: dg.DagsterInstance, store: DraftStore, server: FakeProviderServer
) -> dg.SensorResult:
    # A context manager: the providers' resources close their SDK clients at its end.
    with dg.build_sensor_context(
        instance=instance, resources={"store": store, **providers_of(server)}
    ) as context:
        # As the daemon evaluates it (a direct call passes the resources as arguments).
        data = provider_batches_sensor.evaluate_tick(context)
    return dg.SensorResult(run_requests=data.run_requests, skip_reason=data.skip_message)


def collect(
    instance: dg.DagsterInstance,
    store: DraftStore,
    server: FakeProviderServer,
    request: dg.RunRequest,
) -> dg.ExecuteInProcessResult:
    """Run what the sensor requested, as the daemon would."""
    result = job_over(store, server).execute_in_process(
        instance=instance, tags=request.tags, run_config=request.run_config, raise_on_error=False
    )
    assert result.success
    return result


def batches(store: DraftStore) -> dict[str, ProviderBatch]:
    with store._session() as session:
        rows = session.scalars(select(ProviderBatch).order_by(ProviderBatch.id)).all()
    return {row.provider: row for row in rows}


def claims(store: DraftStore) -> list[tuple[str, str, str]]:
    with store._session() as session:
        return list(
            session.execute(select(DraftClaim.task_id, DraftClaim.provider, DraftClaim.run_id))
        )


def count(store: DraftStore, model: type) -> int:
    with store._session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def this_run(instance: dg.DagsterInstance, asset: str, task_id: str) -> str:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(dg.AssetKey(asset), asset_partitions=[task_id]), limit=1
    ).records
    materialisation = records[0].asset_materialization
    assert materialisation is not None
    return str(materialisation.metadata["this_run"].value)


def run_log(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(
        event.user_message for event in instance.all_logs(run_id) if event.user_message
    )


def live_requests(server: FakeProviderServer) -> dict[str, int]:
    return {name: server.script(name).calls for name in NAMES}


# USD per million tokens in a batch, by hand from the price table: half of claude-sonnet-5-5's
# and gpt-6.2-sol's 2 in / 10 out, 60% of kimi-k3's 3 in / 15 out (Moonshot's batch price).
BATCH_COST = {
    "claude": Decimal("0.001000") + Decimal("0.001000"),  # 1000 x $1 + 200 x $5, per million
    "openai": Decimal("0.001000") + Decimal("0.001000"),
    "kimi": Decimal("0.001800") + Decimal("0.001800"),  # 1000 x $1.8 + 200 x $9
}
LIVE_COST = {"claude": Decimal("0.004"), "openai": Decimal("0.004"), "kimi": Decimal("0.006")}


def test_a_batch_submitted_by_run_config_is_collected_once_at_the_batch_price(
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = sqlite_store
    ids = add_tasks(store, 4)
    submitted = run(instance, store, server, ids, BATCH)
    assert submitted.success

    # No live call; one batch per provider, holding every task; no draft yet.
    assert live_requests(server) == {name: 0 for name in NAMES}
    assert {name: len(server.script(name).batches) for name in NAMES} == dict.fromkeys(NAMES, 1)
    rows = batches(store)
    assert {row.status for row in rows.values()} == {"in_progress"}
    assert all(row.task_ids == ids and row.run_id == submitted.run_id for row in rows.values())
    prompts = store.tasks_by_id(ids)
    assert rows["claude"].prompt_hashes == [prompts[t].prompt_hash for t in ids]
    assert count(store, DraftVersion) == 0 and count(store, LLMCall) == 0
    assert sorted(claims(store)) == sorted(
        (task_id, name, rows[name].holder) for task_id in ids for name in NAMES
    )
    expires = rows["claude"].expires_at
    assert expires is not None
    with store._session() as session:
        lease = session.scalar(select(func.min(DraftClaim.lease_expires_at)))
    assert lease is not None and lease.replace(tzinfo=None) == (expires + CLAIM_MARGIN).replace(
        tzinfo=None
    )
    # The ballot left the tasks to their batches; the run says what it did.
    assert store.task_ids("drafting") == ids
    assert {t.attempts for t in store.tasks_by_id(ids).values()} == {0}
    for spec in SHIPPED_PROVIDERS:
        batch_id = rows[spec.name].batch_id
        assert this_run(instance, spec.asset_name, ids[0]) == f"submitted in batch {batch_id}"
        assert f"submitted in provider batch {batch_id}" in run_log(instance, submitted.run_id)

    # The batches end; the sensor's tick asks once and requests one run over the four tasks.
    result = tick(instance, store, server)
    [request] = result.run_requests or []
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (ids[0], ids[-1])
    assert request.run_config == COLLECT_CONFIG
    assert {row.status for row in batches(store).values()} == {"ended"}
    collected = collect(instance, store, server, request)

    assert live_requests(server) == {name: 0 for name in NAMES}
    assert store.task_ids("voting") == ids
    assert claims(store) == []
    assert {row.status for row in batches(store).values()} == {"collected"}
    with store._session() as session:
        drafts = session.scalars(select(DraftVersion)).all()
        calls = session.scalars(select(LLMCall)).all()
    assert Counter((d.task_id, d.provider, d.version) for d in drafts) == Counter(
        {(t, name, 1): 1 for t in ids for name in NAMES}
    )
    for draft in drafts:
        assert draft.status == "valid" and draft.label is not None
        assert (
            draft.cost_usd
            == BATCH_COST[draft.provider]
            == LIVE_COST[draft.provider]
            * (Decimal("0.6") if draft.provider == "kimi" else Decimal("0.5"))
        )
        assert draft.prompt_hash == prompts[draft.task_id].prompt_hash
        assert draft.run_id == collected.run_id and draft.latency_ms is None
    assert len(calls) == 12
    assert all(c.cost_usd == BATCH_COST[c.provider] and c.run_id == collected.run_id for c in calls)
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    usage = store.usage_between(day, day + timedelta(days=1))
    assert sum(row["calls"] for row in usage) == 12
    assert sum(row["cost_usd"] for row in usage) == 4 * sum(BATCH_COST.values())
    for spec in SHIPPED_PROVIDERS:
        batch_id = rows[spec.name].batch_id
        assert this_run(instance, spec.asset_name, ids[-1]) == f"collected from batch {batch_id}"
    # What the providers kept of the batches is deleted: Claude's batch, the input and result
    # files of OpenAI's and Kimi's (their batch objects cannot be deleted).
    for name in NAMES:
        kept = [] if name == "claude" else [rows[name].batch_id]
        assert server.batch_book.held(name) == (kept, [])

    # Nothing left to collect; collecting again stores and records nothing more.
    assert not tick(instance, store, server).run_requests
    collect(instance, store, server, request)
    assert (count(store, DraftVersion), count(store, LLMCall)) == (12, 12)


@pytest.mark.parametrize("second_reads", ["before_the_discard", "after_the_discard"])
def test_two_collections_of_one_batch_store_each_answer_once(
    second_reads: str,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both see the batch holding the tasks (as two runs that start together do): the second
    stores no draft and records no call, whether it reads the results before the first has
    deleted the batch at the provider or finds it gone."""
    store = sqlite_store
    if second_reads == "before_the_discard":
        monkeypatch.setattr(batch_collect, "_discard", lambda provider, batch: None)
    ids = add_tasks(store, 3)
    tasks = with_prompts(store, ids)
    claude = server.resource("claude", **FAST)
    report = submit_batch(store, claude, tasks, run_id="run-submit")
    assert report.outcomes["submitted"] == 3
    [row] = batches(store).values()
    store.batch_polled(row.id, "ended")
    seen = store.finished_batches_holding(ids, "claude")
    monkeypatch.setattr(
        DraftStore, "finished_batches_holding", lambda self, task_ids, provider: list(seen)
    )
    first = collect_batches(store, claude, tasks, run_id="run-a")
    second = collect_batches(store, claude, tasks, run_id="run-b")
    assert first.outcomes["valid"] == 3 and second.outcomes["valid"] == 0
    assert second.outcomes["superseded"] == 3
    assert (count(store, DraftVersion), count(store, LLMCall)) == (3, 3)
    assert store.settle_batch(row.id)
    gone = second_reads == "after_the_discard"
    assert server.batch_book.held("claude")[0] == ([] if gone else [row.batch_id])


def test_valid_drafts_are_reused_not_sent_again(
    sqlite_store: DraftStore, server: FakeProviderServer
) -> None:
    store = sqlite_store
    ids = add_tasks(store, 3)
    claude = server.resource("claude", **FAST)
    # Another prompt's valid draft, stored before the task's prompt was built (the store
    # refuses it once the task has another prompt), is not reusable.
    assert store.add_draft(make_draft(ids[1], "claude", settings_hash=claude.settings_hash()))
    tasks = with_prompts(store, ids)
    same = make_draft(
        ids[0], "claude", prompt_hash=tasks[0].prompt_hash, settings_hash=claude.settings_hash()
    )
    assert store.add_draft(same) is not None

    report = submit_batch(store, claude, tasks, run_id="run-1")
    assert (report.outcomes["reused"], report.outcomes["submitted"]) == (1, 2)
    [sent] = server.script("claude").batches
    assert [custom_id for custom_id, _ in sent.items] == ["0", "1"]
    [row] = batches(store).values()
    assert row.task_ids == ids[1:] and sorted(claims(store)) == [
        (task_id, "claude", row.holder) for task_id in ids[1:]
    ]
    assert report.tasks[ids[0]].outcome == "reused"

    # With every draft reusable, nothing is sent and no batch is left behind.
    again = submit_batch(store, claude, tasks[:1], run_id="run-2")
    assert again.outcomes["reused"] == 1 and len(server.script("claude").batches) == 1
    assert len(batches(store)) == 1 and len(claims(store)) == 2


def test_an_expired_batch_returns_its_tasks_to_drafting_and_a_live_run_then_drafts_them(
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
) -> None:
    store = sqlite_store
    ids = add_tasks(store, 3)
    for name in NAMES:
        server.script(name).batch_expire = True
    assert run(instance, store, server, ids, BATCH).success
    [request] = tick(instance, store, server).run_requests or []
    assert {row.status for row in batches(store).values()} == {"expired"}
    collect(instance, store, server, request)

    assert store.task_ids("drafting") == ids
    assert claims(store) == [] and count(store, DraftVersion) == 0 and count(store, LLMCall) == 0
    assert {row.status for row in batches(store).values()} == {"collected"}
    batch_id = batches(store)["openai"].batch_id
    assert this_run(instance, "openai_draft", ids[1]).startswith(f"expired in batch {batch_id}")
    # Then the ballot works as for live drafts: the next (live) run drafts and moves them.
    again = run(instance, store, server, ids)
    assert again.success and store.task_ids("voting") == ids
    assert live_requests(server) == dict.fromkeys(NAMES, 3)


def test_an_errored_item_gets_a_failed_draft_and_the_others_still_make_the_quorum(
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
) -> None:
    store = sqlite_store
    ids = add_tasks(store, 3)
    server.script("claude").batch_item_errors = {1: "server_error"}
    assert run(instance, store, server, ids, BATCH).success
    [request] = tick(instance, store, server).run_requests or []
    collect(instance, store, server, request)

    failed = store.latest_drafts([ids[1]], "claude")[ids[1]]
    assert failed.status == "failed" and failed.cost_usd is None
    assert failed.validation["provider"]["error_type"] == BATCH_ITEM_ERROR
    assert store.task_ids("voting") == ids
    with store._session() as session:
        errors = session.scalars(select(LLMCall.error_type).where(LLMCall.task_id == ids[1])).all()
    assert sorted(errors, key=str) == sorted([BATCH_ITEM_ERROR, None, None], key=str)


def test_an_item_billed_without_readable_content_costs_its_batch_price_in_the_call_log(
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
) -> None:
    """The provider answered the item and billed it, but its content could not be read: a
    failed draft, and a call row with the tokens at the batch price, which the spend counts."""
    store = sqlite_store
    ids = add_tasks(store, 2)
    server.script("openai").batch_item_errors = {1: "unreadable"}
    assert run(instance, store, server, ids, BATCH).success
    [request] = tick(instance, store, server).run_requests or []
    collect(instance, store, server, request)

    failed = store.latest_drafts([ids[1]], "openai")[ids[1]]
    assert failed.status == "failed"
    with store._session() as session:
        rows = session.scalars(select(LLMCall).where(LLMCall.provider == "openai")).all()
    by_task = {row.task_id: row for row in rows}
    answered, unreadable = by_task[ids[0]], by_task[ids[1]]
    assert unreadable.error_type == BATCH_ITEM_ERROR
    assert unreadable.request_id  # so that a taken-over task's billed item is recorded once
    assert failed.cost_usd == unreadable.cost_usd
    assert unreadable.output_tokens and unreadable.input_tokens
    assert unreadable.cost_usd is not None and unreadable.cost_usd > 0
    billed = TokenUsage(
        unreadable.input_tokens, unreadable.output_tokens, unreadable.cached_tokens or 0
    )
    price = resolve_price(unreadable.model)
    assert price is not None
    assert unreadable.cost_usd == cost_usd(billed, price.batch())  # the batch price
    spent = store.spend_between(utcnow() - timedelta(days=1), utcnow() + timedelta(days=1))
    assert spent["openai"].cost_usd == answered.cost_usd + unreadable.cost_usd


def test_answers_and_errors_about_an_old_source_are_recorded_and_not_stored(
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
) -> None:
    """The tasks' source changes while Claude's batch runs (after the others' drafts came in):
    what the batch then says about them, answers and an error alike, is recorded in the call
    log, and none of it becomes a draft of the new ballot."""
    store = sqlite_store
    ids = add_tasks(store, 3)
    claude = server.script("claude")
    claude.batch_polls_until_done = 100
    claude.batch_item_errors = {1: "server_error"}
    assert run(instance, store, server, ids, BATCH).success
    [request] = tick(instance, store, server).run_requests or []  # OpenAI's and Kimi's
    collect(instance, store, server, request)
    changed = [
        make_task(task_id, code=f"def handler_{i}(event, context=None, retries=0):\n    pass\n")
        for i, task_id in enumerate(ids)
    ]
    assert store.sync_tasks(changed).updated == ids
    assert {task.ballot for task in store.tasks_by_id(ids).values()} == {2}

    [pending] = claude.batches
    pending.polls_until_done = pending.polls + 1
    with store._session() as session, session.begin():
        session.execute(
            update(ProviderBatch).values(
                polled_at=utcnow() - timedelta(seconds=BATCH_POLL_INTERVAL_S + 1)
            )
        )
    [request] = tick(instance, store, server).run_requests or []
    collect(instance, store, server, request)

    assert store.task_ids("drafting") == ids and claims(store) == []
    with store._session() as session:
        drafts = session.scalars(select(DraftVersion).where(DraftVersion.provider == "claude"))
        assert drafts.all() == []
        calls = session.scalars(select(LLMCall.error_type).where(LLMCall.provider == "claude"))
        assert sorted(calls.all(), key=str) == sorted([BATCH_ITEM_ERROR, None, None], key=str)
    for task_id in ids:
        assert this_run(instance, "claude_draft", task_id).endswith(
            "for a prompt the task no longer has"
        )
    # The next run drafts the new source live: Claude's first draft, the others' second.
    assert run(instance, store, server, ids).success
    assert store.task_ids("voting") == ids
    assert {d.version for d in store.latest_drafts(ids, "claude").values()} == {1}


@pytest.mark.parametrize(
    "database",
    ["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])],
)
def test_a_live_run_while_a_batch_is_pending_calls_for_none_of_its_tasks(
    database: str,
    request: pytest.FixtureRequest,
    instance: dg.DagsterInstance,
    server: FakeProviderServer,
    data_dir: Path,
) -> None:
    store = DraftStore(database_url=request.getfixturevalue(f"{database}_url"))
    store.upgrade()
    ids = add_tasks(store, 3)
    server.script("claude").batch_polls_until_done = 100
    assert run(instance, store, server, ids, BATCH).success
    holders = {row.holder for row in batches(store).values()}

    live = run(instance, store, server, ids)
    assert live.success
    assert live_requests(server) == dict.fromkeys(NAMES, 0)
    assert {holder for *_, holder in claims(store)} == holders and len(claims(store)) == 9
    assert store.task_ids("drafting") == ids
    assert {t.attempts for t in store.tasks_by_id(ids).values()} == {0}
    assert this_run(instance, "claude_draft", ids[0]) == "claimed elsewhere"
    engine_for(store.database_url).dispose()


@pytest.mark.parametrize("how", ["tag", "setting"])
def test_the_run_tag_or_the_setting_picks_batch_mode(
    how: str,
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = add_tasks(sqlite_store, 2)
    if how == "setting":
        monkeypatch.setenv("DRAFTS_SUBMIT_MODE", "batch")
    tags = {"drafts/submit": "batch"} if how == "tag" else None
    assert run(instance, sqlite_store, server, ids, tags=tags).success
    assert live_requests(server) == dict.fromkeys(NAMES, 0)
    assert len(batches(sqlite_store)) == 3
    # Run config wins over both.
    more = add_tasks(sqlite_store, 3)[2:]
    live = {"ops": {"provider_drafts": {"config": {"submit": "live"}}}}
    assert run(instance, sqlite_store, server, more, live, tags=tags).success
    assert live_requests(server) == dict.fromkeys(NAMES, 1)


def test_a_bad_submit_tag_or_setting_fails_the_run_naming_it(
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = add_tasks(sqlite_store, 1)
    result = run(instance, sqlite_store, server, ids, tags={"drafts/submit": "bulk"})
    failure = result.failure_data_for_node("provider_drafts")
    assert failure is not None and "run tag drafts/submit='bulk' is not one of" in str(
        failure.error
    )
    monkeypatch.setenv("DRAFTS_SUBMIT_MODE", "later")
    result = run(instance, sqlite_store, server, ids)
    failure = result.failure_data_for_node("provider_drafts")
    assert failure is not None and "DRAFTS_SUBMIT_MODE='later' is not one of" in str(failure.error)
    assert claims(sqlite_store) == [] and live_requests(server) == dict.fromkeys(NAMES, 0)


def test_offline_mode_has_no_batches_and_drafts_offline_saying_so_once(
    instance: dg.DagsterInstance, sqlite_store: DraftStore, data_dir: Path
) -> None:
    ids = add_tasks(sqlite_store, 2)
    result = materialize_tasks(instance, sqlite_store.database_url, ids, run_config=BATCH)
    assert result.success and sqlite_store.task_ids("voting") == ids
    assert batches(sqlite_store) == {}
    said = run_log(instance, result.run_id)
    assert said.count("has no provider batches: this run drafts live (offline)") == 1


def test_a_refused_batch_leaves_failed_drafts_and_no_claim(
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
) -> None:
    ids = add_tasks(sqlite_store, 2)
    server.script("claude").batch_faults.append(Fault("bad_request"))
    assert run(instance, sqlite_store, server, ids, BATCH).success
    rows = batches(sqlite_store)
    assert rows["claude"].status == "failed" and "400" in (rows["claude"].error or "")
    assert rows["openai"].status == "in_progress"
    drafts = sqlite_store.latest_drafts(ids, "claude")
    assert {d.status for d in drafts.values()} == {"failed"}
    assert {provider for _, provider, _ in claims(sqlite_store)} == {"openai", "kimi"}


def test_a_create_whose_outcome_is_unknown_keeps_its_tasks_claimed(
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
) -> None:
    """A create that times out may have made the batch (the fake made it): its tasks stay
    claimed under the `submitting` row, no draft is stored, and a live run leaves them alone
    until an operator releases them."""
    ids = add_tasks(sqlite_store, 2)
    server.script("kimi").fail_batch("create", "timeout", delay_s=0.5)
    assert run(instance, sqlite_store, server, ids, BATCH, timeout_s=0.2).success
    rows = batches(sqlite_store)
    assert rows["kimi"].status == "submitting" and rows["claude"].status == "in_progress"
    assert sorted(t for t, provider, _ in claims(sqlite_store) if provider == "kimi") == ids
    assert sqlite_store.latest_drafts(ids, "kimi") == {}

    assert run(instance, sqlite_store, server, ids).success  # live: kimi's tasks are claimed
    assert server.script("kimi").requests == []


def test_the_sensor_asks_about_a_batch_at_most_once_a_minute(
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
) -> None:
    store = sqlite_store
    ids = add_tasks(store, 2)
    for name in NAMES:
        server.script(name).batch_polls_until_done = 2
    assert run(instance, store, server, ids, BATCH).success

    def retrieves() -> int:
        return sum(
            1
            for name in NAMES
            for r in server.script(name).batch_requests
            if r.path.rsplit("/", 1)[-1] == batches(store)[name].batch_id
        )

    first = tick(instance, store, server)
    assert not first.run_requests and retrieves() == 3
    assert not tick(instance, store, server).run_requests and retrieves() == 3
    with store._session() as session, session.begin():
        session.execute(
            update(ProviderBatch).values(
                polled_at=utcnow() - timedelta(seconds=BATCH_POLL_INTERVAL_S + 1)
            )
        )
    [request] = tick(instance, store, server).run_requests or []
    assert retrieves() == 6 and request.run_config == COLLECT_CONFIG


def test_no_collecting_run_is_asked_for_a_provider_the_job_does_not_draft_with(
    instance: dg.DagsterInstance, sqlite_store: DraftStore, server: FakeProviderServer
) -> None:
    """Kimi left out of DRAFTS_PROVIDERS while its batch ran: the job's runs cannot collect
    it, so the sensor asks for none (a run every tick would collect nothing) until Kimi drafts
    again."""
    store = sqlite_store
    ids = add_tasks(store, 2)
    tasks = with_prompts(store, ids)
    resources = providers_of(server)
    for spec in SHIPPED_PROVIDERS:
        submit_batch(store, resources[spec.resource_key], tasks, run_id="run-1")
    for row in batches(store).values():
        store.batch_polled(row.id, "ended")
    for spec in SHIPPED_PROVIDERS[:2]:
        collect_batches(store, resources[spec.resource_key], tasks, run_id="run-2")
    assert [spec.name for spec in SHIPPED_PROVIDERS[2:]] == ["kimi"]
    log = logging.getLogger(__name__)

    assert collection_requests(instance, store, resources, 100, log, {"claude", "openai"}) == []
    [request] = collection_requests(instance, store, resources, 100, log, set(NAMES))
    assert request.tags[batch_tag(batches(store)["kimi"].id)] == "collect"


def test_collection_runs_share_batches_and_cover_neighbouring_partitions_only() -> None:
    first = ProviderBatch(id=7, task_ids=["t.4", "t.1", "t.2", "t.6"], holder="batch-x")
    second = ProviderBatch(id=8, task_ids=["t.1", "t.2"], holder="batch-y")
    order = {f"t.{i}": i for i in range(8)}
    waiting = [(HeldBatch(first, list(first.task_ids)), 1), (HeldBatch(second, ["t.2"]), 0)]
    requests = plan_collection(waiting, order, 2)
    spans = [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in requests]
    assert spans == [("t.1", "t.2"), ("t.4", "t.4"), ("t.6", "t.6")]
    assert [sorted(k for k in r.tags if k.startswith("drafts/")) for r in requests] == [
        ["drafts/provider_batch_7", "drafts/provider_batch_8"],
        ["drafts/provider_batch_7"],
        ["drafts/provider_batch_7"],
    ]
    assert len({r.run_key for r in requests}) == 3
    # After a failed run, the same batches get runs of other keys.
    again = plan_collection([(waiting[0][0], 4), waiting[1]], order, 2)
    assert not {r.run_key for r in again} & {r.run_key for r in requests}


def test_a_crash_before_the_provider_answers_leaves_a_submitting_row(
    sqlite_store: DraftStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row and the claims come first: a run that dies before the provider's answer
    leaves them, for an operator to see."""
    store = sqlite_store
    ids = add_tasks(store, 2)
    new = NewBatch("claude", "m", "s" * 64, "batch-crashed", "run-1")
    held = store.open_batch(new, [(t, "h") for t in ids], utcnow() + timedelta(hours=30))
    assert held is not None and held.task_ids == ids
    # Another batch or a live run finds the tasks held.
    other = NewBatch("claude", "m", "s" * 64, "batch-other", "run-2")
    assert store.open_batch(other, [(t, "h") for t in ids], utcnow()) is None
    assert store.claim_drafts(ids, "claude", "run-live", 60) == set()
    assert [b.id for b in store.stale_submissions(utcnow() + timedelta(hours=2))] == [held.batch.id]
    assert store.stale_submissions(utcnow() - timedelta(hours=2)) == []

    # An operator releases them.
    monkeypatch.setenv("DRAFTS_DATABASE_URL", store.database_url)
    said = CliRunner().invoke(main, ["batches", "release", str(held.batch.id)])
    assert said.exit_code == 0 and "2 task(s) released, batch marked failed" in said.output
    assert claims(store) == [] and batches(store)["claude"].status == "failed"
    again = CliRunner().invoke(main, ["batches", "release", str(held.batch.id)])
    assert isinstance(again.exception, DraftsError)
    assert "is not submitting (it is failed): nothing released" in str(again.exception)


def test_the_sensor_is_on_by_default_and_looks_once_a_minute() -> None:
    sensor = defs.resolve_sensor_def("provider_batches_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == BATCH_POLL_INTERVAL_S == 60
    assert sensor.job_name == draft_tasks_job.name


@pytest.mark.slow
def test_the_command_line_submits_a_batch_and_collects_it(
    tmp_path: Path, sqlite_url: str, server: FakeProviderServer
) -> None:
    """`run --submit batch`, `batches list`, then `batches collect`, as a user runs them."""
    store = DraftStore(database_url=sqlite_url)
    store.upgrade()
    ids = add_tasks(store, 3)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {"DRAFTS_DATA_DIR": str(tmp_path / "data"), "DRAFTS_DATABASE_URL": sqlite_url}
    env |= {"DRAFTS_LLM_MODE": "live"}
    for spec in SHIPPED_PROVIDERS:
        env[spec.key_env] = server.script(spec.name).api_key or ""
        env[spec.base_url_env] = server.base_url(spec.name)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "drafts_pipeline", *args],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "1 run(s), 3 task(s), 0 failed run(s)" in cli("run", "--submit", "batch")
    assert live_requests(server) == dict.fromkeys(NAMES, 0)
    listed = cli("batches", "list").splitlines()
    assert len(listed) == 3 and all("in_progress: 3 task(s), 3 still held" in n for n in listed)
    said = cli("batches", "collect")
    assert "collecting 3 task(s) from finished batches" in said
    assert store.task_ids("voting") == ids and live_requests(server) == dict.fromkeys(NAMES, 0)
    assert all(
        " collected: 3 task(s), 0 still held" in line
        for line in cli("batches", "list").splitlines()
    )


def test_a_batch_past_the_daily_cap_is_not_sent_and_its_tasks_are_held(
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = sqlite_store
    ids = add_tasks(store, 3)
    # Far below one batch's estimate, for every provider together.
    monkeypatch.setenv("DRAFTS_DAILY_BUDGET_USD", "0.0001")
    result = run(instance, store, server, ids, BATCH)

    assert result.success
    assert {name: len(server.script(name).batches) for name in NAMES} == dict.fromkeys(NAMES, 0)
    assert live_requests(server) == dict.fromkeys(NAMES, 0)
    assert count(store, ProviderBatch) == 0 and claims(store) == []
    assert store.task_ids("drafting") == ids and set(store.held_tasks()) == set(ids)
    for spec in SHIPPED_PROVIDERS:
        assert this_run(instance, spec.asset_name, ids[0]) == HELD
    said = run_log(instance, result.run_id)
    assert said.count("at batch price; 3 task(s) left in drafting, no draft stored") == 3


def test_a_pending_batch_counts_at_its_estimate_until_collected_then_at_its_cost(
    sqlite_store: DraftStore, server: FakeProviderServer
) -> None:
    store = sqlite_store
    ids = add_tasks(store, 6)
    tasks = with_prompts(store, ids)
    first, second = tasks[:3], tasks[3:]
    claude = server.resource("claude", **FAST)
    live = call_estimator(store, claude)
    batched = live.batched()
    calls = [draft_request(task).texts for task in first]
    estimate = batched.estimate(calls).cost_usd
    live_estimate = live.estimate(calls).cost_usd
    assert estimate is not None and live_estimate is not None and estimate == live_estimate / 2
    cap = daily_caps("claude", estimate * Decimal("1.5"), None)

    def budget() -> DailyBudget:  # a run's own, as plan_batch makes it
        return DailyBudget("claude", cap, store, batched.cost_usd, {})

    today = utc_day(utcnow())
    sent = submit_batch(store, claude, first, run_id="run-1", estimator=batched, budget=budget())
    assert sent.outcomes["submitted"] == 3 and sent.budget_reached is None
    [row] = batches(store).values()
    assert row.estimated_usd == estimate.quantize(Decimal("1e-8"))
    spend = store.spend_between(*today)["claude"]
    assert (spend.cost_usd, spend.batched_usd) == (0, row.estimated_usd)

    # A second run the same day: its batch and the first's pass the cap together.
    refused = submit_batch(
        store, claude, second, run_id="run-2", estimator=batched, budget=budget()
    )
    assert refused.outcomes["held"] == 3 and refused.budget_reached is not None
    assert "in batches not yet collected" in refused.budget_reached.reason
    assert {task.outcome for task in refused.tasks.values()} == {"held"}
    assert len(server.script("claude").batches) == 1 and count(store, ProviderBatch) == 1
    assert {task_id for task_id, *_ in claims(store)} == set(ids[:3])
    assert set(store.held_tasks()) == set(ids[3:])

    # Ended, still counted at its estimate; once collected, at what its items cost.
    store.batch_polled(row.id, "ended")
    assert store.spend_between(*today)["claude"].batched_usd == row.estimated_usd
    collect_batches(store, claude, first, run_id="run-3")
    assert batches(store)["claude"].status == "collected"
    spend = store.spend_between(*today)["claude"]
    assert (spend.cost_usd, spend.batched_usd) == (3 * BATCH_COST["claude"], 0)


def test_a_provider_set_to_live_drafts_live_in_a_batch_run(
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
) -> None:
    ids = add_tasks(sqlite_store, 2)
    result = run(instance, sqlite_store, server, ids, BATCH, submit_mode="live")

    assert result.success
    assert live_requests(server) == {"claude": 0, "openai": 0, "kimi": 2}
    assert {name: len(server.script(name).batches) for name in NAMES} == {
        "claude": 1, "openai": 1, "kimi": 0,
    }  # fmt: skip
    assert sorted(batches(sqlite_store)) == ["claude", "openai"]
    assert {d.status for d in sqlite_store.latest_drafts(ids, "kimi").values()} == {"valid"}
    assert this_run(instance, "kimi_draft", ids[0]) == "drafted"
    said = "kimi: drafts live in this batch-mode run (its submit_mode is live: providers file or "
    assert said + "DRAFTS_KIMI_SUBMIT_MODE)" in run_log(instance, result.run_id)


def test_a_bad_submit_mode_of_a_provider_fails_its_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kimi = next(spec for spec in SHIPPED_PROVIDERS if spec.name == "kimi")
    monkeypatch.setenv("DRAFTS_KIMI_SUBMIT_MODE", "LIVE")
    assert provider_resource(kimi, "live").always_live()
    monkeypatch.setenv("DRAFTS_KIMI_SUBMIT_MODE", "batch-only")
    with pytest.raises(ConfigurationError, match=r"\(DRAFTS_KIMI_SUBMIT_MODE\) must be `live`"):
        provider_resource(kimi, "live").setup_for_execution(dg.build_init_resource_context())


@pytest.mark.parametrize("taken_over", ["one_task", "every_task"])
def test_answers_for_tasks_live_runs_took_over_after_the_lease_are_recorded_once(
    taken_over: str,
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
) -> None:
    """No daemon for longer than the batches' leases: a live run took their claims on some
    tasks over and drafted them. The batches' answers for those tasks were paid: each is
    recorded in the call log once, with no draft, whether a collecting run still has other
    tasks to collect (one task taken over) or the sensor settles a batch that holds none
    (every task); either way the batches are then deleted at the provider."""
    store = sqlite_store
    ids = add_tasks(store, 2)
    assert run(instance, store, server, ids, BATCH).success
    with store._session() as session, session.begin():
        session.execute(update(DraftClaim).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    gone = ids[:1] if taken_over == "one_task" else ids
    assert run(instance, store, server, gone).success
    assert store.task_ids("voting") == gone

    requests = tick(instance, store, server).run_requests or []
    if taken_over == "one_task":
        [request] = requests
        collect(instance, store, server, request)
    else:
        assert requests == []
    assert not tick(instance, store, server).run_requests

    assert store.task_ids("voting") == ids
    assert {row.status for row in batches(store).values()} == {"collected"}
    with store._session() as session:
        calls = Counter(session.execute(select(LLMCall.task_id, LLMCall.provider)).all())
        versions = session.execute(select(DraftVersion.task_id, DraftVersion.version)).all()
    # Every task: one answer from its provider's batch; a task taken over: one live call more.
    assert calls == Counter(
        {(task_id, name): 2 if task_id in gone else 1 for task_id in ids for name in NAMES}
    )
    assert {version for _, version in versions} == {1}
    for name in NAMES:
        kept = [] if name == "claude" else [batches(store)[name].batch_id]
        assert server.batch_book.held(name) == (kept, [])


def test_a_billed_unreadable_item_of_a_task_taken_over_is_recorded_once(
    instance: dg.DagsterInstance,
    sqlite_store: DraftStore,
    server: FakeProviderServer,
    data_dir: Path,
) -> None:
    """A live run took every task over after the batches' lease; one of OpenAI's items had
    been answered, billed, but with no content to read. The sensor settles the batch: that
    item's call is recorded once, with its cost, as an answered one would be."""
    store = sqlite_store
    ids = add_tasks(store, 2)
    server.script("openai").batch_item_errors = {0: "unreadable"}
    assert run(instance, store, server, ids, BATCH).success
    with store._session() as session, session.begin():
        session.execute(update(DraftClaim).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    assert run(instance, store, server, ids).success
    assert tick(instance, store, server).run_requests == []
    assert not tick(instance, store, server).run_requests

    with store._session() as session:
        errored = session.scalars(
            select(LLMCall).where(LLMCall.error_type == BATCH_ITEM_ERROR)
        ).all()
    [billed] = errored
    assert billed.provider == "openai" and billed.request_id
    assert billed.cost_usd is not None and billed.cost_usd > 0
    assert {row.status for row in batches(store).values()} == {"collected"}


def test_answers_collected_after_a_live_run_took_the_task_are_counted_once(
    sqlite_store: DraftStore,
) -> None:
    """Past the batch's lease a live run drafted the task: the batch's answer is stored as no
    draft, but its call was paid and is recorded, once however often it is collected."""
    store = sqlite_store
    [task_id] = add_tasks(store, 1)
    answered = CallAttempt(
        provider="claude", model="claude-sonnet-5-5", attempt=1, started_at=utcnow(),
        status_code=200, request_id="msg_late_1", cost_usd=Decimal("0.002"),
    )  # fmt: skip
    late = [FinishedCall(answered, utcnow())]
    for _ in range(2):
        assert not store.release_item(task_id, "claude", "batch-lapsed", late, run_id="r-1")
        record = make_draft(task_id, "claude", run_id="r-1")
        assert store.add_draft(record, holder="batch-lapsed", calls=late) is None
    with store._session() as session:
        rows = session.scalars(select(LLMCall).where(LLMCall.task_id == task_id)).all()
    assert [(row.request_id, row.cost_usd) for row in rows] == [("msg_late_1", Decimal("0.002"))]
    assert store.latest_drafts([task_id], "claude") == {}
