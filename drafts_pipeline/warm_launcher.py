"""A Dagster run launcher that starts each run in a process forked from a warm one.

Dagster's default launcher has the code server spawn a fresh interpreter per run, and each one
imports Dagster, SQLAlchemy, pandas and the provider SDKs again: about 3.5 s of CPU before the run
does anything, and on a small machine the runs of one sensor tick queue for the CPU while they do.
This launcher keeps one process (the *warm* process) that has imported those libraries once and
forks a run worker from it per run, which starts in a fraction of a second.

- Only libraries are preloaded, never the project's own code: each run imports the code location
  afresh, so a code change needs no restart. A library upgrade needs the daemon restarted.
- A run whose code location uses another Python than the daemon's goes the default way (through its
  code server), as does terminating a run this launcher did not start.
- The worker's pid is a run tag, so termination and run monitoring's health check work from any
  process that loads the instance, and across daemon restarts.
- The run worker is what `dagster api execute_run` runs; the warm process runs the same body.
"""

import contextlib
import gc
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, Self

import dagster as dg
from dagster._core.launcher import DefaultRunLauncher, LaunchRunContext
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._serdes import ConfigurableClassData

WORKER_PID_TAG = "drafts_pipeline/worker_pid"

# What a run of this project imports that is worth importing once: Dagster's run worker, the
# store's and the instance's database layers and the provider SDKs. Not numpy, pandas or pyarrow:
# they start threads when imported (OpenBLAS, jemalloc), and a process with threads is not safe to
# fork; the draft runs do not need them.
DEFAULT_PRELOAD = (
    "dagster._cli.api",
    "dagster_postgres",
    "sqlalchemy.orm",
    "psycopg2",
    "anthropic",
    "openai",
    "httpx",
)

READY = "ready"
log = logging.getLogger(__name__)


class WarmRunLauncher(DefaultRunLauncher):
    """Launches runs in processes forked from a process with the heavy libraries imported."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        preload_modules: Sequence[str] = DEFAULT_PRELOAD,
        start_timeout_seconds: float = 120.0,
    ) -> None:
        super().__init__(inst_data=inst_data)
        self._preload = list(preload_modules)
        self._start_timeout_s = start_timeout_seconds
        self._warm: WarmProcess | None = None
        self._disposed = False
        self._lock = threading.Lock()

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "preload_modules": dg.Field(
                [str],
                is_required=False,
                default_value=list(DEFAULT_PRELOAD),
                description="Modules the warm process imports once; one that is not installed "
                "is skipped. List libraries that start no thread when imported, and no project "
                "code (each run imports that afresh).",
            ),
            "start_timeout_seconds": dg.Field(
                float,
                is_required=False,
                default_value=120.0,
                description="How long the warm process may take to import its modules.",
            ),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> Self:
        return cls(inst_data=inst_data, **config_value)

    def register_instance(self, instance: dg.DagsterInstance) -> None:
        super().register_instance(instance)
        # Warm up as soon as a process has a launcher (in the daemon: at its first launch or run
        # monitoring check), in the background; launches wait for it only while it imports.
        threading.Thread(target=self._warm_up, name="warm-run-process", daemon=True).start()

    def _warm_up(self) -> None:
        try:
            self._warm_process()
        except Exception:  # the first launch tries again and raises what went wrong
            log.exception("could not start the warm run process")

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None or origin.executable_path != sys.executable:
            super().launch_run(context)
            return
        self._initialize_pools(run)
        pid = self._warm_process().fork_run(self._instance.get_ref(), run.run_id)
        self._instance.add_run_tags(run.run_id, {WORKER_PID_TAG: str(pid)})
        self._instance.report_engine_event(
            f"Run worker forked from the warm process (pid {pid}).", run, cls=self.__class__
        )

    def _initialize_pools(self, run: DagsterRun) -> None:
        """Give each pool the run uses its default limit row now, one run at a time.

        A step creates the row of a pool that has none when it first claims a slot. Runs that
        start together (as forked ones do) then race to insert it, and on PostgreSQL the loser's
        step fails (dagster 1.13: the insert's IntegrityError is caught inside a transaction that
        is already aborted, so the update that follows fails too).
        """
        pools = run.run_op_concurrency.all_pools if run.run_op_concurrency else None
        storage = self._instance.event_log_storage
        if not pools or not storage.supports_global_concurrency_limits:
            return
        if self._instance.get_concurrency_config().pool_config.default_pool_limit is None:
            return
        for pool in sorted(set(pools) - storage.get_concurrency_keys()):
            storage.initialize_concurrency_limit_to_default(pool)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or WORKER_PID_TAG not in run.tags:
            return super().terminate(run_id)
        if run.is_finished or not _alive(int(run.tags[WORKER_PID_TAG])):
            return False
        self._instance.report_run_canceling(run)
        # What Dagster's own worker does when told to stop: an interrupt, so that the run's
        # steps end and its status becomes CANCELED.
        os.kill(int(run.tags[WORKER_PID_TAG]), signal.SIGINT)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid_tag = run.tags.get(WORKER_PID_TAG)
        if pid_tag is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "not launched by the warm launcher")
        if _alive(int(pid_tag)):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=pid_tag)
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker (pid {pid_tag}) is gone", run_worker_id=pid_tag
        )

    def dispose(self) -> None:
        with self._lock:
            self._disposed = True
            if self._warm is not None:
                self._warm.close()
                self._warm = None
        super().dispose()

    def _warm_process(self) -> "WarmProcess":
        with self._lock:
            if self._disposed:
                raise dg.DagsterError("the run launcher has been disposed")
            if self._warm is None or not self._warm.alive():
                self._warm = WarmProcess.start(self._preload, self._start_timeout_s)
            return self._warm


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A worker that has exited but is not yet reaped by its parent is a zombie: gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


class WarmProcess:
    """The launcher's side of the warm process: one request line in, one answer line out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process
        # One request and its answer at a time (the daemon may launch from several threads).
        self._exchange = threading.Lock()

    @classmethod
    def start(cls, preload: Sequence[str], timeout_s: float) -> "WarmProcess":
        process = subprocess.Popen(
            [sys.executable, "-m", __name__, *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        warm = cls(process)
        answer = warm._read_answer(timeout_s)
        if answer != READY:
            warm.close()
            raise dg.DagsterError(f"the warm run process did not start: {answer}")
        return warm

    def alive(self) -> bool:
        return self._process.poll() is None

    def fork_run(self, instance_ref: Any, run_id: str) -> int:
        from dagster._serdes import serialize_value

        request = {"run_id": run_id, "instance_ref": serialize_value(instance_ref)}
        assert self._process.stdin is not None
        with self._exchange:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            answer = self._read_answer(30.0)
        if not answer.isdigit():
            raise dg.DagsterError(f"the warm run process could not start run {run_id}: {answer}")
        return int(answer)

    def close(self) -> None:
        """Stop the warm process; run workers already forked go on."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def _read_answer(self, timeout_s: float) -> str:
        assert self._process.stdout is not None
        readable, _, _ = select.select([self._process.stdout], [], [], timeout_s)
        line = self._process.stdout.readline() if readable else ""
        if not line:
            code = self._process.poll()
            return f"no answer within {timeout_s:.0f} s (exit code {code})"
        return line.strip()


def _serve(preload: Sequence[str]) -> None:
    """The warm process: import once, then fork a run worker per request line on stdin."""
    # As Python's documentation advises for a process that forks: no collections in it, and
    # everything it holds frozen before each fork, so that no worker's collector writes to (and
    # copies) the shared pages, nor walks the imported objects again.
    gc.disable()
    for module in preload:
        with contextlib.suppress(ImportError):
            __import__(module)
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    if threads > 1:
        # Forking copies only the calling thread; the others' locks stay held in the worker.
        print(
            f"warning: the warm run process has {threads} threads after importing {preload}; "
            "remove the module that starts them from preload_modules",
            file=sys.stderr,
            flush=True,
        )
    # Workers are reaped by the system; this process never waits for them.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # Interrupts are for the workers (termination), not for the warm process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = sys.stdout
    print(READY, file=answers, flush=True)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            run_id, instance_ref = str(request["run_id"]), str(request["instance_ref"])
        except (ValueError, KeyError, TypeError) as error:
            print(f"bad request: {error}", file=answers, flush=True)
            continue
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            _worker(run_id, instance_ref)
        print(pid, file=answers, flush=True)


def _worker(run_id: str, serialized_instance_ref: str) -> None:
    """A forked run worker: `dagster api execute_run`'s body for one run, then exit."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        gc.enable()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(2, 1)  # stdout was the answer pipe: the worker's output goes where stderr goes
        os.close(devnull)
        sys.stdin = open(os.devnull)  # noqa: SIM115 - the worker ends with os._exit
        sys.stdout = os.fdopen(1, "w", buffering=1)
        code = _execute_run(run_id, serialized_instance_ref)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _execute_run(run_id: str, serialized_instance_ref: str) -> int:
    from dagster._cli.api import _execute_run_command_body
    from dagster._core.instance import InstanceRef
    from dagster._serdes import deserialize_value
    from dagster._utils.interrupts import capture_interrupts

    instance_ref = deserialize_value(serialized_instance_ref, InstanceRef)
    with capture_interrupts(), dg.DagsterInstance.from_ref(instance_ref) as instance:
        return _execute_run_command_body(
            run_id, instance, lambda _event: None, set_exit_code_on_failure=False
        )


if __name__ == "__main__":
    _serve(sys.argv[1:])
