"""Start and stop a real `dagster-daemon` on this repository's workspace (tests, benchmarks)."""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

REPOSITORY = Path(__file__).resolve().parent.parent


def start_daemon(
    home: Path, env: dict[str, str], output: IO[str], workspace: Path | None = None
) -> subprocess.Popen[bytes]:
    """`dagster-daemon run` with DAGSTER_HOME=`home`, in a session of its own, on this
    repository's `workspace.yaml` unless another `workspace` is given."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run",
         "-w", str(workspace or REPOSITORY / "workspace.yaml")],
        env={**env, "DAGSTER_HOME": str(home)}, cwd=REPOSITORY,
        stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def stop_daemon(daemon: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    daemon.terminate()
    try:
        daemon.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        daemon.kill()
    # The code server and any run worker left behind are in the daemon's session.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(daemon.pid, signal.SIGKILL)
