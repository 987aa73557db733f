"""Asset checks of the per-task assets executed on their own, as from a check's page in the
Dagster UI: over every task without a partition, over the partition chosen with one."""

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import update

from drafts_pipeline.definitions import ASSETS, build_resources
from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DraftVersion
from drafts_pipeline_tests.daemon_process import REPOSITORY, start_daemon, stop_daemon
from drafts_pipeline_tests.factories import make_draft, make_task
from drafts_pipeline_tests.graph_runs import materialize_tasks

CLEAN, LEAKY = "shop.orders.clean", "shop.orders.leaky"
DRAFTS_VALID = dg.AssetCheckKey(dg.AssetKey("claude_draft"), "drafts_valid")
BLIND = dg.AssetCheckKey(dg.AssetKey("claude_draft"), "no_self_identification")
LABELS = dg.AssetCheckKey(dg.AssetKey("voting_ballot"), "labels_complete_and_unique")
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@pytest.fixture
def claude_drafts(store: DraftStore, instance: dg.DagsterInstance) -> list[str]:
    """Two tasks with a claude draft each: one valid, one that names its vendor."""
    ids = [CLEAN, LEAKY]
    store.add_tasks([make_task(task_id) for task_id in ids])
    instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, ids)
    store.add_draft(make_draft(CLEAN, "claude", "valid"))
    leak = {"blind": {"ok": False, "reason": "names a provider or model: 'Claude'"}}
    store.add_draft(make_draft(LEAKY, "claude", "invalid", validation=leak))
    return ids


def run_check_alone(
    instance: dg.DagsterInstance, store: DraftStore, key: dg.AssetCheckKey, partition: str | None
) -> dg.ExecuteInProcessResult:
    """A run of the one check `key`, no asset selected; with the partition's tag if given."""
    return dg.materialize(
        ASSETS,
        selection=dg.AssetSelection.checks(key),
        instance=instance,
        resources=build_resources("offline", store.database_url),
        tags={"dagster/partition": partition} if partition else None,
        run_config=QUIET,
        raise_on_error=False,
    )


def evaluation(result: dg.ExecuteInProcessResult, key: dg.AssetCheckKey) -> dg.AssetCheckEvaluation:
    (found,) = [e for e in result.get_asset_check_evaluations() if e.asset_check_key == key]
    return found


@pytest.mark.parametrize(
    ("partition", "checked", "passed"), [(None, 2, False), (CLEAN, 1, True), (LEAKY, 1, False)]
)
def test_a_drafts_check_runs_alone_over_every_task_or_the_partition_given(
    instance: dg.DagsterInstance,
    store: DraftStore,
    claude_drafts: list[str],
    partition: str | None,
    checked: int,
    passed: bool,
) -> None:
    for key in (DRAFTS_VALID, BLIND):
        result = run_check_alone(instance, store, key, partition)
        assert result.success
        found = evaluation(result, key)
        assert found.passed is passed
        assert found.metadata["checked"].value == checked
        table = found.metadata["problems" if key == DRAFTS_VALID else "leaks"].value
        assert (LEAKY in table) is (not passed)
        assert not result.asset_materializations_for_node("provider_drafts")


@pytest.mark.parametrize("partition", [None, "lib.b"])
def test_the_labels_check_runs_alone_and_finds_a_broken_ballot(
    instance: dg.DagsterInstance, store: DraftStore, data_dir: Path, partition: str | None
) -> None:
    ids = ["lib.a", "lib.b"]
    store.add_tasks([make_task(task_id) for task_id in ids])
    materialize_tasks(instance, store.database_url, ids, run_config=QUIET)
    assert store.task_ids("voting") == ids
    fine = run_check_alone(instance, store, LABELS, partition)
    assert fine.success and evaluation(fine, LABELS).passed
    assert evaluation(fine, LABELS).metadata["checked"].value == (1 if partition else 2)

    with store.engine.begin() as connection:  # lib.b's labels become A, C, D
        connection.execute(
            update(DraftVersion)
            .where(DraftVersion.task_id == "lib.b", DraftVersion.label == "B")
            .values(label="D")
        )
    broken = run_check_alone(instance, store, LABELS, partition)
    assert broken.success
    found = evaluation(broken, LABELS)
    assert not found.passed
    assert list(found.metadata["bad_ballots"].value) == ["lib.b"]


# --- through Dagster's GraphQL API, as the UI launches it ---------------------------------

CHECKS_QUERY = """
query {
  assetNodes {
    assetKey { path }
    assetChecksOrError {
      ... on AssetChecks { checks { name canExecuteIndividually } }
    }
  }
}
"""


@pytest.fixture
def ui_deployment(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, dg.DagsterInstance]]:
    """What `dagster dev` runs, on this repository's workspace and `dagster.yaml`: the UI's
    GraphQL API over a code server of its own, and the daemon, which starts the queued runs in
    processes of their own (Dagster's default run launcher)."""
    from dagster_graphql.test.utils import define_out_of_process_context

    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {
        "DRAFTS_DATABASE_URL": sqlite_url,
        "DRAFTS_DATA_DIR": str(tmp_path / "data"),
        "DRAFTS_LLM_MODE": "offline",
    }
    for name in ("DRAFTS_DATABASE_URL", "DRAFTS_DATA_DIR", "DRAFTS_LLM_MODE"):
        monkeypatch.setenv(name, env[name])
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPOSITORY / "dagster.yaml", home / "dagster.yaml")
    with (
        (home / "daemon.log").open("w") as log,
        dg.DagsterInstance.from_config(str(home)) as instance,
        define_out_of_process_context(str(REPOSITORY / "workspace.yaml"), None, instance) as ctx,
    ):
        daemon = start_daemon(home, env, log)
        try:
            yield ctx, instance
        finally:
            stop_daemon(daemon, timeout_s=30)


def wait_for_run(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    deadline = time.monotonic() + 240
    while not (run := instance.get_run_by_id(run_id)) or not run.is_finished:
        assert time.monotonic() < deadline, f"run {run_id} did not finish"
        time.sleep(0.25)
    return run


@pytest.mark.slow
def test_the_ui_offers_each_per_task_check_alone_and_its_run_succeeds(
    ui_deployment: tuple[Any, dg.DagsterInstance], sqlite_url: str
) -> None:
    from dagster_graphql.client.query import LAUNCH_PIPELINE_EXECUTION_MUTATION
    from dagster_graphql.test.utils import execute_dagster_graphql, infer_job_selector

    context, instance = ui_deployment
    store = DraftStore(database_url=sqlite_url)
    store.upgrade()
    store.add_tasks([make_task(CLEAN), make_task(LEAKY)])
    instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, [CLEAN, LEAKY])
    store.add_draft(make_draft(CLEAN, "claude", "valid"))
    store.add_draft(make_draft(LEAKY, "claude", "invalid", validation={}))
    for task_id in (CLEAN, LEAKY):  # out of `drafting`, so that the daemon's sensor leaves them
        store.fail_task(task_id, "kept out of the sensor's way")

    nodes = execute_dagster_graphql(context, CHECKS_QUERY).data["assetNodes"]
    offered = {
        (node["assetKey"]["path"][-1], check["name"]): check["canExecuteIndividually"]
        for node in nodes
        for check in node["assetChecksOrError"].get("checks", [])
    }
    whole_set = offered.pop(("voting_ready_set", "no_provider_or_model_names"))
    assert whole_set == "REQUIRES_MATERIALIZATION"  # not offered alone: runs with the set
    assert len(offered) == 7  # two per provider draft, one of the ballot
    assert set(offered.values()) == {"CAN_EXECUTE"}

    selector = infer_job_selector(
        context,
        "__ASSET_JOB",
        asset_selection=[],
        asset_check_selection=[{"assetKey": {"path": ["claude_draft"]}, "name": "drafts_valid"}],
    )
    for partition, passed in ((None, False), (CLEAN, True)):
        metadata = {"tags": [{"key": "dagster/partition", "value": partition}]} if partition else {}
        launched = execute_dagster_graphql(
            context,
            LAUNCH_PIPELINE_EXECUTION_MUTATION,
            {"executionParams": {"selector": selector, "executionMetadata": metadata}},
        ).data["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run = wait_for_run(instance, launched["run"]["runId"])
        assert run.status == dg.DagsterRunStatus.SUCCESS, partition
        (logged,) = instance.all_logs(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
        assert logged.dagster_event is not None
        found = logged.dagster_event.asset_check_evaluation_data
        assert found.asset_check_key == DRAFTS_VALID
        assert found.passed is passed
        assert found.metadata["checked"].value == (1 if partition else 2)
