"""The warm run launcher: runs forked from a warm process, on a real Dagster instance."""

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.launcher import LaunchRunContext
from dagster._core.launcher.base import WorkerStatus
from dagster._core.origin import JobPythonOrigin

from drafts_pipeline.warm_launcher import WORKER_PID_TAG, WarmRunLauncher
from drafts_pipeline_tests.launcher_jobs import probe_job

# The pool's limit is as high as the most runs a test starts at once, as in the project's
# dagster.yaml (limit 4, at most 4 runs). A step that Dagster 1.13 blocked on SQLite storage
# once stayed blocked for 60 s after the other runs had freed their slots; as Dagster's code
# reads, a claim registered as pending just after a run freed its slot is assigned no slot until
# another one is freed.
INSTANCE_YAML = """
run_launcher:
  module: drafts_pipeline.warm_launcher
  class: WarmRunLauncher
concurrency:
  pools:
    default_limit: 3
telemetry:
  enabled: false
"""


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    with dg.DagsterInstance.from_config(str(home)) as loaded:
        yield loaded


def launch(instance: dg.DagsterInstance, pid_file: Path, hold_s: float = 0.0) -> dg.DagsterRun:
    origin = dg.reconstructable(probe_job).get_python_origin()
    run = instance.create_run_for_job(
        job_def=probe_job,
        run_config={"ops": {"record_pid": {"config": {"path": str(pid_file), "hold_s": hold_s}}}},
        job_code_origin=origin,
    )
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    return run


def wait_for(condition, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def finished(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    wait_for(lambda: instance.get_run_by_id(run_id).is_finished)
    return instance.get_run_by_id(run_id)


def test_runs_start_in_workers_forked_from_one_warm_process(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    launcher = instance.run_launcher
    assert isinstance(launcher, WarmRunLauncher)
    runs = [launch(instance, tmp_path / "pid0")]
    # The pool the op uses has its default limit row before the workers race to claim a slot
    # (on PostgreSQL, two first claims at once made one of the steps fail).
    assert "launcher_probe" in instance.event_log_storage.get_concurrency_keys()
    runs.append(launch(instance, tmp_path / "pid1"))

    for i, run in enumerate(runs):
        done = finished(instance, run.run_id)
        assert done.status == dg.DagsterRunStatus.SUCCESS
        worker = done.tags[WORKER_PID_TAG]
        # The op ran in the worker the launcher recorded: a fork, not this process.
        assert (tmp_path / f"pid{i}").read_text() == worker
        assert int(worker) != os.getpid()
        events = [
            record.event_log_entry.dagster_event.message
            for record in instance.get_records_for_run(run.run_id).records
            if record.event_log_entry.dagster_event
        ]
        assert (
            f"[WarmRunLauncher] Run worker forked from the warm process (pid {worker})." in events
        )
    assert len({finished(instance, r.run_id).tags[WORKER_PID_TAG] for r in runs}) == 2


def test_a_run_is_terminated_and_its_worker_health_follows(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    run = launch(instance, pid_file, hold_s=60)
    wait_for(pid_file.exists)
    launcher = instance.run_launcher
    started = instance.get_run_by_id(run.run_id)
    assert launcher.check_run_worker_health(started).status == WorkerStatus.RUNNING

    assert launcher.terminate(run.run_id)

    done = finished(instance, run.run_id)
    assert done.status == dg.DagsterRunStatus.CANCELED
    wait_for(lambda: launcher.check_run_worker_health(done).status == WorkerStatus.FAILED)
    assert not launcher.terminate(run.run_id)


def test_a_run_for_another_python_goes_the_default_way(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    origin = dg.reconstructable(probe_job).get_python_origin()
    elsewhere = JobPythonOrigin(
        origin.job_name,
        origin.repository_origin._replace(executable_path="/opt/other/bin/python"),
    )
    run = instance.create_run_for_job(
        job_def=probe_job,
        run_config={"ops": {"record_pid": {"config": {"path": str(tmp_path / "pid")}}}},
        job_code_origin=elsewhere,
    )
    # The default launcher needs the run's code server, which only a workspace has.
    with pytest.raises(dg.DagsterInvariantViolationError, match="requires a workspace"):
        instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    assert WORKER_PID_TAG not in instance.get_run_by_id(run.run_id).tags


def test_runs_launched_from_several_threads_each_get_their_own_worker(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(lambda i: launch(instance, tmp_path / f"pid{i}"), range(3)))
    done = [finished(instance, run.run_id) for run in runs]
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in done)
    assert sorted(run.tags[WORKER_PID_TAG] for run in done) == sorted(
        (tmp_path / f"pid{i}").read_text() for i in range(3)
    )
    assert len({run.tags[WORKER_PID_TAG] for run in done}) == 3
