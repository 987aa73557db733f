"""Live progress of `drafts-pipeline run`: per provider the tasks drafted, the rate-limited
attempts (429) and the spend so far.

The figures are read from the draft store, not heard from the runs: a background thread counts
the `draft_versions` and `llm_calls` rows added since the command started, every second. So
they cover the runs in this process's threads with nothing passed through Dagster, and rows
that other processes add to the same store meanwhile (the daemon's runs) count too.

On a terminal the figures are progress bars (rich); otherwise a plain line every few seconds at
most, when something changed, and a closing line either way.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from drafts_pipeline.store import DraftStore

POLL_S = 1.0
PLAIN_EVERY_S = 5.0
PROGRESS_LOGGER = logging.getLogger("drafts_pipeline.progress")


@dataclass(frozen=True)
class ProviderFigures:
    drafted: int = 0
    """Tasks with a draft stored (valid, invalid or failed); a reused draft is not counted."""
    valid: int = 0
    calls: int = 0
    rate_limited: int = 0
    cost_usd: Decimal = Decimal(0)


@dataclass(frozen=True)
class Figures:
    """The figures of each provider, in the order the providers are configured."""

    providers: dict[str, ProviderFigures]

    @property
    def rate_limited(self) -> int:
        return sum(f.rate_limited for f in self.providers.values())

    @property
    def cost_usd(self) -> Decimal:
        return sum((f.cost_usd for f in self.providers.values()), Decimal(0))


class StoreFigures:
    """Reads the figures of the rows added to the store since it was made."""

    def __init__(self, store: DraftStore, providers: Sequence[str]) -> None:
        self._store = store
        self._providers = list(providers)
        self._marks = store.last_row_ids()

    def read(self) -> Figures:
        found = self._store.progress_since(*self._marks)
        names = self._providers + sorted(set(found) - set(self._providers))
        return Figures({name: ProviderFigures(**found.get(name, {})) for name in names})


def summary(figures: Figures, tasks: int) -> str:
    """`claude 12/40 (12 valid), openai 10/40 (9 valid); 3 rate-limited (429); $0.004512`."""
    drafted = ", ".join(
        f"{name} {f.drafted}/{tasks} ({f.valid} valid)" for name, f in figures.providers.items()
    )
    return f"{drafted}; {figures.rate_limited} rate-limited (429); ${figures.cost_usd:.6f}"


class ProgressView(Protocol):
    def show(self, figures: Figures, elapsed_s: float) -> None: ...

    def close(self, figures: Figures, elapsed_s: float) -> None: ...


class PlainLines:
    """A line when the figures changed, at most one every `every_s`; a closing line. With
    `as_json` each line is a log record of `drafts_pipeline.progress` (a JSON line where
    `DRAFTS_LOG_FORMAT=json`) with the figures as its `progress` field."""

    def __init__(
        self, console: Console, tasks: int, every_s: float = PLAIN_EVERY_S, as_json: bool = False
    ) -> None:
        self._console = console
        self._tasks = tasks
        self._every_s = every_s
        self._as_json = as_json
        self._last_at: float = 0.0
        self._last: Figures | None = None
        if as_json:
            PROGRESS_LOGGER.setLevel(logging.INFO)

    def show(self, figures: Figures, elapsed_s: float) -> None:
        if elapsed_s - self._last_at < self._every_s or figures == self._last:
            return
        if self._last is None and not any(f.calls or f.drafted for f in figures.providers.values()):
            return
        self._last_at, self._last = elapsed_s, figures
        line = f"progress {elapsed_s:.0f} s: drafted {summary(figures, self._tasks)}"
        self._print(line, figures)

    def close(self, figures: Figures, elapsed_s: float) -> None:
        self._print(f"drafted in {elapsed_s:.0f} s: {summary(figures, self._tasks)}", figures)

    def _print(self, line: str, figures: Figures) -> None:
        if self._as_json:
            progress = {name: asdict(f) for name, f in figures.providers.items()}
            PROGRESS_LOGGER.info(line, extra={"progress": progress, "tasks": self._tasks})
        else:
            self._console.print(line, markup=False, highlight=False, soft_wrap=True)


class ProgressBars:
    """A bar per provider (tasks drafted of the tasks planned), its valid drafts, 429s and
    spend beside it; the closing line under the bars."""

    def __init__(self, console: Console, tasks: int, providers: Sequence[str]) -> None:
        self._console = console
        self._tasks = tasks
        self._progress = Progress(
            TextColumn("{task.description:>8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._bars = {
            name: self._progress.add_task(name, total=tasks, detail="") for name in providers
        }
        self._progress.start()

    def show(self, figures: Figures, elapsed_s: float) -> None:
        for name, f in figures.providers.items():
            if name not in self._bars:
                self._bars[name] = self._progress.add_task(name, total=self._tasks, detail="")
            detail = f"{f.valid} valid, {f.rate_limited} rate-limited, ${f.cost_usd:.4f}"
            self._progress.update(self._bars[name], completed=f.drafted, detail=detail)

    def close(self, figures: Figures, elapsed_s: float) -> None:
        self.show(figures, elapsed_s)
        self._progress.stop()
        self._console.print(
            f"drafted in {elapsed_s:.0f} s: {summary(figures, self._tasks)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def progress_view(
    console: Console, tasks: int, providers: Sequence[str], log_format: str = "text"
) -> ProgressView:
    """Bars on a terminal (as rich detects one: `FORCE_COLOR`, `TERM=dumb` and the like
    count), plain lines otherwise; JSON lines wherever the log lines are JSON."""
    if log_format == "json":
        return PlainLines(console, tasks, as_json=True)
    if console.is_terminal:
        return ProgressBars(console, tasks, providers)
    return PlainLines(console, tasks)


@contextmanager
def live_progress(
    read: Callable[[], Figures],
    view: ProgressView,
    *,
    poll_s: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[None]:
    """Shows `read()` in `view` every `poll_s` from a background thread while the block runs,
    then once more as the closing figures. A failed read (the store briefly out of reach) is
    skipped: the runs report their own errors."""
    started = clock()
    stop = threading.Event()
    latest = [Figures({})]

    def poll() -> None:
        while not stop.wait(poll_s):
            try:
                latest[0] = read()
            except Exception:  # the next poll tries again; progress must not end the command
                continue
            view.show(latest[0], clock() - started)

    thread = threading.Thread(target=poll, name="run-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        # Should the store be out of reach now, the closing line shows the last figures read.
        with contextlib.suppress(Exception):
            latest[0] = read()
        view.close(latest[0], clock() - started)
