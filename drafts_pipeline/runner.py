"""Materialise the graph in this process and worker processes of its own, one Dagster run per
batch of tasks, runs overlapping.

The runs go to the user's Dagster instance (`DAGSTER_HOME`) when there is one, so that they show
in the UI, and otherwise to throwaway in-memory instances.
"""

import ctypes
import math
import multiprocessing
import os
import queue
import re
import signal
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import dagster as dg

from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME, range_tags
from drafts_pipeline.drafting.turns import TURNS
from drafts_pipeline.errors import DraftsError
from drafts_pipeline.llm.providers import configured_providers, selected_providers
from drafts_pipeline.run_log import LOGGER_NAME, command_line_logger
from drafts_pipeline.settings import Settings
from drafts_pipeline.store.outages import OUTAGES
from drafts_pipeline.store.schema import engine_for

T = TypeVar("T")


@dataclass(frozen=True)
class StepFailure:
    """Why a step of a run failed, in one line."""

    step: str
    message: str
    expected: bool
    """The project raised it on purpose (`DraftsError`: a setting, an unreachable store), and
    the message says what to do; otherwise an unexpected error, `details` its stack."""
    details: str = ""


@dataclass(frozen=True)
class BatchRun:
    first: str
    last: str
    size: int
    success: bool
    run_id: str
    failures: tuple[StepFailure, ...] = ()


def _project_errors(cls: type[BaseException] = DraftsError) -> set[str]:
    return {cls.__name__}.union(*(_project_errors(sub) for sub in cls.__subclasses__()))


def step_failures(result: dg.ExecuteInProcessResult) -> tuple[StepFailure, ...]:
    """One `StepFailure` per failed step: the project's own error where one is in the chain of
    causes (Dagster wraps it), else the innermost error."""
    ours = _project_errors()
    failures = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error if event.step_failure_data else None
        chain = []
        while error is not None:
            chain.append(error)
            error = error.cause
        step = event.step_key or "?"
        found = next((e for e in chain if e.cls_name in ours), None)
        if found is not None:
            # "drafts_pipeline.errors.StoreUnavailable: what to do" -> "what to do"
            message = re.sub(rf"^[\w.]*{found.cls_name}: ", "", found.message.strip())
            failures.append(StepFailure(step, message.splitlines()[0], expected=True))
        elif chain:
            inner = chain[-1]
            first_line = (inner.message.strip().splitlines() or [""])[0]
            failures.append(StepFailure(step, first_line, False, chain[0].to_string()))
        else:
            failures.append(StepFailure(step, "failed", expected=False))
    return tuple(failures)


# The first run of a backlog: small, so that the providers are called within seconds.
FIRST_RUN_TASKS = 20
# Each run up to this many times the one before, until runs reach the batch size.
RUN_GROWTH = 4


def batch_sizes(
    count: int, size: int, *, ramp_up: bool = True, ramp_down: bool = True
) -> list[int]:
    """Sizes of the runs for `count` tasks, each at most `size`: a small first run, runs growing
    fourfold to `size`, then runs halving in size, none of the last below twice the first or a
    quarter of `size`.

    A run's first seconds (a process, Dagster's events, the prompts) come before its first
    provider call and its last (events, ballots) after its last answer; both grow with its
    tasks. While one run calls the providers, the next gets ready, so each run must send for
    longer than the next takes to get ready: runs grow from a first run small enough to start
    calling at once, and shrink towards the end so that the last finishes soon after its last
    answer. `ramp_up=False` starts at `size` (a backlog already being drafted);
    `ramp_down=False` does not shrink the last runs (more tasks follow).
    """
    first = max(1, min(FIRST_RUN_TASKS, size // 5))
    # Few last runs: through the daemon each waits for a run slot, which runs writing their
    # events hold for a while after their last answer.
    floor = min(size, max(2 * first, size // 4))
    cap = first if ramp_up else size
    sizes: list[int] = []
    remaining = count
    while remaining > 0:
        step = max(floor, math.ceil(remaining / 2)) if ramp_down and remaining <= 2 * cap else cap
        if remaining - step < floor:  # no runt at the end, where `size` allows
            step = min(remaining, size)
        sizes.append(step)
        remaining -= step
        cap = min(size, cap * RUN_GROWTH)
    return sizes


def batches(
    keys: Sequence[T], size: int, *, ramp_up: bool = True, ramp_down: bool = True
) -> Iterator[Sequence[T]]:
    start = 0
    for step in batch_sizes(len(keys), size, ramp_up=ramp_up, ramp_down=ramp_down):
        yield keys[start : start + step]
        start += step


def contiguous_batches(
    task_ids: Sequence[str],
    partition_order: Mapping[str, int],
    size: int,
    *,
    ramp_up: bool = True,
    ramp_down: bool = True,
) -> list[list[str]]:
    """`task_ids` in runs sized by `batch_sizes`, each run a range of partitions that sit next
    to each other in `partition_order` (the order they were added to the instance): a range
    tag covers every partition between its two ends, so a run must not span a gap."""
    ordered = sorted(task_ids, key=partition_order.__getitem__)
    runs: list[list[str]] = []
    for chunk in batches(ordered, size, ramp_up=ramp_up, ramp_down=ramp_down):
        run: list[str] = []
        for key in chunk:
            if run and partition_order[key] != partition_order[run[-1]] + 1:
                runs.append(run)
                run = []
            run.append(key)
        runs.append(run)
    return runs


def plan_on_instance(
    instance: dg.DagsterInstance, task_ids: Sequence[str], size: int
) -> list[list[str]]:
    """Add the partitions the instance lacks (in `task_ids` order), then the runs over them."""
    known = set(instance.get_dynamic_partitions(TASK_PARTITIONS_NAME))
    instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, [k for k in task_ids if k not in known])
    keys = instance.get_dynamic_partitions(TASK_PARTITIONS_NAME)
    return contiguous_batches(task_ids, {key: index for index, key in enumerate(keys)}, size)


@contextmanager
def open_instance(on_home_instance: bool) -> Iterator[dg.DagsterInstance]:
    """The instance `DAGSTER_HOME` names, or a throwaway in-memory one."""
    with dg.DagsterInstance.get() if on_home_instance else dg.DagsterInstance.ephemeral() as found:
        yield found


# Dagster's documented opt-in to record one "materialisation planned" event per asset for a run
# over a partition range, instead of one per partition (the deployment sets it for the daemon and
# the webserver too). Its cost: on a lasting instance the UI does not show the partitions of a
# failed run as failed.
PLANNED_EVENTS_PER_RANGE = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


@contextmanager
def _planned_events_per_range() -> Iterator[None]:
    previous = os.environ.get(PLANNED_EVENTS_PER_RANGE)
    os.environ[PLANNED_EVENTS_PER_RANGE] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PLANNED_EVENTS_PER_RANGE, None)
        else:
            os.environ[PLANNED_EVENTS_PER_RANGE] = previous


def run_in_process(
    defs: dg.Definitions,
    task_ids: Sequence[str],
    *,
    batch_size: int,
    concurrent_runs: int = 3,
    force: bool = False,
    log_level: str = "WARNING",
    log_format: str = "text",
    on_home_instance: bool = False,
    submit: str | None = None,
    collect: bool = False,
) -> list[BatchRun]:
    """Draft every task in `task_ids`, then publish the voting-ready set.

    `submit` (`live` or `batch`) is the drafting step's submission mode (None: the run's
    setting); `collect` has the runs collect the finished provider batches of their tasks
    instead of drafting.

    Up to `concurrent_runs` batch runs go at once, in a thread of this process or in a worker
    process (`_run_in_workers`), each with an ephemeral instance of its own holding just its
    batch's partitions. On the home instance each run is a range of partitions that are next to
    each other there, and this process holds one of them at a time. A run spends its first
    and last seconds on Dagster's events and on prompts and ballots; a second run's provider
    calls fill that time. The runs share each provider's pace through the draft store, so
    together they keep to its rate. The steps' warnings come as `log_format` lines on stderr.
    """
    if on_home_instance:
        with dg.DagsterInstance.get() as instance:
            planned = plan_on_instance(instance, task_ids, batch_size)
    else:
        planned = [list(batch) for batch in batches(list(task_ids), batch_size)]
    logger_config = {"log_level": log_level, "log_format": log_format}
    with _planned_events_per_range():
        drafting = {"force": force, "collect": collect, **({"submit": submit} if submit else {})}
        return _run_batches(
            defs, planned, concurrent_runs, drafting, logger_config, on_home_instance
        )


@dataclass(frozen=True)
class RunSetup:
    """What every batch run of one command shares: the providers it drafts with (a run has
    begun once that many provider batches have), the drafting step's config and the log's."""

    providers: int
    drafting: dict[str, object]
    logger_config: dict[str, str]

    def run_config(self) -> dict[str, object]:
        return {
            "loggers": {LOGGER_NAME: {"config": self.logger_config}},
            "ops": {"provider_drafts": {"config": self.drafting}},
        }


def _drafting_job(defs: dg.Definitions) -> dg.JobDefinition:
    return defs.resolve_job_def("draft_tasks").with_logger_defs({LOGGER_NAME: command_line_logger})


def run_batch(
    job: dg.JobDefinition,
    batch: Sequence[str],
    run_id: str,
    setup: RunSetup,
    on_home_instance: bool,
) -> BatchRun:
    """One Dagster run of `job` over the partitions of `batch`."""
    # Opened and disposed in the thread that runs: in-memory SQLite refuses other threads.
    with open_instance(on_home_instance) as instance:
        if not on_home_instance:
            instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, list(batch))
        result = job.execute_in_process(
            instance=instance,
            run_id=run_id,
            tags=range_tags(batch[0], batch[-1]),
            run_config=setup.run_config(),
            raise_on_error=False,
        )
        return BatchRun(
            batch[0], batch[-1], len(batch), result.success, result.run_id,
            () if result.success else step_failures(result),
        )  # fmt: skip


def _run_here(
    defs: dg.Definitions,
    planned: list[list[str]],
    concurrent_runs: int,
    setup: RunSetup,
    on_home_instance: bool,
) -> list[BatchRun]:
    """The runs in threads of this process (one at a time on the home instance)."""
    job = _drafting_job(defs)
    with ThreadPoolExecutor(max_workers=_here_at_most(concurrent_runs, on_home_instance)) as pool:
        futures = []
        for index, batch in enumerate(planned):
            run_id = str(uuid.uuid4())
            futures.append(_start_here(pool, job, batch, run_id, setup, on_home_instance))
            if index == 1:  # the first run's setup and the second's are behind us
                _prefetch_publish_imports()
        return [future.result() for future in futures]


def _here_at_most(concurrent_runs: int, on_home_instance: bool) -> int:
    """How many runs go at once in this process's threads. One on the home instance: on an
    instance with settings Dagster reconfigures Python logging (`logging.config.dictConfig`) as
    each run starts, which deadlocked against another thread's run writing its events through
    a logging handler. Each worker process holds one run at a time anyway."""
    return 1 if on_home_instance else concurrent_runs


def _start_here(
    pool: ThreadPoolExecutor,
    job: dg.JobDefinition,
    batch: Sequence[str],
    run_id: str,
    setup: RunSetup,
    on_home_instance: bool,
) -> "Future[BatchRun]":
    """Start the run in a thread of `pool`; return once every provider of it is sending (or
    has nothing to send), so that the next run's set-up does not compete for the CPU with this
    one's first requests, nor with its own predecessor's."""
    TURNS.watch(run_id)
    future = pool.submit(run_batch, job, batch, run_id, setup, on_home_instance)
    while not TURNS.wait_until_begun(run_id, setup.providers, 0.1):
        if future.done():
            break
    TURNS.unwatch(run_id)
    return future


def _run_in_workers(
    defs: dg.Definitions,
    planned: list[list[str]],
    concurrent_runs: int,
    setup: RunSetup,
    on_home_instance: bool,
    then: Callable[[], list[BatchRun]],
) -> list[BatchRun]:
    """The runs, in this process and in up to `concurrent_runs - 1` worker processes, at most
    `concurrent_runs` at once (on the home instance, one at a time in this process); then
    `then()`, while the workers end, whose results follow the runs'.

    One Python process drafts at most one core's worth (the GIL), and Dagster's events, the
    prompts, the SDKs and the store's rows of a run at the providers' rate can need more than
    that on a slow core. A worker is a fresh interpreter that imports the definitions (a few
    seconds), so this process takes the first runs, in threads, while one worker starts once
    the first run is sending; from then on a run goes to a worker while fewer than
    `concurrent_runs - 1` are busy (the pool starts the next on demand), else here.
    The runs share each provider's pace and sending turn through the draft store, as the
    daemon's runs do, and a worker dies with this process."""
    job = _drafting_job(defs)
    context = multiprocessing.get_context("spawn")
    begun: multiprocessing.Queue[str] = context.Queue()
    # What the workers write to their stdout and stderr, read here.
    output, worker_output = context.Pipe(duplex=False)
    spare = concurrent_runs - 1
    here_at_most = _here_at_most(concurrent_runs, on_home_instance)
    here = ThreadPoolExecutor(max_workers=here_at_most)
    workers = ProcessPoolExecutor(
        max_workers=spare,
        mp_context=context,
        initializer=_start_worker,
        initargs=(begun, worker_output, os.getpid()),
    )
    with _relayed(output, worker_output), here, workers:
        futures: list[tuple[Future[BatchRun], Sequence[str], str]] = []
        running_here: list[Future[BatchRun]] = []
        in_workers: list[Future[BatchRun]] = []
        # Done once a worker has started and loaded the definitions; had a worker failed to
        # start, every run stays here.
        warm: Future[None] | None = None
        started: set[str] = set()
        broken = False  # a worker died, which ended the pool: the runs stay here
        for index, batch in enumerate(planned):
            run_id = str(uuid.uuid4())
            future: Future[BatchRun] | None = None
            while future is None:
                running_here = [other for other in running_here if not other.done()]
                in_workers = [other for other in in_workers if not other.done()]
                ready = not broken and warm is not None and warm.done() and warm.exception() is None
                free = len(running_here) + len(in_workers) < concurrent_runs
                if free and ready and len(in_workers) < spare:
                    try:
                        future = workers.submit(
                            _run_in_worker, batch, run_id, setup, on_home_instance
                        )
                    except BrokenProcessPool:
                        broken = True
                        continue
                    in_workers.append(future)
                    # As `_start_here` does, the next run starts once this one is sending.
                    while run_id not in started and not future.done():
                        with suppress(queue.Empty):
                            started.add(begun.get(timeout=0.1))
                elif free and len(running_here) < here_at_most:
                    future = _start_here(here, job, batch, run_id, setup, on_home_instance)
                    running_here.append(future)
                else:
                    going: list[Future[Any]] = [*running_here, *in_workers]
                    if warm is not None and not warm.done():  # or a worker's start
                        going.append(warm)
                    wait(going, return_when=FIRST_COMPLETED)
            futures.append((future, batch, run_id))
            # A worker is worth its start (a few seconds, waited for at the end if it never
            # drafts) only with two runs or more still to come.
            if warm is None and len(planned) - index > 2:
                warm = workers.submit(_ready)
            if index == 1:
                _prefetch_publish_imports()
        results = [_outcome(*run, on_home_instance) for run in futures]
        # A worker's end is a whole interpreter's teardown (about a second): `then` goes
        # meanwhile. The pool is shut down as it always is, waiting for its workers, only in
        # another thread: without the wait, a worker still being spawned could find the pool's
        # queues gone.
        ending = threading.Thread(target=workers.shutdown, name="workers-end")
        ending.start()
        results += then()
        ending.join()
    return results


def _outcome(
    future: "Future[BatchRun]", batch: Sequence[str], run_id: str, on_home_instance: bool
) -> BatchRun:
    """A run's result; a run whose worker process died (killed, or out of memory: the pool
    then ends every worker) is a failed run saying so, not the end of the command."""
    try:
        return future.result()
    except BrokenProcessPool as error:
        message = (
            f"its worker process ended before the run did ({error}); the tasks it had not "
            "stored stay in drafting: run again once their claims expire"
        )
        if on_home_instance:
            try:
                _end_abandoned_run(run_id, message)
            except Exception as problem:  # the instance out of reach: said on the same line
                # The error's name only: a storage error's text can carry connection details.
                message += (
                    "; marking its run failed in the Dagster instance failed too "
                    f"({type(problem).__name__}): mark it failed in the UI"
                )
        failure = StepFailure("worker", message, expected=True)
        return BatchRun(batch[0], batch[-1], len(batch), False, run_id, (failure,))


def _end_abandoned_run(run_id: str, message: str) -> None:
    """Mark a run of the home instance failed that a dead worker left started, and free the
    pool slots it held (else they stay taken for every later run of the instance)."""
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:  # it never started, or it got to its end
            return
        instance.report_run_failed(run, message)
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


# A worker process's drafting job and where it says that a run has begun sending.
_WORKER: dict[str, object] = {}


def _start_worker(
    begun: "multiprocessing.Queue[str]",
    output: "multiprocessing.connection.Connection",
    parent: int,
) -> None:
    """A worker process's start: die with the process that started it, send it what the worker
    writes, count the draft store as reached, load the definitions."""
    _die_with(parent)
    # The command writes what the worker writes (its runs' warnings, a retry) to its own
    # stderr, where progress bars print it above themselves: written to the terminal here, it
    # would tear through the bars. The file descriptors themselves, so that whatever writes to
    # them (Dagster's capture of a step's output too) goes there.
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(output.fileno(), 1)
    os.dup2(output.fileno(), 2)
    output.close()
    # Ctrl-C reaches the whole process group: the command decides (its runs end as they
    # would in its threads), not each worker on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # As the command does: the per-task assets' `backfill_policy` is a beta parameter.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    # The command has reached the draft store (it read the tasks to draft there), so this
    # worker's first connection failing is an outage to ride out, retried and reported as
    # one, not a wrong DRAFTS_DATABASE_URL.
    OUTAGES.reachable(engine_for(Settings.from_environment().database_url))
    from drafts_pipeline.definitions import defs

    _WORKER["job"] = _drafting_job(defs)
    _WORKER["begun"] = begun


def _ready() -> None:
    """Nothing: a task that makes the pool start a worker."""


@contextmanager
def _relayed(
    output: "multiprocessing.connection.Connection",
    worker_output: "multiprocessing.connection.Connection",
) -> Iterator[None]:
    """Writes what the workers write to `worker_output` (their stdout and stderr) to this
    process's `sys.stderr`, line by line as it comes (the stream that is current then: rich's,
    while progress bars show), until the block has ended and with it every worker."""
    done = threading.Event()

    def write(data: bytes) -> None:
        try:
            sys.stderr.write(data.decode(errors="replace"))
            sys.stderr.flush()
        except Exception:  # a closed stderr: the lines are lost, the workers must not block
            pass

    def relay() -> None:
        pending = b""
        while True:
            if not output.poll(0.2):
                if done.is_set():  # every worker has ended and all they wrote is read
                    break
                continue
            chunk = os.read(output.fileno(), 65536)
            if not chunk:
                break
            pending += chunk
            end = pending.rfind(b"\n") + 1
            if end:
                write(pending[:end])
                pending = pending[end:]
        if pending:
            write(pending)

    thread = threading.Thread(target=relay, name="worker-output", daemon=True)
    thread.start()
    try:
        yield
    finally:
        # Workers still to start would need this end of the pipe; they are all gone now.
        worker_output.close()
        done.set()
        thread.join(timeout=5)
        if not thread.is_alive():  # else a lingering writer: the thread ends with the process
            output.close()


def _die_with(parent: int) -> None:
    """End this process when `parent` ends, however it ends (a `kill -9` too), so that no run
    goes on drafting for a command that is gone: Linux's parent-death signal, and a thread that
    looks every half second elsewhere."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # it ended before the signal was asked for
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _run_in_worker(
    batch: Sequence[str], run_id: str, setup: RunSetup, on_home_instance: bool
) -> BatchRun:
    """In a worker: one run, saying on the queue when every provider of it has begun."""
    job = _WORKER["job"]
    begun = _WORKER["begun"]
    assert isinstance(job, dg.JobDefinition)
    finished = threading.Event()

    def tell_begun() -> None:
        while not TURNS.wait_until_begun(run_id, setup.providers, 0.5):
            if finished.is_set():
                return
        begun.put(run_id)  # type: ignore[attr-defined]

    TURNS.watch(run_id)
    threading.Thread(target=tell_begun, name="tell-begun", daemon=True).start()
    try:
        return run_batch(job, batch, run_id, setup, on_home_instance)
    finally:
        finished.set()
        TURNS.unwatch(run_id)


def _prefetch_publish_imports() -> None:
    """Import what publishing the voting set needs (pandas and pyarrow, 0.5 s) while the runs
    wait on the providers, instead of after the last answer."""

    def load() -> None:
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401

    threading.Thread(target=load, name="prefetch-publish-imports", daemon=True).start()


def _run_batches(
    defs: dg.Definitions,
    planned: list[list[str]],
    concurrent_runs: int,
    drafting: Mapping[str, object],
    logger_config: dict[str, str],
    on_home_instance: bool,
) -> list[BatchRun]:
    loggers = {"loggers": {LOGGER_NAME: {"config": logger_config}}}
    # The providers the job drafts with (a bad DRAFTS_PROVIDERS fails here, before any run).
    providers = len(selected_providers(configured_providers()))
    setup = RunSetup(providers, dict(drafting), logger_config)

    def publish() -> list[BatchRun]:
        """The voting-ready set; a failed run of it as a failed batch run."""
        job = defs.resolve_job_def("publish_voting_set").with_logger_defs(
            {LOGGER_NAME: command_line_logger}
        )
        with open_instance(on_home_instance) as instance:
            result = job.execute_in_process(
                instance=instance, run_config=loggers, raise_on_error=False
            )
        if result.success:
            return []
        name = "voting-ready set"
        return [BatchRun(name, name, 0, False, result.run_id, step_failures(result))]

    if concurrent_runs == 1 or len(planned) == 1:
        return _run_here(defs, planned, concurrent_runs, setup, on_home_instance) + publish()
    return _run_in_workers(defs, planned, concurrent_runs, setup, on_home_instance, then=publish)
