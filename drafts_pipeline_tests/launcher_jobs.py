"""Jobs that the warm launcher's tests launch: importable, so that a forked worker finds them."""

import os
import time
from pathlib import Path

import dagster as dg


class ProbeConfig(dg.Config):
    path: str
    """Where the op writes the pid of the process it ran in."""
    hold_s: float = 0.0
    """How long the op then stays busy (a run to terminate)."""


@dg.op(pool="launcher_probe")
def record_pid(config: ProbeConfig) -> None:
    Path(config.path).write_text(str(os.getpid()))
    deadline = time.monotonic() + config.hold_s
    while time.monotonic() < deadline:
        time.sleep(0.05)


@dg.job(executor_def=dg.in_process_executor)
def probe_job() -> None:
    record_pid()
