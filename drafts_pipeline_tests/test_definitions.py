"""The definitions as Dagster loads them: stock Dagster only, every job in one process."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from drafts_pipeline.definitions import defs
from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME, range_tags
from drafts_pipeline.store import DraftStore
from drafts_pipeline_tests.factories import make_task

PACKAGE = Path(__file__).resolve().parent.parent / "drafts_pipeline"
PER_TASK_ASSETS = ["pending_tasks", "claude_draft", "openai_draft", "kimi_draft", "voting_ballot"]


def private_dagster_imports(source: str) -> list[str]:
    """The `dagster._…` modules and names that `source` imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("dagster._")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("dagster._"):
                found.append(node.module)
            elif node.module == "dagster":
                found += [f"dagster.{a.name}" for a in node.names if a.name.startswith("_")]
    return found


@pytest.mark.parametrize(
    ("source", "private"),
    [
        ("import dagster._core.events", True),
        ("from dagster._serdes import serialize_value", True),
        ("from dagster import _check", True),
        ("import dagster as dg\nfrom dagster import AssetKey", False),
        ("from dagster_postgres import PostgresRunStorage", False),
    ],
)
def test_the_private_import_check_sees_each_form(source: str, private: bool) -> None:
    assert bool(private_dagster_imports(source)) is private


def test_no_module_of_the_package_imports_private_dagster() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if (found := private_dagster_imports(path.read_text()))
    }
    assert offenders == {}


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in conftest, factories and the other helper modules, so that each
    test module can be read, run and deleted on its own."""
    tests = Path(__file__).resolve().parent
    modules = {path.stem for path in tests.glob("test_*.py")}
    offenders = {}
    for path in sorted(tests.glob("*.py")):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.rsplit(".", 1)[-1])
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name.rsplit(".", 1)[-1] for alias in node.names}
        if found := sorted((imported & modules) - {path.stem}):
            offenders[path.name] = found
    assert offenders == {}


def test_definitions_load_and_every_job_runs_in_one_process() -> None:
    repository = defs.get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    whole_set = {
        "voting_ready_set",
        "votes",
        "provider_leaderboard",
        "accepted_drafts",
        "llm_calls",
        "daily_llm_usage",
        "provider_scorecard",
    }
    assert set(PER_TASK_ASSETS) | whole_set == keys
    jobs = [*repository.get_all_jobs(), defs.resolve_implicit_global_asset_job_def()]
    assert {job.executor_def.name for job in jobs} == {dg.in_process_executor.name}


@pytest.mark.slow
def test_a_catalog_materialisation_of_a_range_runs_in_one_process(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The five per-task assets over a partition range, through the implicit asset job with
    the job's own executor (as a run launched from the UI): one process, no step subprocess."""
    store = DraftStore(database_url=sqlite_url)
    store.upgrade()
    ids = [f"shop.catalog.f{i}" for i in range(3)]
    store.add_tasks([make_task(task_id) for task_id in ids])
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, ids)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {
        "DAGSTER_HOME": str(home),
        "DRAFTS_DATABASE_URL": sqlite_url,
        "DRAFTS_DATA_DIR": str(tmp_path / "data"),
        "DRAFTS_LLM_MODE": "offline",
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "job", "execute",
         "-m", "drafts_pipeline.definitions", "-j", "__ASSET_JOB",
         "-o", "pending_tasks,provider_drafts,voting_ballot",
         "--tags", json.dumps(range_tags(ids[0], ids[-1]))],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert store.task_ids("voting") == ids

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        records = instance.get_records_for_run(run.run_id).records
    assert run.status == dg.DagsterRunStatus.SUCCESS
    events = [r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event]
    kinds = {event.event_type for event in events}
    assert not kinds & {
        dg.DagsterEventType.STEP_WORKER_STARTING,
        dg.DagsterEventType.STEP_WORKER_STARTED,
    }
    step_starts = [e for e in events if e.event_type == dg.DagsterEventType.STEP_START]
    assert {e.step_key for e in step_starts} == {
        "pending_tasks",
        "provider_drafts",
        "voting_ballot",
    }
    run_pids = {e.pid for e in events if e.event_type == dg.DagsterEventType.RUN_START}
    assert len(run_pids) == 1
    lifecycle = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    assert {e.pid for e in events if e.event_type in lifecycle} == run_pids
    materialised = {
        (e.asset_key.to_user_string(), e.partition)
        for e in events
        if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and e.asset_key
    }
    assert materialised == {(name, key) for name in PER_TASK_ASSETS for key in ids}


def test_the_call_log_is_an_external_asset_upstream_of_daily_usage() -> None:
    graph = defs.get_repository_def().asset_graph
    calls = graph.get(dg.AssetKey("llm_calls"))
    assert calls.is_external and not calls.is_executable  # no materialisation function
    assert calls.group_name == "usage"
    assert "`llm_calls` table" in (calls.description or "")
    assert graph.get(dg.AssetKey("daily_llm_usage")).parent_keys == {dg.AssetKey("llm_calls")}


@pytest.mark.slow
def test_loading_the_definitions_imports_no_numerical_library() -> None:
    """Every run process loads the code location; the drafting runs never need numpy, pandas
    or scipy (the usage, voting-set and leaderboard assets import them when they run)."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, drafts_pipeline.definitions; "
            "print(sorted({'numpy', 'pandas', 'scipy'} & set(sys.modules)))",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert loaded.stdout.strip() == "[]"
