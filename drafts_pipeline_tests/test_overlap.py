"""Runs that overlap pay each provider once per task: two runs at once, a run killed mid-batch,
a slow call whose lease is renewed, a dead run's lease taken over."""

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from drafts_pipeline.drafting.provider_batch import draft_with_provider
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.runner import batch_sizes
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DraftVersion, LLMCall
from drafts_pipeline_tests.daemon_process import REPOSITORY
from drafts_pipeline_tests.factories import make_task, with_prompts
from drafts_pipeline_tests.fake_providers import FakeProviderServer

SYMBOL = re.compile(r"Symbol: (\w+)")


def drafted_symbols(server: FakeProviderServer, provider: str) -> list[str]:
    """The symbol of each request the server received whole for `provider`, in arrival order
    (a request cut short by a killed client has no readable body)."""
    return [
        found[0]
        for request in server.script(provider).requests
        if (found := SYMBOL.findall(json.dumps(request.body)))
    ]


def wait_for(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    """Wait until `condition` holds (state observed, not a guess at how long things take)."""
    done = threading.Event()
    deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)
    while not condition():
        if datetime.now(UTC) > deadline:
            raise AssertionError("condition not reached in time")
        done.wait(0.02)


def env_for(
    tmp_path: Path, database_url: str, fake_providers: FakeProviderServer
) -> dict[str, str]:
    """This process's environment but its API keys, live against the fake providers."""
    keep = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env = {
        **keep,
        "DRAFTS_DATA_DIR": str(tmp_path / "data"),
        "DRAFTS_DATABASE_URL": database_url,
        "DRAFTS_LLM_MODE": "live",
    }
    for spec in SHIPPED_PROVIDERS:
        env[spec.key_env] = fake_providers.script(spec.name).api_key or ""
        env[spec.base_url_env] = fake_providers.base_url(spec.name)
    return env


@pytest.fixture
def live_env(
    tmp_path: Path, database_url: str, fake_providers: FakeProviderServer
) -> dict[str, str]:
    return env_for(tmp_path, database_url, fake_providers)


def start_run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "drafts_pipeline", "run", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
    )  # fmt: skip


def seed(store: DraftStore, count: int, prefix: str = "svc.jobs.step_") -> list[str]:
    store.upgrade()
    ids = [f"{prefix}{n}" for n in range(count)]
    store.add_tasks([make_task(task_id) for task_id in ids])
    return ids


@pytest.mark.slow
def test_two_runs_started_together_call_each_provider_once_per_task(
    live_env: dict[str, str], tmp_path: Path, database_url: str, fake_providers: FakeProviderServer
) -> None:
    store = DraftStore(database_url=database_url)
    ids = seed(store, 30)
    for spec in SHIPPED_PROVIDERS:
        fake_providers.script(spec.name).latency_s = 0.2

    runs = [start_run(live_env, tmp_path, "--batch-size", "10") for _ in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    expected = sorted(f"step_{n}" for n in range(30))
    for spec in SHIPPED_PROVIDERS:
        symbols = drafted_symbols(fake_providers, spec.name)
        assert sorted(symbols) == expected, spec.name
    assert sorted(store.task_ids("voting")) == sorted(ids)
    with store._session() as session:
        assert session.scalar(select(func.max(DraftVersion.version))) == 1
        labelled = session.execute(
            select(DraftVersion.task_id, func.count())
            .where(DraftVersion.label.is_not(None))
            .group_by(DraftVersion.task_id)
        ).all()
    # One transition per task: one ballot labelled its three drafts, none relabelled.
    assert sorted(labelled) == [(task_id, 3) for task_id in sorted(ids)]
    assert all(sorted(labels) == ["A", "B", "C"] for labels in store.ballot_labels(ids).values())


@pytest.mark.slow
def test_a_killed_run_leaves_every_call_in_the_log_and_the_next_run_finishes(
    live_env: dict[str, str], tmp_path: Path, database_url: str, fake_providers: FakeProviderServer
) -> None:
    store = DraftStore(database_url=database_url)
    ids = seed(store, 24)
    for spec in SHIPPED_PROVIDERS:
        fake_providers.script(spec.name).latency_s = 1.0
    env = {**live_env, "DRAFTS_CLAIM_LEASE_S": "2"}

    killed = start_run(env, tmp_path, "--batch-size", "12")
    wait_for(lambda: all(fake_providers.script(s.name).calls >= 6 for s in SHIPPED_PROVIDERS))
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    before = {spec.name: fake_providers.script(spec.name).calls for spec in SHIPPED_PROVIDERS}

    # Every request the server received has its row, written before it was sent (a row whose
    # request the kill stopped on its way has no request). A row whose answer the run never
    # recorded is marked unfinished; a finished row had its answer.
    with store._session() as session:
        rows = dict(
            session.execute(select(LLMCall.provider, func.count()).group_by(LLMCall.provider)).all()
        )
        unfinished = session.scalar(
            select(func.count()).select_from(LLMCall).where(LLMCall.finished_at.is_(None))
        )
        stored = dict(
            session.execute(
                select(DraftVersion.provider, func.count()).group_by(DraftVersion.provider)
            ).all()
        )
    assert all(rows[name] >= before[name] for name in before), (rows, before)
    answered = sum(
        request.status is not None
        for spec in SHIPPED_PROVIDERS
        for request in fake_providers.script(spec.name).requests
    )
    assert unfinished > 0
    assert sum(rows.values()) - unfinished <= answered
    # In flight at the kill: sent, and no draft stored for it.
    in_flight = {name: before[name] - stored.get(name, 0) for name in before}

    # The dead run's claims expire (its lease is 2 s and nothing renews it); then a new run.
    wait_for(lambda: not store.live_claims(ids), timeout_s=30)
    again = start_run(env, tmp_path, "--batch-size", "12")
    output = again.communicate(timeout=300)[0]

    assert again.returncode == 0, output
    assert sorted(store.task_ids("voting")) == sorted(ids)
    for spec in SHIPPED_PROVIDERS:
        assert fake_providers.script(spec.name).calls <= len(ids) + in_flight[spec.name]
        symbols = drafted_symbols(fake_providers, spec.name)
        assert set(symbols) == {task_id.rsplit(".", 1)[-1] for task_id in ids}
    with store._session() as session:
        logged = session.scalar(select(func.count()).select_from(LLMCall))
        still_unfinished = session.scalar(
            select(func.count()).select_from(LLMCall).where(LLMCall.finished_at.is_(None))
        )
    # The new run's attempts are all logged and finished.
    assert still_unfinished == unfinished
    after = sum(fake_providers.script(spec.name).calls for spec in SHIPPED_PROVIDERS)
    assert logged - sum(rows.values()) == after - sum(before.values())


def workers_of(pid: int) -> list[int]:
    """The worker processes `pid` started (Linux's /proc: its children that multiprocessing
    spawned, not its resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in command:
                found.append(child)
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def connected_to(pid: int, port: int | None) -> bool:
    """Process `pid` holds a TCP connection to `port` on this machine (its sockets' inodes
    among /proc's IPv4 connections whose remote port is `port`)."""
    try:
        links = [os.readlink(link) for link in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return False
    sockets = {link[len("socket:[") : -1] for link in links if link.startswith("socket:[")}
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in sockets:
            return True
    return False


def start_with_a_drafting_worker(
    live_env: dict[str, str], tmp_path: Path, fake_providers: FakeProviderServer
) -> tuple[subprocess.Popen[str], list[int]]:
    """`run` over the seeded tasks in runs of 10 (2, 8, then 10 each): the first runs go in
    the command's process while a worker starts (on a busy machine, all those before it is
    ready), the later ones to the worker, which calls the providers itself. Returns once a
    worker holds a connection to the fake providers: the command and its drafting workers."""
    for spec in SHIPPED_PROVIDERS:
        fake_providers.script(spec.name).latency_s = 1.0
    port = urlsplit(fake_providers.base_url("claude")).port
    command = start_run(live_env, tmp_path, "--batch-size", "10")
    drafting: list[int] = []

    def a_worker_drafts() -> bool:
        # Kept as seen: a worker between two runs can close its connections a moment later.
        drafting[:] = [pid for pid in workers_of(command.pid) if connected_to(pid, port)]
        return bool(drafting)

    try:
        wait_for(a_worker_drafts)
    except BaseException:
        command.kill()  # its workers die with it
        command.wait()
        raise
    return command, drafting


def kill_a_drafting_worker(
    live_env: dict[str, str], tmp_path: Path, fake_providers: FakeProviderServer
) -> tuple[subprocess.Popen[str], str, list[str]]:
    """`run` as `start_with_a_drafting_worker` starts it, one of its drafting workers killed:
    the command once it has ended, its output and its `error:` lines."""
    command, drafting = start_with_a_drafting_worker(live_env, tmp_path, fake_providers)
    os.kill(drafting[0], signal.SIGKILL)
    try:
        output = command.communicate(timeout=300)[0]
    finally:
        command.kill()
    return command, output, [line for line in output.splitlines() if line.startswith("error:")]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads the process tree from /proc")
def test_a_commands_later_runs_go_to_worker_processes_that_die_with_it(
    live_env: dict[str, str], tmp_path: Path, database_url: str, fake_providers: FakeProviderServer
) -> None:
    store = DraftStore(database_url=database_url)
    ids = seed(store, 120)
    command, _ = start_with_a_drafting_worker(live_env, tmp_path, fake_providers)
    workers = workers_of(command.pid)

    command.send_signal(signal.SIGKILL)
    command.wait(timeout=30)
    # The workers end with it instead of drafting on for a command that is gone.
    wait_for(lambda: not any(alive(pid) for pid in workers), timeout_s=10)
    assert len(store.task_ids("voting")) < len(ids)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads the process tree from /proc")
def test_a_worker_killed_mid_run_fails_its_run_and_the_command_drafts_the_rest(
    live_env: dict[str, str], tmp_path: Path, database_url: str, fake_providers: FakeProviderServer
) -> None:
    store = DraftStore(database_url=database_url)
    ids = seed(store, 120)
    command, output, errors = kill_a_drafting_worker(live_env, tmp_path, fake_providers)

    # A dead worker breaks the pool, which ends its other workers too. The runs they held
    # (none, had the killed worker just finished one) fail with one line each, status 2; the
    # others and every later run (in the command's own process) draft their tasks.
    assert command.returncode == (2 if errors else 0), output
    assert "Traceback" not in output
    assert all("its worker process ended before the run did" in line for line in errors), errors
    assert f"{len(errors)} failed run(s)" in output
    assert len(store.task_ids("voting")) >= len(ids) - 10 * len(errors)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads the process tree from /proc")
def test_on_the_home_instance_workers_draft_too_and_a_dead_ones_run_is_ended_there(
    tmp_path: Path, sqlite_url: str, fake_providers: FakeProviderServer
) -> None:
    """With `DAGSTER_HOME` the command's process holds one run at a time (Dagster reconfigures
    logging as a run starts there) and its workers take the others, all recorded in that
    instance. A worker killed mid-run leaves no run started there and no pool slot taken. (The
    draft store's part is that of any run: SQLite is enough.)"""
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPOSITORY / "dagster.yaml", home / "dagster.yaml")
    live_env = {**env_for(tmp_path, sqlite_url, fake_providers), "DAGSTER_HOME": str(home)}
    store = DraftStore(database_url=sqlite_url)
    ids = seed(store, 120)
    command, output, errors = kill_a_drafting_worker(live_env, tmp_path, fake_providers)

    assert command.returncode == (2 if errors else 0), output
    assert len(store.task_ids("voting")) >= len(ids) - 10 * len(errors)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = [run for run in instance.get_runs() if run.job_name == "draft_tasks"]
        assert len(runs) >= len(batch_sizes(len(ids), 10)) - len(errors)
        assert all(run.is_finished for run in runs), [run.status for run in runs]
        # A run the pool held but had not started yet fails with a line and no run here.
        failed = [run for run in runs if run.status == dg.DagsterRunStatus.FAILURE]
        assert len(failed) <= len(errors), output
        assert not instance.event_log_storage.get_concurrency_info("llm_providers").claimed_slots
        # From start to end, by the process that ran each (its events say which).
        spans: dict[int, list[tuple[float, float]]] = {}
        for run in runs:
            ends = {}
            for record in instance.get_records_for_run(run.run_id).records:
                event = record.event_log_entry.dagster_event
                if event is not None:
                    ends[event.event_type] = (event.pid, record.event_log_entry.timestamp)
            pid, started = ends[dg.DagsterEventType.RUN_START]
            ended = (
                ends.get(dg.DagsterEventType.RUN_SUCCESS) or ends[dg.DagsterEventType.RUN_FAILURE]
            )
            spans.setdefault(pid, []).append((started, ended[1]))
    assert command.pid in spans and len(spans) > 1, spans
    here = sorted(spans[command.pid])
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(here)), here


def test_a_slow_call_keeps_its_claim_and_a_dead_runs_claim_is_taken_over(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    ids = seed(store, 3, prefix="slow.f")
    tasks = with_prompts(store, ids)
    script = fake_providers.script("kimi")
    script.latency_s = 2.5  # five leases of 0.5 s: only renewals keep the claims
    slow = fake_providers.resource("kimi")
    reports = {}

    def first_run() -> None:
        reports["a"] = draft_with_provider(store, slow, tasks[:2], run_id="run-a", lease_s=0.5)

    thread = threading.Thread(target=first_run)
    thread.start()
    wait_for(lambda: script.calls == 2)
    # Several leases into the calls, a second run asks for the same work.
    wait_for(lambda: time.monotonic() > script.requests[0].received_at + 1.5)
    store.claim_drafts(
        [ids[2]], "kimi", "dead-run", 0.5, now=datetime.now(UTC) - timedelta(minutes=5)
    )
    reports["b"] = draft_with_provider(
        store, fake_providers.resource("kimi"), tasks, run_id="run-b", lease_s=0.5
    )
    thread.join()

    assert reports["b"].outcomes["claimed_elsewhere"] == 2
    assert reports["b"].outcomes["valid"] == 1  # the dead run's task, taken over
    assert reports["a"].outcomes["valid"] == 2
    assert sorted(drafted_symbols(fake_providers, "kimi")) == ["f0", "f1", "f2"]
    latest = store.latest_drafts(ids, "kimi")
    assert {task_id: draft.version for task_id, draft in latest.items()} == dict.fromkeys(ids, 1)
    assert store.live_claims(ids) == {}


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads the process tree from /proc")
def test_a_workers_lines_go_to_the_commands_stderr(
    tmp_path: Path,
    sqlite_url: str,
    fake_providers: FakeProviderServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The runs in this process (the test is the command here) and in its workers: claude's
    answers are not JSON, a warning line for each task. Every line comes out of this process's
    `sys.stderr`, where progress bars print lines above themselves, also those of the runs a
    worker drafted; a worker writing to its own stderr would tear through the bars."""
    from drafts_pipeline.definitions import build_definitions
    from drafts_pipeline.runner import run_in_process

    for name in [name for name in os.environ if name.endswith("_API_KEY")]:
        monkeypatch.delenv(name)
    for name, value in env_for(tmp_path, sqlite_url, fake_providers).items():
        monkeypatch.setenv(name, value)
    ids = seed(DraftStore(database_url=sqlite_url), 120)
    for spec in SHIPPED_PROVIDERS:
        fake_providers.script(spec.name).latency_s = 1.0
    fake_providers.script("claude").answer = lambda prompt: "Not a JSON answer."
    port = urlsplit(fake_providers.base_url("claude")).port
    worker_drafted = threading.Event()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            if any(connected_to(pid, port) for pid in workers_of(os.getpid())):
                worker_drafted.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        results = run_in_process(build_definitions(), ids, batch_size=10, concurrent_runs=3)
    finally:
        done.set()
        watcher.join()

    assert all(run.success for run in results), results
    assert worker_drafted.is_set()
    err = capsys.readouterr().err
    assert sorted(re.findall(r"task (\S+): claude: ", err)) == sorted(ids)
