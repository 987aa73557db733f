"""The whole graph in live mode against the fake provider server: faults, outages, secrecy."""

import json
import logging
from collections import Counter
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import func, select

from drafts_pipeline.definitions import ASSETS, build_resources
from drafts_pipeline.defs.drafting.jobs import draft_tasks_job
from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME, range_tags
from drafts_pipeline.defs.voting.results import accepted_drafts, provider_leaderboard, votes
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DraftClaim, DraftVersion, LLMCall
from drafts_pipeline.store.votes import VoteInput
from drafts_pipeline.voting_set import export_voting_set, voting_ready_frame
from drafts_pipeline_tests.factories import make_task
from drafts_pipeline_tests.fake_providers import FakeProviderServer, Fault, unused_base_url
from drafts_pipeline_tests.graph_runs import materialize_tasks

MAX_ATTEMPTS = 6
FAST_RETRIES = {
    "initial_delay_s": 0.01,
    "max_delay_s": 0.05,
    "max_attempts": MAX_ATTEMPTS,
    "requests_per_minute": 60_000,
}
TRANSIENT = {
    "claude": Fault("overloaded"),
    "openai": Fault("rate_limit", retry_after_ms="20"),
    "kimi": Fault("server_error"),
}


def live_providers(server: FakeProviderServer, **overrides: object) -> dict[str, object]:
    return {
        spec.resource_key: server.resource(spec.name, **{**FAST_RETRIES, **overrides})
        for spec in SHIPPED_PROVIDERS
    }


def add_tasks(store: DraftStore, count: int) -> list[str]:
    ids = [f"svc.module.handler_{i:03d}" for i in range(count)]
    store.add_tasks(
        [make_task(task_id, code=f"def handler_{i:03d}(event, context=None):\n    return event\n")
         for i, task_id in enumerate(ids)]
    )  # fmt: skip
    return ids


@pytest.mark.slow
def test_fifty_tasks_with_thirty_percent_transient_faults_all_reach_voting(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
) -> None:
    for name, fault in TRANSIENT.items():
        script = fake_providers.script(name)
        script.fault_probability, script.random_fault = 0.3, fault
    ids = add_tasks(store, 50)
    result = materialize_tasks(
        instance, store.database_url, ids, providers=live_providers(fake_providers)
    )
    assert result.success
    assert store.task_ids("voting") == ids

    for name in TRANSIENT:
        statuses = Counter(fake_providers.script(name).statuses)
        assert statuses[200] >= 45, (name, statuses)
        assert sum(n for status, n in statuses.items() if status != 200) > 0, (name, statuses)
    with store._session() as session:
        versions = session.execute(
            select(DraftVersion.task_id, DraftVersion.provider, func.count())
            .group_by(DraftVersion.task_id, DraftVersion.provider)
        ).all()  # fmt: skip
        calls = Counter(session.execute(select(LLMCall.task_id, LLMCall.provider)).all())
    assert len(versions) == 150 and {n for *_, n in versions} == {1}
    assert max(calls.values()) <= MAX_ATTEMPTS
    # Every request the server saw is a row; a connection dropped before the server counted
    # the request is a row too, so there may be more rows than requests, never fewer.
    assert sum(calls.values()) >= sum(fake_providers.script(n).calls for n in TRANSIENT)


def test_a_provider_down_for_the_whole_run_leaves_two_drafts_per_task(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
) -> None:
    ids = add_tasks(store, 10)
    providers = live_providers(fake_providers)
    providers["kimi_llm"] = fake_providers.resource(
        "kimi", base_url=unused_base_url("kimi"), **FAST_RETRIES
    )
    result = materialize_tasks(instance, store.database_url, ids, providers=providers)
    assert result.success
    assert store.task_ids("voting") == ids
    for labels in store.ballot_labels(ids).values():
        assert sorted(labels) == ["A", "B"]
    failed = store.latest_drafts(ids, "kimi")
    assert {d.status for d in failed.values()} == {"failed"}
    assert {d.attempts for d in failed.values()} == {MAX_ATTEMPTS}


def test_no_api_key_reaches_logs_tables_metadata_or_exports(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = [fake_providers.script(spec.name).api_key for spec in SHIPPED_PROVIDERS]
    fake_providers.script("claude").fail("overloaded", times=3)
    fake_providers.script("openai").fail("unauthorized", times=1)
    fake_providers.script("kimi").fail("rate_limit", times=2, retry_after="0.01")
    ids = add_tasks(store, 6)
    caplog.set_level(logging.DEBUG)
    materialize_tasks(instance, store.database_url, ids, providers=live_providers(fake_providers))

    every_request = [r for s in fake_providers.scripts.values() for r in s.requests]
    assert any(key in json.dumps(r.headers) for r in every_request for key in keys), (
        "the keys must at least reach the provider, or this test proves nothing"
    )
    drafting_run = result_run_id(instance)
    # What the votes say: the leaderboard and accepted drafts name providers, never a key.
    voting = store.task_ids("voting")
    store.record_votes(
        [VoteInput(f"{t}-{v}", t, v, "A") for t in voting for v in ("ann", "bob", "cy")]
    )
    results = dg.materialize(
        [votes, provider_leaderboard, accepted_drafts],
        instance=instance,
        resources={"store": store},
        run_config={"ops": {"provider_leaderboard": {"config": {"bootstrap_rounds": 20}}}},
    )
    assert len(results.output_for_node("accepted_drafts")) == len(voting) > 0
    texts = {"python logs": caplog.text}
    texts["dagster events"] = "\n".join(
        str(e) for run_id in (drafting_run, results.run_id) for e in instance.all_logs(run_id)
    )
    texts["results"] = "\n".join(
        results.output_for_node(name).to_json()
        for name in ("votes", "provider_leaderboard", "accepted_drafts")
    )
    with store.engine.connect() as connection:
        for table in ("documentation_tasks", "draft_versions", "llm_calls", "votes"):
            rows = connection.exec_driver_sql(f"SELECT * FROM {table}").all()
            texts[table] = "\n".join(map(str, rows))
    frame = voting_ready_frame(store)
    export_voting_set(frame, "jsonl", tmp_path / "set.jsonl")
    export_voting_set(frame, "parquet", tmp_path / "set.parquet")
    texts["jsonl export"] = (tmp_path / "set.jsonl").read_text()
    texts["parquet export"] = pd.read_parquet(tmp_path / "set.parquet").to_json(date_format="iso")
    for records in ("manifest", "stats"):
        texts[f"export {records}"] = (
            data_dir / f"voting_ready_set.parquet.{records}.json"
        ).read_text()
    assert texts["llm_calls"] and texts["dagster events"]
    for where, text in texts.items():
        for key in keys:
            assert key not in text, f"an API key leaked into {where}"
            assert key[-12:] not in text, f"part of an API key leaked into {where}"


def test_a_draft_tasks_run_without_usable_keys_names_them_all_before_any_request(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The `draft_tasks` job as the sensor launches it, with the resources built from the
    environment: no claude or openai key, and kimi's ending in a newline."""
    for spec in SHIPPED_PROVIDERS:
        monkeypatch.delenv(spec.key_env, raising=False)
        monkeypatch.setenv(spec.base_url_env, fake_providers.base_url(spec.name))
    monkeypatch.setenv("MOONSHOT_API_KEY", "sk-run-secret-qvzkx\n")
    ids = add_tasks(store, 3)
    instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, ids)
    defs = dg.Definitions(
        assets=ASSETS,
        jobs=[draft_tasks_job],
        resources=build_resources("live", store.database_url),
        executor=dg.in_process_executor,
    )

    result = defs.resolve_job_def("draft_tasks").execute_in_process(
        instance=instance, tags=range_tags(ids[0], ids[-1]), raise_on_error=False
    )

    assert not result.success
    failure = result.failure_data_for_node("provider_drafts")
    assert failure is not None
    said = str(failure.error)
    assert (
        "API keys: ANTHROPIC_API_KEY (claude) is not set or empty, OPENAI_API_KEY (openai) is "
        "not set or empty, MOONSHOT_API_KEY (kimi) contains a line break; set each" in said
    )
    events = "\n".join(str(event) for event in instance.all_logs(result.run_id))
    # Letters, not digits: the events hold timestamps, ports and run ids.
    assert "secret" not in events and "qvzkx" not in events
    assert [fake_providers.script(spec.name).calls for spec in SHIPPED_PROVIDERS] == [0, 0, 0]
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(LLMCall)).scalar_one() == 0
        assert connection.execute(select(func.count()).select_from(DraftClaim)).scalar_one() == 0
    assert store.task_ids("drafting") == ids


def result_run_id(instance: dg.DagsterInstance) -> str:
    return instance.get_runs(limit=1)[0].run_id


@pytest.mark.slow
def test_a_batch_run_calls_concurrently_within_each_providers_limits(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
) -> None:
    """One run over 24 tasks: each provider's calls overlap, up to its in-flight cap, and start
    no faster than its requests-per-minute pace (both counted at the server)."""
    for spec in SHIPPED_PROVIDERS:
        fake_providers.script(spec.name).latency_s = 0.2
    ids = add_tasks(store, 24)
    limits = {"max_in_flight": 4, "requests_per_minute": 1200}
    result = materialize_tasks(
        instance, store.database_url, ids, providers=live_providers(fake_providers, **limits)
    )
    assert result.success and store.task_ids("voting") == ids
    for spec in SHIPPED_PROVIDERS:
        script = fake_providers.script(spec.name)
        assert script.calls == 24
        assert 2 <= script.max_in_flight <= 4, (spec.name, script.max_in_flight)
        starts = sorted(request.received_at for request in script.requests)
        # 1200 a minute is one start per 50 ms: 24 starts span at least 23 intervals.
        assert starts[-1] - starts[0] >= 23 * 0.05 * 0.9, spec.name
