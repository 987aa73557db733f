"""Reuse of valid drafts, re-calling only failed providers, and `force`."""

from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import select

from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DraftVersion, LLMCall
from drafts_pipeline_tests.factories import make_task
from drafts_pipeline_tests.graph_runs import materialize_tasks
from drafts_pipeline_tests.provider_doubles import down_provider

TASKS = ["lib.a", "lib.b", "lib.c"]
STAY_DRAFTING = {"ops": {"voting_ballot": {"config": {"min_drafts": 4, "max_attempts": 10}}}}


@pytest.fixture
def tasks(store: DraftStore, data_dir: Path) -> list[str]:
    store.add_tasks([make_task(task_id) for task_id in TASKS])
    return TASKS


def calls_per_provider(store: DraftStore) -> Counter[str]:
    with store._session() as session:
        return Counter(session.scalars(select(LLMCall.provider)))


def what_the_run_did(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, str]:
    """partition -> `this_run` of its latest materialisation of `asset` in the run."""
    events = result.asset_materializations_for_node("provider_drafts")
    return {
        e.partition: e.metadata["this_run"].value
        for e in events
        if e.asset_key == dg.AssetKey(asset) and "this_run" in e.metadata
    }


def test_rerun_reuses_valid_drafts_and_makes_no_call(
    instance: dg.DagsterInstance, store: DraftStore, tasks: list[str]
) -> None:
    materialize_tasks(instance, store.database_url, tasks, run_config=STAY_DRAFTING)
    assert calls_per_provider(store) == dict.fromkeys(("claude", "openai", "kimi"), 3)
    again = materialize_tasks(instance, store.database_url, tasks, run_config=STAY_DRAFTING)
    assert calls_per_provider(store) == dict.fromkeys(("claude", "openai", "kimi"), 3)
    assert what_the_run_did(again, "claude_draft") == dict.fromkeys(tasks, "reused")


def test_below_quorum_recalls_only_the_failed_providers(
    instance: dg.DagsterInstance, store: DraftStore, tasks: list[str]
) -> None:
    outage = {"openai_llm": down_provider("openai"), "kimi_llm": down_provider("kimi")}
    materialize_tasks(instance, store.database_url, tasks, providers=outage)
    assert store.task_ids("drafting") == tasks
    first = calls_per_provider(store)
    materialize_tasks(instance, store.database_url, tasks)
    recalled = calls_per_provider(store) - first
    assert recalled == {"openai": 3, "kimi": 3}
    assert store.task_ids("voting") == tasks


def test_force_regenerates_a_new_version_for_drafting_tasks(
    instance: dg.DagsterInstance, store: DraftStore, tasks: list[str]
) -> None:
    materialize_tasks(instance, store.database_url, tasks, run_config=STAY_DRAFTING)
    forced = {
        **STAY_DRAFTING,
        "ops": {**STAY_DRAFTING["ops"], "provider_drafts": {"config": {"force": True}}},
    }
    materialize_tasks(instance, store.database_url, tasks, run_config=forced)
    with store._session() as session:
        versions = Counter(session.scalars(select(DraftVersion.version)))
    assert versions == {1: 9, 2: 9}


def test_force_leaves_tasks_in_voting_alone(
    instance: dg.DagsterInstance, store: DraftStore, tasks: list[str]
) -> None:
    materialize_tasks(instance, store.database_url, tasks)
    forced = {"ops": {"provider_drafts": {"config": {"force": True}}}}
    materialize_tasks(instance, store.database_url, tasks, run_config=forced)
    with store._session() as session:
        assert set(session.scalars(select(DraftVersion.version))) == {1}
    assert sum(calls_per_provider(store).values()) == 9
