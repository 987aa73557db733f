"""The whole graph through `dg.materialize` on a test instance, on SQLite and PostgreSQL."""

import json
import uuid
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import func, select

from drafts_pipeline.definitions import ASSETS, build_resources, defs
from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME, range_tags
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.prompts.templates import TEMPLATES
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DraftVersion, LLMCall
from drafts_pipeline.voting_set import export_voting_set, voting_ready_frame
from drafts_pipeline_tests.factories import make_task
from drafts_pipeline_tests.graph_runs import materialize_tasks
from drafts_pipeline_tests.provider_doubles import down_provider

TASKS = [f"shop.orders.f{i}" for i in range(4)]
IDENTITY_WORDS = ["claude", "openai", "kimi", "anthropic", "moonshot", "offline-", "gpt"]


@pytest.fixture
def tasks(store: DraftStore) -> list[str]:
    store.add_tasks(
        [
            make_task(task_id, code=f"def load_f{i}(path, retries=3):\n    return open(path)\n")
            for i, task_id in enumerate(TASKS)
        ]
    )
    return TASKS


def test_definitions_load() -> None:
    repository = defs.get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert keys == {
        "llm_calls",
        "pending_tasks",
        "claude_draft",
        "openai_draft",
        "kimi_draft",
        "voting_ballot",
        "voting_ready_set",
        "votes",
        "provider_leaderboard",
        "accepted_drafts",
        "daily_llm_usage",
        "provider_scorecard",
    }
    assert defs.resolve_sensor_def("drafting_tasks_sensor")
    assert defs.resolve_sensor_def("votes_sensor")
    assert defs.resolve_job_def("refresh_vote_results")
    assert defs.resolve_job_def("draft_tasks")
    assert defs.resolve_job_def("daily_llm_usage_job")
    assert defs.resolve_schedule_def("daily_llm_usage_schedule")
    assert defs.resolve_schedule_def("provider_scorecard_schedule")
    assert defs.resolve_schedule_def("below_quorum_schedule")


@pytest.mark.postgres
def test_database_password_stays_out_of_the_ui_and_the_run(
    postgres_url: str, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.engine import make_url

    password = f"pw-{uuid.uuid4().hex}"  # the test server trusts, so any password connects
    url = make_url(postgres_url).set(password=password).render_as_string(hide_password=False)
    monkeypatch.setenv("DRAFTS_DATABASE_URL", url)
    store = DraftStore(database_url=url)
    store.upgrade()
    store.add_tasks([make_task(TASKS[0])])
    graph = dg.Definitions(assets=ASSETS, resources=build_resources("offline"))

    # What the UI's resource pages show: each resource's configured values.
    shown = {
        key: json.loads(resource.config_schema.default_value_as_json_str)
        for key, resource in graph.get_repository_def().get_top_level_resources().items()
    }
    assert password not in json.dumps(shown)
    assert shown["store"] == {"database_url": {"env": "DRAFTS_DATABASE_URL"}}

    instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, [TASKS[0]])
    result = dg.materialize(
        ASSETS,
        instance=instance,
        resources=build_resources("offline"),
        tags=range_tags(TASKS[0], TASKS[0]),
    )
    assert result.success
    assert store.task_ids("voting") == [TASKS[0]]
    run = instance.get_run_by_id(result.run_id)
    recorded = dg.serialize_value([run, *instance.all_logs(result.run_id)])
    assert password not in recorded


def test_whole_graph_moves_every_task_to_voting(
    instance: dg.DagsterInstance, store: DraftStore, tasks: list[str], data_dir: Path
) -> None:
    result = materialize_tasks(instance, store.database_url, tasks)
    assert result.success
    assert store.task_ids("voting") == tasks
    frame = result.output_for_node("voting_ready_set")
    assert len(frame) == 3 * len(tasks)
    assert sorted(
        frame.groupby("task_id")["label"].apply("".join).map(sorted).map("".join).unique()
    ) == ["ABC"]
    events = result.asset_materializations_for_node("provider_drafts")
    for spec in SHIPPED_PROVIDERS:
        statuses = {
            e.partition: e.metadata["status"].value
            for e in events
            if e.asset_key == dg.AssetKey(spec.asset_name) and "status" in e.metadata
        }
        assert statuses == dict.fromkeys(tasks, "valid")
    checks = result.get_asset_check_evaluations()
    assert checks and all(check.passed for check in checks)
    assert (data_dir / "voting_ready_set.parquet").exists()


def test_drafts_carry_provenance(
    instance: dg.DagsterInstance, store: DraftStore, tasks: list[str], data_dir: Path
) -> None:
    materialize_tasks(instance, store.database_url, tasks)
    prompts = {task.id: task.prompt for task in store.tasks_by_id(tasks).values()}
    assert all(prompt and prompt.startswith("Document this python ") for prompt in prompts.values())
    with store._session() as session:
        drafts = session.scalars(select(DraftVersion)).all()
        calls = session.scalar(select(func.count()).select_from(LLMCall))
    assert len(drafts) == 3 * len(tasks) and calls == 3 * len(tasks)
    for draft in drafts:
        assert draft.model == f"offline-{draft.provider}"
        # The whole prompt as sent: the fixed part, then the task's own part.
        template = TEMPLATES[draft.template_version.removesuffix("-v1")]
        assert template.name in ("python-function", "python-method")
        assert draft.prompt_used == f"{template.system}\n\n{prompts[draft.task_id]}"
        assert len(draft.prompt_hash) == 64 and draft.output_schema_version == "docstring-json-v1"
        assert draft.status == "valid" and draft.validation["parameters"]["ok"]
        assert draft.run_id and draft.attempts == 1 and draft.cost_usd == 0


def test_rerun_creates_no_duplicate_and_changes_no_ballot(
    instance: dg.DagsterInstance, store: DraftStore, tasks: list[str], data_dir: Path
) -> None:
    materialize_tasks(instance, store.database_url, tasks)
    before = voting_ready_frame(store)
    materialize_tasks(instance, store.database_url, tasks)
    with store._session() as session:
        assert session.scalar(select(func.count()).select_from(DraftVersion)) == 3 * len(tasks)
    pd.testing.assert_frame_equal(voting_ready_frame(store), before)


def test_one_provider_down_still_yields_a_ballot_of_two(
    instance: dg.DagsterInstance, store: DraftStore, tasks: list[str], data_dir: Path
) -> None:
    result = materialize_tasks(
        instance, store.database_url, tasks, providers={"kimi_llm": down_provider("kimi")}
    )
    assert result.success
    assert store.task_ids("voting") == tasks
    for task_labels in store.ballot_labels(tasks).values():
        assert sorted(task_labels) == ["A", "B"]
    latest = store.latest_drafts(tasks, "kimi")
    assert {d.status for d in latest.values()} == {"failed"}
    assert "503" in next(iter(latest.values())).validation["provider"]["reason"]
    check = next(
        c
        for c in result.get_asset_check_evaluations()
        if c.asset_key == dg.AssetKey("kimi_draft") and c.check_name == "drafts_valid"
    )
    assert not check.passed


def test_all_providers_down_leaves_tasks_drafting_with_an_attempt(
    instance: dg.DagsterInstance, store: DraftStore, tasks: list[str], data_dir: Path
) -> None:
    providers = {spec.resource_key: down_provider(spec.name) for spec in SHIPPED_PROVIDERS}
    result = materialize_tasks(instance, store.database_url, tasks, providers=providers)
    assert result.success
    assert store.task_ids("drafting") == tasks
    assert {t.attempts for t in store.tasks_by_id(tasks).values()} == {1}
    assert result.output_for_node("voting_ready_set").empty


def test_a_bad_task_fails_alone(
    instance: dg.DagsterInstance, store: DraftStore, tasks: list[str], data_dir: Path
) -> None:
    store.add_tasks([make_task("shop.bad", template="no-such-template")])
    result = materialize_tasks(instance, store.database_url, [*tasks, "shop.bad"])
    assert result.success
    assert store.task_ids("voting") == tasks
    bad = store.tasks_by_id(["shop.bad"])["shop.bad"]
    assert bad.status == "failed" and "unknown template 'no-such-template'" in bad.last_error


def test_voting_set_and_exports_name_no_provider_or_model(
    instance: dg.DagsterInstance,
    store: DraftStore,
    tasks: list[str],
    data_dir: Path,
    tmp_path: Path,
) -> None:
    materialize_tasks(instance, store.database_url, tasks)
    frame = voting_ready_frame(store)
    assert not {"provider", "model"} & set(frame.columns)
    jsonl, parquet = tmp_path / "set.jsonl", tmp_path / "set.parquet"
    assert export_voting_set(frame, "jsonl", jsonl) == len(frame) == 12
    export_voting_set(frame, "parquet", parquet)
    texts = [
        jsonl.read_text().lower(),
        pd.read_parquet(parquet).to_json(date_format="iso").lower(),
        frame.to_json(date_format="iso").lower(),
    ]
    for text in texts:
        for word in IDENTITY_WORDS:
            assert word not in text, word
