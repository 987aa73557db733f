"""`drafts-pipeline run`'s live figures, `--limit` by priority, and JSON log lines."""

import io
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import select

from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.llm.generation import CallAttempt
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.progress import (
    Figures,
    PlainLines,
    ProgressBars,
    ProviderFigures,
    StoreFigures,
    live_progress,
    progress_view,
)
from drafts_pipeline.settings import Settings
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import LLMCall
from drafts_pipeline_tests.factories import make_draft, make_task
from drafts_pipeline_tests.fake_providers import FakeProviderServer

PROVIDERS = [spec.name for spec in SHIPPED_PROVIDERS]
# Variables that make rich take a pipe for a terminal.
TERMINAL_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drafts_pipeline", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )  # fmt: skip


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str) -> dict[str, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and k not in TERMINAL_VARIABLES and k != "DAGSTER_HOME"
    }
    return {**keep, "DRAFTS_DATA_DIR": str(tmp_path / "data"), "DRAFTS_DATABASE_URL": sqlite_url}


def figures(**drafted: int) -> Figures:
    return Figures({name: ProviderFigures(drafted=n, valid=n) for name, n in drafted.items()})


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=300), out


# --- which tasks go first -------------------------------------------------------------------


def test_the_drafting_queue_is_by_priority_then_arrival_and_the_sensor_keeps_arrival(
    store: DraftStore,
) -> None:
    priorities = {"t.a": 0, "t.b": 5, "t.c": 1, "t.d": 5, "t.e": 0}
    store.add_tasks([make_task(task_id, priority=p) for task_id, p in priorities.items()])

    assert store.drafting_queue() == ["t.b", "t.d", "t.c", "t.a", "t.e"]
    assert store.drafting_queue(3) == ["t.b", "t.d", "t.c"]
    # The sensor's cursor reads arrivals (`seq`), whatever the priorities.
    assert [task_id for _, task_id in store.drafting_after(0, 10)] == list(priorities)


# --- the figures, from the store ------------------------------------------------------------


def _call(store: DraftStore, task_id: str, provider: str, status: int, cost: str | None) -> None:
    log = store.call_log("run-1")
    sent = CallAttempt(provider, f"model-of-{provider}", 1, datetime.now(UTC))
    handle = log.call_sent(task_id, sent)
    log.call_finished(
        handle,
        CallAttempt(
            provider, sent.model, 1, sent.started_at, latency_ms=5, status_code=status,
            error_type=None if status == 200 else "rate_limited",
            cost_usd=None if cost is None else Decimal(cost),
        ),
    )  # fmt: skip


def test_the_figures_count_only_rows_added_since_the_command_started(store: DraftStore) -> None:
    store.add_tasks([make_task(f"t.{i}") for i in range(4)])
    # Before the mark: neither counted.
    assert store.add_draft(make_draft("t.0", "claude")) is not None
    _call(store, "t.0", "claude", 200, "0.5")

    reader = StoreFigures(store, PROVIDERS)
    assert reader.read() == Figures({name: ProviderFigures() for name in PROVIDERS})

    for task_id in ("t.1", "t.2"):
        _call(store, task_id, "claude", 429, None)
        _call(store, task_id, "claude", 200, "0.00125")
        assert store.add_draft(make_draft(task_id, "claude")) is not None
    _call(store, "t.3", "kimi", 200, "0.002")
    assert store.add_draft(make_draft("t.3", "kimi", "invalid")) is not None
    assert store.add_draft(make_draft("t.3", "openai", "failed")) is not None

    found = reader.read()

    assert list(found.providers) == PROVIDERS
    assert found.providers["claude"] == ProviderFigures(
        drafted=2, valid=2, calls=4, rate_limited=2, cost_usd=Decimal("0.0025")
    )
    assert found.providers["openai"] == ProviderFigures(drafted=1, valid=0)
    assert found.providers["kimi"] == ProviderFigures(
        drafted=1, valid=0, calls=1, cost_usd=Decimal("0.002")
    )
    assert found.rate_limited == 2 and found.cost_usd == Decimal("0.0045")


# --- how they are shown ---------------------------------------------------------------------


def test_plain_lines_come_at_most_every_few_seconds_and_only_when_something_changed() -> None:
    console, out = plain_console()
    view = PlainLines(console, tasks=4, every_s=5)

    view.show(figures(claude=0, openai=0, kimi=0), 1.0)  # nothing yet: no line
    view.show(figures(claude=1, openai=0, kimi=0), 2.0)  # too soon
    view.show(figures(claude=1, openai=0, kimi=0), 5.0)
    view.show(figures(claude=2, openai=1, kimi=0), 7.0)  # too soon after the last line
    view.show(figures(claude=1, openai=0, kimi=0), 11.0)  # as the last line: nothing new
    view.show(figures(claude=3, openai=2, kimi=1), 12.0)
    view.close(figures(claude=4, openai=4, kimi=3), 14.2)

    assert out.getvalue().splitlines() == [
        "progress 5 s: drafted claude 1/4 (1 valid), openai 0/4 (0 valid), kimi 0/4 (0 valid); "
        "0 rate-limited (429); $0.000000",
        "progress 12 s: drafted claude 3/4 (3 valid), openai 2/4 (2 valid), kimi 1/4 (1 valid); "
        "0 rate-limited (429); $0.000000",
        "drafted in 14 s: claude 4/4 (4 valid), openai 4/4 (4 valid), kimi 3/4 (3 valid); "
        "0 rate-limited (429); $0.000000",
    ]


def test_a_terminal_gets_a_bar_per_provider_and_a_pipe_plain_lines() -> None:
    console, _ = plain_console()
    assert isinstance(progress_view(console, 3, PROVIDERS), PlainLines)

    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=120)
    view = progress_view(terminal, 3, PROVIDERS)
    assert isinstance(view, ProgressBars)
    limited = ProviderFigures(drafted=2, valid=1, calls=4, rate_limited=1, cost_usd=Decimal("0.5"))
    view.close(
        Figures({"claude": limited, "openai": ProviderFigures(), "kimi": ProviderFigures()}), 3
    )

    shown = out.getvalue()
    assert all(name in shown for name in PROVIDERS)
    assert "2/3" in shown and "1 valid, 1 rate-limited, $0.5000" in shown
    # The cursor shown again, then the closing line under the bars.
    closing = shown.rstrip().splitlines()[-1]
    assert closing.endswith(
        "drafted in 3 s: claude 2/3 (1 valid), openai 0/3 (0 valid), kimi 0/3 (0 valid); "
        "1 rate-limited (429); $0.500000"
    )


class Recorded:
    def __init__(self) -> None:
        self.shown: list[Figures] = []
        self.closed: list[tuple[Figures, float]] = []

    def show(self, found: Figures, elapsed_s: float) -> None:
        self.shown.append(found)

    def close(self, found: Figures, elapsed_s: float) -> None:
        self.closed.append((found, elapsed_s))


def test_the_closing_line_shows_the_figures_read_after_the_work() -> None:
    view = Recorded()
    times = iter([100.0, 107.5])
    # The poll thread would wait an hour: only the closing read happens.
    with live_progress(lambda: figures(claude=2), view, poll_s=3600, clock=lambda: next(times)):
        pass

    assert view.shown == []
    assert view.closed == [(figures(claude=2), 7.5)]


def test_a_failed_read_is_skipped_and_the_closing_line_keeps_the_last_figures_read() -> None:
    seen = threading.Event()

    def read() -> Figures:
        if seen.is_set():
            raise RuntimeError("the store is out of reach")
        seen.set()
        return figures(claude=1)

    view = Recorded()
    with live_progress(read, view, poll_s=0.01):
        assert seen.wait(timeout=60)

    assert view.shown == [figures(claude=1)]
    assert [found for found, _ in view.closed] == [figures(claude=1)]


# --- the command ----------------------------------------------------------------------------


@pytest.mark.slow
def test_run_limit_drafts_the_highest_priority_tasks_and_prints_plain_progress(
    env: dict[str, str], tmp_path: Path, sqlite_url: str
) -> None:
    store = DraftStore(database_url=sqlite_url)
    store.upgrade()
    priorities = {"q.low": 0, "q.top": 9, "q.mid": 3, "q.also_top": 9, "q.none": -1}
    store.add_tasks([make_task(task_id, priority=p) for task_id, p in priorities.items()])

    result = cli("run", "--limit", "3", env={**env, "DRAFTS_LLM_MODE": "offline"}, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(store.task_ids("voting")) == ["q.also_top", "q.mid", "q.top"]
    assert sorted(store.task_ids("drafting")) == ["q.low", "q.none"]
    assert "1 run(s), 3 task(s), 0 failed run(s)" in result.stdout
    # Not a terminal: plain lines, the last with every provider's count.
    lines = result.stderr.splitlines()
    assert "\x1b[" not in result.stderr
    assert lines and lines[-1].startswith("drafted in ")
    assert lines[-1].endswith(
        ": claude 3/3 (3 valid), openai 3/3 (3 valid), kimi 3/3 (3 valid); "
        "0 rate-limited (429); $0.000000"
    )
    assert all(line.startswith(("progress ", "drafted in ")) for line in lines), lines


@pytest.mark.slow
def test_json_logs_carry_task_provider_attempt_and_run_id(
    env: dict[str, str], tmp_path: Path, sqlite_url: str, fake_providers: FakeProviderServer
) -> None:
    """Live against the fake server: kimi answers one request with a 429 (a retry warning of
    the retry loop), claude with answers that are not JSON (invalid drafts: a step's warning
    for each)."""
    store = DraftStore(database_url=sqlite_url)
    store.upgrade()
    ids = ["j.one", "j.two"]
    store.add_tasks([make_task(task_id) for task_id in ids])
    live = {**env, "DRAFTS_LLM_MODE": "live", "DRAFTS_LOG_FORMAT": "json"}
    for spec in SHIPPED_PROVIDERS:
        live[spec.key_env] = fake_providers.script(spec.name).api_key or ""
        live[spec.base_url_env] = fake_providers.base_url(spec.name)
    fake_providers.script("kimi").fail("rate_limit", retry_after="0.01")
    fake_providers.script("claude").answer = lambda prompt: "Not a JSON answer."

    result = cli("run", env=live, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    with store.engine.connect() as connection:
        limited = connection.execute(
            select(LLMCall.task_id, LLMCall.run_id).where(LLMCall.status_code == 429)
        ).one()
        drafted_by = set(connection.execute(select(LLMCall.run_id)).scalars())
    retry = [r for r in records if r.get("logger") == "drafts_pipeline.llm.calling"]
    assert len(retry) == 1
    assert retry[0]["level"] == "WARNING" and "attempt 1 failed" in retry[0]["message"]
    assert retry[0]["provider"] == "kimi" and retry[0]["attempt"] == 1
    assert (retry[0]["task_id"], retry[0]["run_id"]) == (limited.task_id, limited.run_id)

    steps = [r for r in records if r.get("logger") == "command_line"]
    assert sorted(step["task_id"] for step in steps) == ids
    for step in steps:
        assert step["provider"] == "claude" and step["level"] == "WARNING"
        assert step["step"] == "provider_drafts" and step["run_id"] in drafted_by
        assert "json: not JSON" in step["message"] and "dagster_meta" not in step

    closing = [r for r in records if r.get("logger") == "drafts_pipeline.progress"][-1]
    assert closing["message"].startswith("drafted in ") and closing["tasks"] == 2
    assert closing["progress"]["kimi"]["rate_limited"] == 1
    claude = closing["progress"]["claude"]
    assert (claude["drafted"], claude["valid"], claude["calls"]) == (2, 0, 2)
    assert Decimal(claude["cost_usd"]) > 0
    for key in (fake_providers.script(name).api_key or "" for name in PROVIDERS):
        assert key[-12:] not in result.stderr
    assert store.task_ids("voting") == ids


@pytest.mark.slow
def test_a_bad_log_format_is_one_line_naming_the_variable(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = cli("run", env={**env, "DRAFTS_LOG_FORMAT": "xml"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: DRAFTS_LOG_FORMAT='xml' is not one of text, json"]


@pytest.mark.parametrize(("raw", "expected"), [("", "text"), ("JSON", "json"), (" text ", "text")])
def test_the_log_format_setting(raw: str, expected: str) -> None:
    settings = Settings.from_environment({"DRAFTS_LOG_FORMAT": raw})
    assert settings.require("log_format").log_format == expected


def test_a_bad_log_format_is_a_settings_problem_naming_the_variable() -> None:
    settings = Settings.from_environment({"DRAFTS_LOG_FORMAT": "yaml"})
    assert settings.log_format == "text"
    with pytest.raises(ConfigurationError, match=r"^DRAFTS_LOG_FORMAT='yaml' is not one of"):
        settings.require("log_format")
