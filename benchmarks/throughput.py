"""Throughput at the providers' rate limits, against the fake provider server.

Starts the fake server in a process of its own with a per-call latency L and a per-provider
rate limit R (requests per minute, a sliding window answering 429 beyond it), loads N tasks and
drafts them three ways, on the same server:

- sequential baseline: one task at a time, the three providers one after another (measured on
  a sample of tasks, as a rate);
- in-process: `drafts-pipeline run` in live mode;
- daemon: `dagster-daemon run` on a temporary instance (queued runs, pools), the sensor picking
  the tasks up and launching batched runs.

For each it prints wall time, tasks per minute, the ratio to the rate-limit bound (N / R minutes
plus one latency), the speed-up over the baseline, 429s received, draft outcomes, CPU seconds
per task of the pipeline's processes and their peak memory. Then it re-runs the graph over the
same N tasks and prints the provider calls that made (the goal is none).

    .venv/bin/python -m benchmarks.throughput --tasks 300 --latency 1 --rate 600
"""

import argparse
import itertools
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.pool import NullPool

from benchmarks.process_tree import ProcessTreeMonitor
from drafts_pipeline.llm.provider_file import PROVIDERS_FILE_ENV, SHIPPED_PROVIDERS_FILE
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.store import DraftStore, TaskInput
from drafts_pipeline.store.models import DraftVersion, LLMCall
from drafts_pipeline.store.schema import engine_for
from drafts_pipeline_tests.daemon_process import start_daemon, stop_daemon

REPOSITORY = Path(__file__).resolve().parent.parent
# The fake server speaks for the shipped providers: the runs read the shipped providers file.
PROVIDERS = [spec.name for spec in SHIPPED_PROVIDERS]


def machine_yardstick_s(rounds: int = 3) -> float:
    """Seconds a fixed pure-Python loop (twenty million additions) takes here, best of
    `rounds`: the benchmark's figures depend on the machine's single-core speed, and this says
    how fast the machine that printed them was."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for number in range(20_000_000):
            total += number
        best = min(best, time.perf_counter() - started)
    return best


def serve_fake_providers(connection: Connection, latency_s: float, rate_per_minute: int) -> None:
    """Child process: run the fake server until told to stop, answering stats on request."""
    from drafts_pipeline_tests.fake_providers import FakeProviderServer

    with FakeProviderServer() as server:
        for name in PROVIDERS:
            script = server.script(name)
            script.latency_s = latency_s
            script.rate_limit = rate_per_minute
            script.rate_window_s = 60.0
        connection.send(
            {
                "base_urls": {name: server.base_url(name) for name in PROVIDERS},
                "keys": {name: server.script(name).api_key for name in PROVIDERS},
            }
        )
        while True:
            command = connection.recv()
            if command == "stop":
                return
            stats = {
                name: {
                    "calls": server.script(name).calls,
                    "429": server.script(name).statuses.count(429),
                    "max_in_flight": server.script(name).max_in_flight,
                }
                for name in PROVIDERS
            }
            connection.send(stats)


@dataclass
class FakeServer:
    process: multiprocessing.Process
    connection: Connection
    base_urls: dict[str, str]
    keys: dict[str, str]

    def stats(self) -> dict[str, dict[str, int]]:
        self.connection.send("stats")
        return self.connection.recv()

    def stop(self) -> None:
        self.connection.send("stop")
        self.process.join(timeout=10)


# What the README recommends a deployment sets for the daemon and the webserver: one planned
# event per asset for a run over a partition range (Dagster's opt-in), and materialisations of a
# partition range written in batches (PostgreSQL storage; SQLite's writes them one by one).
DEPLOYMENT_ENV = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
    "DAGSTER_EVENT_BATCH_SIZE": "100",
}


@dataclass
class Storage:
    store_url: str
    instance_file: Path
    env: dict[str, str]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline and process.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{what} on port {port} did not start (exit {process.poll()})")


@contextmanager
def pgbouncer_in_front(pg_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """PgBouncer (Debian's `pgbouncer` package) in session pooling between the Dagster instance
    and its database, on a free loopback port, as docs/operations.md shows; yields the
    instance's variables pointed at it. The database's own server sessions are then the
    bouncer's few, kept open, instead of one per query."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        raise SystemExit("--pgbouncer: no pgbouncer found (Debian: apt-get install pgbouncer)")
    # A folder of its own under /tmp: PgBouncer may run as another user, who must reach it.
    folder = Path(tempfile.mkdtemp(prefix="drafts-bench-pgbouncer-"))
    port, database = free_port(), pg_env["DAGSTER_PG_DB"]
    ini = folder / "pgbouncer.ini"
    # `auth_type = any`: local and throwaway, the server's own (trust) authentication applies.
    ini.write_text(
        f"[databases]\n{database} = host={pg_env['DAGSTER_PG_HOST']} "
        f"port={pg_env['DAGSTER_PG_PORT']} dbname={database} "
        f"user={pg_env['DAGSTER_PG_USERNAME']}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = session\ndefault_pool_size = 20\n"
        f"max_client_conn = 500\nlogfile = {folder}/pgbouncer.log\n"
    )
    command = [binary, str(ini)]
    if os.geteuid() == 0:  # PgBouncer will not run as root: as the server's own user
        try:
            shutil.chown(folder, "postgres")
        except LookupError:
            raise SystemExit("--pgbouncer as root needs a `postgres` user to run it as") from None
        command[1:1] = ["-u", "postgres"]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for_port(port, process, "PgBouncer")
        yield {**pg_env, "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port)}
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def storage(postgres: bool, folder: Path, pgbouncer: bool = False) -> Iterator[Storage]:
    """Where one path keeps its drafts and its Dagster instance, removed afterwards (with
    `pgbouncer`, the instance's database behind PgBouncer)."""
    if not postgres:
        yield Storage(f"sqlite:///{folder}.sqlite3", REPOSITORY / "dagster.yaml", {})
        return
    from sqlalchemy.engine import make_url

    from drafts_pipeline_tests.postgres_server import (
        create_database,
        drop_database,
        postgres_server,
    )

    with postgres_server() as admin:
        if admin is None:
            raise SystemExit("--postgres: no PostgreSQL server reachable and no initdb")
        suffix = uuid.uuid4().hex[:8]
        store_url = create_database(admin, f"drafts_bench_{suffix}")
        instance_url = make_url(create_database(admin, f"dagster_bench_{suffix}"))
        env = {
            "DAGSTER_PG_HOST": instance_url.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(instance_url.port or 5432),
            "DAGSTER_PG_USERNAME": instance_url.username or "postgres",
            "DAGSTER_PG_PASSWORD": instance_url.password or "",
            "DAGSTER_PG_DB": instance_url.database or "",
        }
        try:
            with pgbouncer_in_front(env) if pgbouncer else nullcontext(env) as instance_env:
                yield Storage(store_url, REPOSITORY / "deploy" / "dagster.yaml", instance_env)
        finally:
            engine_for(store_url).dispose()
            drop_database(admin, f"drafts_bench_{suffix}")
            drop_database(admin, f"dagster_bench_{suffix}")


def start_fake_server(latency_s: float, rate: int) -> FakeServer:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=serve_fake_providers, args=(child, latency_s, rate), daemon=True
    )
    process.start()
    hello = parent.recv()
    return FakeServer(process, parent, hello["base_urls"], hello["keys"])


def provider_env(server: FakeServer, rate: int, in_flight: int) -> dict[str, str]:
    """Live mode against the fake server, each provider limited to the server's own rate."""
    env = {
        "DRAFTS_LLM_MODE": "live",
        PROVIDERS_FILE_ENV: str(SHIPPED_PROVIDERS_FILE),
        "DRAFTS_PROVIDERS": "",
    }
    for spec in SHIPPED_PROVIDERS:
        env[spec.key_env] = server.keys[spec.name]
        env[spec.base_url_env or ""] = server.base_urls[spec.name]
        prefix = f"DRAFTS_{spec.name.upper()}_"
        env[prefix + "REQUESTS_PER_MINUTE"] = str(rate)
        env[prefix + "MAX_IN_FLIGHT"] = str(in_flight)
    return env


IDLE_TICK = "no new drafting tasks"


def load_tasks(database_url: str, count: int, prefix: str = "bench") -> list[str]:
    store = DraftStore(database_url=database_url)
    store.upgrade()
    tasks = [
        TaskInput(
            id=f"{prefix}.module{i // 50}.compute_value{i}",
            symbol=f"compute_value{i}",
            language="python",
            code=f"def compute_value{i}(items, factor=2):\n    return sum(items) * factor\n",
        )
        for i in range(count)
    ]
    store.add_tasks(tasks)
    return [task.id for task in tasks]


@dataclass(frozen=True)
class Call:
    provider: str
    run_id: str | None
    task_id: str
    start_s: float  # seconds after the `since` of `calls_since`
    latency_s: float


def calls_since(database_url: str, since: float) -> list[Call]:
    """The calls made since `since` (Unix time), their start in seconds from it."""
    with engine_for(database_url).connect() as connection:
        rows = connection.execute(
            select(LLMCall.provider, LLMCall.run_id, LLMCall.task_id, LLMCall.started_at,
                   LLMCall.latency_ms)
        ).all()  # fmt: skip
    calls = []
    for provider, run_id, task_id, started, latency in rows:
        at = (started if started.tzinfo else started.replace(tzinfo=UTC)).timestamp() - since
        if at >= 0:
            calls.append(Call(provider, run_id, task_id, at, (latency or 0) / 1000))
    return calls


def call_span(database_url: str, since: float) -> tuple[float, float, float]:
    """Of the calls made since `since` (Unix time): seconds to the first call and to the last
    answer, and the longest time any provider went without a new call."""
    calls = calls_since(database_url, since)
    if not calls:
        return 0.0, 0.0, 0.0
    longest = 0.0
    for provider in {call.provider for call in calls}:
        starts = sorted(call.start_s for call in calls if call.provider == provider)
        longest = max([longest, *(b - a for a, b in itertools.pairwise(starts))])
    first = min(call.start_s for call in calls)
    return first, max(call.start_s + call.latency_s for call in calls), longest


def calls_by_run(database_url: str, since: float) -> dict[str, dict[str, float]]:
    """Per run id, of the calls made since `since` (Unix time): tasks called for, and seconds
    from `since` to its first call, its last call and its last answer."""
    runs: dict[str, dict[str, Any]] = {}
    for call in calls_since(database_url, since):
        if call.run_id is None:
            continue
        run = runs.setdefault(call.run_id, {"tasks": set(), "first call": call.start_s,
                                            "last call": call.start_s,
                                            "last answer": call.start_s})  # fmt: skip
        run["tasks"].add(call.task_id)
        run["first call"] = min(run["first call"], call.start_s)
        run["last call"] = max(run["last call"], call.start_s)
        run["last answer"] = max(run["last answer"], call.start_s + call.latency_s)
    return {run_id: {**run, "tasks": len(run["tasks"])} for run_id, run in runs.items()}


TIMELINE_MARKS = ["created", "queued", "launched", "started", "drafting", "first call",
                  "last call", "last answer", "ended"]  # fmt: skip


def timeline_lines(runs: dict[str, dict[str, float]]) -> list[str]:
    lines = ["  (runs, seconds after the tasks were loaded)"]
    for run_id, marks in sorted(runs.items(), key=lambda item: min(item[1].values())):
        shown = ", ".join(f"{name} {marks[name]:.1f}" for name in TIMELINE_MARKS if name in marks)
        lines.append(f"  run {run_id[:8]} ({marks.get('tasks', 0):.0f} tasks): {shown}")
    return lines


def daemon_timeline(home: str, env: dict[str, str], database_url: str, since: float) -> list[str]:
    """One line per run created since `since` (Unix time): when it was created, queued, started,
    began drafting, called the providers and ended, in seconds from `since`."""
    import dagster as dg

    kinds = {
        dg.DagsterEventType.RUN_ENQUEUED: "queued",
        dg.DagsterEventType.RUN_STARTING: "launched",
        dg.DagsterEventType.RUN_START: "started",
        dg.DagsterEventType.STEP_START: "drafting",
        dg.DagsterEventType.RUN_SUCCESS: "ended",
        dg.DagsterEventType.RUN_FAILURE: "ended",
    }
    runs = calls_by_run(database_url, since)
    saved = dict(os.environ)
    os.environ.update({**env, "DAGSTER_HOME": home})
    try:
        with dg.DagsterInstance.get() as instance:
            records = instance.get_run_records(
                dg.RunsFilter(created_after=datetime.fromtimestamp(since, UTC))
            )
            for record in records:
                run_id = record.dagster_run.run_id
                marks = runs.setdefault(run_id, {})
                marks["created"] = record.create_timestamp.timestamp() - since
                for event_record in instance.get_records_for_run(
                    run_id, of_type=set(kinds)
                ).records:
                    entry = event_record.event_log_entry
                    if entry.dagster_event is None:
                        continue
                    name = kinds[entry.dagster_event.event_type]
                    if name == "drafting" and entry.step_key != "provider_drafts":
                        continue
                    marks.setdefault(name, entry.timestamp - since)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return timeline_lines(runs)


def outcome(database_url: str, prefix: str = "") -> tuple[Counter[str], Counter[str]]:
    """Tasks by status, newest drafts by status, of the tasks whose id starts with `prefix`."""
    store = DraftStore(database_url=database_url)
    tasks = Counter(
        {
            s: sum(1 for task_id in store.task_ids(s) if task_id.startswith(prefix))
            for s in ("drafting", "voting", "failed")
        }
    )
    with engine_for(database_url).connect() as connection:
        drafts = Counter(
            dict(
                connection.execute(
                    select(DraftVersion.status, func.count())
                    .where(DraftVersion.task_id.startswith(prefix))
                    .group_by(DraftVersion.status)
                ).all()
            )
        )
    return tasks, drafts


def sequential_baseline(server: FakeServer, env: dict[str, str], sample: int) -> float:
    """Tasks per minute drafting one task at a time, providers one after another."""
    from drafts_pipeline.llm.provider import DraftRequest
    from drafts_pipeline.llm.providers import provider_resources

    os.environ.update(env)
    resources = list(provider_resources("live").values())
    started = time.perf_counter()
    for i in range(sample):
        request = DraftRequest(
            f"baseline.t{i}", f"Symbol: f{i}", f"f{i}", f"def f{i}(x):\n    return x\n"
        )
        for resource in resources:
            resource.generate(request)
    return sample / ((time.perf_counter() - started) / 60)


@dataclass
class PathResult:
    name: str
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    calls: dict[str, dict[str, int]]
    tasks: Counter[str]
    drafts: Counter[str]
    first_call_s: float
    last_answer_s: float
    longest_pause_s: float


def run_in_process_path(
    env: dict[str, str], server: FakeServer, database_url: str, timeline: bool = False
) -> PathResult:
    before = server.stats()
    started, since = time.perf_counter(), time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "drafts_pipeline", "run"],
        env=env, cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    with ProcessTreeMonitor(process.pid) as monitor:
        output, _ = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"drafts-pipeline run failed:\n{output}")
    if timeline:
        print("\n".join(timeline_lines(calls_by_run(database_url, since))))
    tasks, drafts = outcome(database_url)
    return PathResult("in-process", wall, monitor.cpu_seconds, monitor.peak_rss_bytes,
                      _delta(before, server.stats()), tasks, drafts,
                      *call_span(database_url, since))  # fmt: skip


def start_code_server(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    """`dagster api grpc` serving the definitions on a free loopback port, in a session of its
    own, and a workspace file that points the daemon at it; returns once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "api", "grpc",
         "-m", "drafts_pipeline.definitions", "-h", "127.0.0.1", "-p", str(port),
         "--location-name", "drafts_pipeline"],
        env={**env, "DAGSTER_HOME": str(home)}, cwd=REPOSITORY,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    workspace = home / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {port}\n      location_name: drafts_pipeline\n"
    )
    wait_for_port(port, process, "the code server")
    return process, workspace


def run_daemon_path(
    env: dict[str, str],
    server: FakeServer,
    database_url: str,
    count: int,
    timeout_s: float,
    instance_file: Path,
    warm_up: bool,
    keep_log: Path | None,
    timeline: bool = False,
    code_server: bool = False,
) -> PathResult:
    """A running deployment receives N tasks: the clock starts when they are loaded, just after
    a sensor tick (the worst moment: the next tick is 5 s away).

    With `warm_up`, the deployment has drafted one task before, as a daemon that has been up a
    while has: its code server has loaded the definitions and its first run made the pool's row.
    With `code_server`, the code server is one of the deployment's own (`dagster api grpc`),
    which the daemon reaches through a workspace file, instead of one the daemon starts (and
    replaces every minute) from `workspace.yaml`; its processes count with the daemon's.
    """
    with tempfile.TemporaryDirectory(
        prefix="drafts-bench-home-", ignore_cleanup_errors=True
    ) as home:
        # The project's own instance settings (queue, pool; storage in the production file).
        shutil.copy(instance_file, Path(home, "dagster.yaml"))
        log = Path(home, "daemon.log")
        booted = time.perf_counter()
        server_process, workspace = (
            start_code_server(Path(home), env) if code_server else (None, None)
        )
        daemon = start_daemon(Path(home), env, log.open("w"), workspace)
        store = DraftStore(database_url=database_url)

        def after_next_tick() -> None:
            ticks = log.read_text().count(IDLE_TICK)
            while log.read_text().count(IDLE_TICK) <= ticks:
                if time.perf_counter() - booted > timeout_s or daemon.poll() is not None:
                    tail = log.read_text()[-3000:]
                    raise SystemExit(
                        f"the daemon stopped or stalled (exit {daemon.poll()}):\n{tail}"
                    )
                time.sleep(0.05)

        def drafted() -> int:
            return len(store.task_ids("voting")) + len(store.task_ids("failed"))

        try:
            roots = [daemon.pid] + ([server_process.pid] if server_process else [])
            with ProcessTreeMonitor(*roots) as monitor:
                after_next_tick()
                print(f"\n  (daemon up and first sensor tick after "
                      f"{time.perf_counter() - booted:.1f} s)")  # fmt: skip
                if warm_up:
                    started = time.perf_counter()
                    load_tasks(database_url, 1, prefix="warmup")
                    while drafted() < 1 and time.perf_counter() - started < timeout_s:
                        time.sleep(0.05)
                    print(f"  (warm-up: one task drafted in {time.perf_counter() - started:.1f} s)")
                    after_next_tick()
                before, done_before = server.stats(), drafted()
                cpu_at_start = monitor.cpu_seconds
                started, since = time.perf_counter(), time.time()
                load_tasks(database_url, count)
                while time.perf_counter() - started < timeout_s:
                    if drafted() - done_before >= count:
                        break
                    time.sleep(0.25)
                wall = time.perf_counter() - started
                cpu = monitor.cpu_seconds - cpu_at_start
        finally:
            stop_daemon(daemon)
            if server_process is not None:
                stop_daemon(server_process)
        if timeline:
            print("\n".join(daemon_timeline(home, env, database_url, since)))
        if wall >= timeout_s:
            print(log.read_text()[-3000:], file=sys.stderr)
        if keep_log is not None:
            shutil.copy(log, keep_log)
    tasks, drafts = outcome(database_url, "bench.")
    return PathResult("daemon", wall, cpu, monitor.peak_rss_bytes,
                      _delta(before, server.stats()), tasks, drafts,
                      *call_span(database_url, since))  # fmt: skip


def dagster_sessions(pg_env: dict[str, str]) -> int | None:
    """Connections ever opened to the Dagster instance's PostgreSQL database (the server's
    `pg_stat_database.sessions`); None for a SQLite instance."""
    if "DAGSTER_PG_DB" not in pg_env:
        return None
    from sqlalchemy import URL, create_engine, text

    url = URL.create(
        "postgresql+psycopg", username=pg_env["DAGSTER_PG_USERNAME"],
        password=pg_env["DAGSTER_PG_PASSWORD"] or None, host=pg_env["DAGSTER_PG_HOST"],
        port=int(pg_env["DAGSTER_PG_PORT"]), database=pg_env["DAGSTER_PG_DB"],
    )  # fmt: skip
    time.sleep(1)  # a backend reports its session to the statistics as it exits
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _delta(before: dict, after: dict) -> dict[str, dict[str, int]]:
    return {
        name: {
            "calls": after[name]["calls"] - before[name]["calls"],
            "429": after[name]["429"] - before[name]["429"],
            "max_in_flight": after[name]["max_in_flight"],
        }
        for name in after
    }


def rerun_calls(
    env: dict[str, str], server: FakeServer, database_url: str, task_ids: list[str]
) -> int:
    """Provider calls made by materialising the graph again over the same tasks."""
    before = server.stats()
    script = (
        "import sys, json\n"
        "from drafts_pipeline.definitions import defs\n"
        "from drafts_pipeline.runner import run_in_process\n"
        "ids = json.load(sys.stdin)\n"
        "runs = run_in_process(defs, ids, batch_size=100)\n"
        "assert all(r.success for r in runs)\n"
    )
    import json

    subprocess.run([sys.executable, "-c", script], input=json.dumps(task_ids), text=True,
                   env=env, cwd=REPOSITORY, check=True)  # fmt: skip
    after = server.stats()
    return sum(after[n]["calls"] - before[n]["calls"] for n in PROVIDERS)


def report(
    result: PathResult, count: int, rate: int, bound_min: float, baseline_per_min: float
) -> None:
    per_minute = count / (result.wall_s / 60)
    calls = sum(c["calls"] for c in result.calls.values())
    too_many = sum(c["429"] for c in result.calls.values())
    print(f"\n[{result.name}]")
    ratio = bound_min * 60 / result.wall_s
    print(f"  wall time               {result.wall_s:8.1f} s")
    print(f"  tasks per minute        {per_minute:8.1f}")
    print(f"  vs rate-limit bound     {ratio:8.1%}   (bound {bound_min * 60:.1f} s)")
    print(f"  vs sequential baseline  {per_minute / baseline_per_min:8.1f}x")
    tail = result.wall_s - result.last_answer_s
    print(f"  first provider call     {result.first_call_s:8.1f} s   after the start")
    last = result.last_answer_s
    print(f"  last answer             {last:8.1f} s   after the start, {tail:.1f} s before the end")
    print(f"  longest pause           {result.longest_pause_s:8.2f} s   between two calls to a "
          f"provider (the pace is {60 / rate:.2f} s)")  # fmt: skip
    print(f"  provider calls          {calls:8d}   (429s received: {too_many})")
    print(f"  max in flight/provider  {max(c['max_in_flight'] for c in result.calls.values()):8d}")
    print(f"  tasks                   {dict(result.tasks)}")
    print(f"  drafts                  {dict(result.drafts)}")
    cpu_ms = result.cpu_s / count * 1000
    print(f"  CPU per task            {cpu_ms:8.1f} ms   ({result.cpu_s:.1f} s in all)")
    peak_mib = result.peak_rss_bytes / 2**20
    print(f"  peak memory             {peak_mib:8.0f} MiB (all pipeline processes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300, help="N")
    parser.add_argument("--latency", type=float, default=1.0, help="L, seconds per call")
    parser.add_argument("--rate", type=int, default=600, help="R, requests per minute per provider")
    parser.add_argument("--in-flight", type=int, default=16, help="each provider's in-flight cap")
    parser.add_argument("--batch-size", type=int, default=100, help="DRAFTS_BATCH_SIZE")
    parser.add_argument("--baseline-sample", type=int, default=5, help="tasks drafted sequentially")
    parser.add_argument("--skip-daemon", action="store_true")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument(
        "--sensor-interval",
        type=int,
        default=1,
        help="DRAFTS_SENSOR_INTERVAL_S (the daemon evaluates sensors every 5 s at the most often)",
    )
    parser.add_argument("--daemon-timeout", type=float, default=600)
    parser.add_argument("--daemon-log", type=Path, help="keep the daemon's log in this file")
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="print when each run got where (the daemon's: from its Dagster events too)",
    )
    parser.add_argument(
        "--cold-daemon",
        action="store_true",
        help="load the N tasks into a daemon that has drafted nothing yet (no warm-up task)",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="draft store and Dagster instance on PostgreSQL (deploy/dagster.yaml), each in a "
        "temporary database, instead of SQLite files",
    )
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="with --postgres: the Dagster instance reaches its database through PgBouncer "
        "(session pooling, Debian's pgbouncer package), as docs/operations.md shows",
    )
    parser.add_argument(
        "--code-server",
        action="store_true",
        help="the daemon reaches a code server of the deployment's own (`dagster api grpc`) "
        "instead of starting one from workspace.yaml",
    )
    parser.add_argument(
        "--home",
        action="store_true",
        help="in-process: `drafts-pipeline run` with DAGSTER_HOME set (the path's instance "
        "file), so that it records its runs in that instance, as beside a deployment",
    )
    parser.add_argument(
        "--planned-events-per-partition",
        action="store_true",
        help="Dagster's default for the daemon path: one planned event per partition of a run",
    )
    args = parser.parse_args()
    if args.pgbouncer and not args.postgres:
        parser.error("--pgbouncer needs --postgres")

    server = start_fake_server(args.latency, args.rate)
    try:
        # Not a Dagster home of the user's: `drafts-pipeline run` would record its runs there.
        inherited = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
        env = {**inherited, **provider_env(server, args.rate, args.in_flight),
               "DRAFTS_BATCH_SIZE": str(args.batch_size),
               "DRAFTS_SENSOR_INTERVAL_S": str(args.sensor_interval)}  # fmt: skip
        if not args.planned_events_per_partition:
            env.update(DEPLOYMENT_ENV)
        bound_min = args.tasks / args.rate + args.latency / 60
        print(f"N={args.tasks} tasks, L={args.latency} s, R={args.rate}/min per provider, "
              f"in-flight cap {args.in_flight}, batch {args.batch_size}; "
              f"bound {bound_min * 60:.1f} s")  # fmt: skip
        print(f"machine: {os.cpu_count()} cores; a pure-Python loop of 20 million additions "
              f"takes {machine_yardstick_s():.2f} s (best of 3; again at the end)")  # fmt: skip
        bouncer = " (the instance's through PgBouncer)" if args.pgbouncer else ""
        at_home = "; in-process runs recorded in a Dagster home" if args.home else ""
        print(f"storage: {'PostgreSQL' + bouncer if args.postgres else 'SQLite'}{at_home}; "
              f"sensor interval {args.sensor_interval} s; planned events per "
              f"{'partition' if args.planned_events_per_partition else 'range'}")  # fmt: skip
        baseline = sequential_baseline(server, env, args.baseline_sample)
        print(f"\n[sequential baseline]\n  tasks per minute        {baseline:8.1f}   "
              f"(one task at a time, providers in turn; {args.baseline_sample} tasks)")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="drafts-bench-") as folder, ExitStack() as stack:
            paths = ([] if args.skip_in_process else ["in-process"]) + (
                [] if args.skip_daemon else ["daemon"]
            )
            for name in paths:
                setup = stack.enter_context(
                    storage(args.postgres, Path(folder, name), args.pgbouncer)
                )
                url = setup.store_url
                path_env = {**env, **setup.env, "DRAFTS_DATABASE_URL": url,
                            "DRAFTS_DATA_DIR": f"{folder}/{name}"}  # fmt: skip
                if name == "in-process":
                    task_ids = load_tasks(url, args.tasks)
                    if args.home:
                        home = Path(folder, "in-process-home")
                        home.mkdir()
                        shutil.copy(setup.instance_file, home / "dagster.yaml")
                        path_env["DAGSTER_HOME"] = str(home)
                    result = run_in_process_path(path_env, server, url, args.timeline)
                else:
                    DraftStore(database_url=url).upgrade()
                    sessions_before = dagster_sessions(setup.env)
                    result = run_daemon_path(path_env, server, url, args.tasks,
                                             args.daemon_timeout, setup.instance_file,
                                             warm_up=not args.cold_daemon,
                                             keep_log=args.daemon_log,
                                             timeline=args.timeline,
                                             code_server=args.code_server)  # fmt: skip
                report(result, args.tasks, args.rate, bound_min, baseline)
                if name == "daemon" and sessions_before is not None:
                    opened = (dagster_sessions(setup.env) or 0) - sessions_before
                    print(f"  Dagster storage         {opened:8d}   PostgreSQL connections opened "
                          "(daemon up to stopped, warm-up included)")  # fmt: skip
                if name == "in-process":
                    calls = rerun_calls(path_env, server, url, task_ids)
                    print(f"  re-run over the {args.tasks} tasks: {calls} provider call(s)")
                engine_for(url).dispose()
        print(f"\nmachine at the end: the same loop takes {machine_yardstick_s():.2f} s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
