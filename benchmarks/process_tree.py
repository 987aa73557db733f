"""CPU seconds and peak memory of a process and all its descendants, sampled from /proc."""

import os
import threading
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # the process ended while the tree was walked
        return found
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _tree(root: int) -> list[int]:
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(_children(pid))
    return pids


def _sample(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of one process; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS, rss_pages * PAGE_SIZE


class ProcessTreeMonitor:
    """Samples the process trees of `roots` every `interval_s` until stopped.

    CPU is the sum over every process seen of its last CPU reading, so processes that end
    between samples lose at most one interval's worth; memory is the largest sum of resident
    sets seen at one sample.
    """

    def __init__(self, *roots: int, interval_s: float = 0.2) -> None:
        self.roots = roots
        self.interval_s = interval_s
        self.cpu_by_pid: dict[int, float] = {}
        self.peak_rss_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ProcessTreeMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval_s)
        self.sample()

    def sample(self) -> None:
        total_rss = 0
        for pid in {pid for root in self.roots for pid in _tree(root)}:
            reading = _sample(pid)
            if reading is None:
                continue
            cpu, rss = reading
            self.cpu_by_pid[pid] = max(cpu, self.cpu_by_pid.get(pid, 0.0))
            total_rss += rss
        self.peak_rss_bytes = max(self.peak_rss_bytes, total_rss)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_pid.values())
