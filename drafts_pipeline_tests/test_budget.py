"""Daily budgets: calls stop at a cap, the tasks left are held in `drafting` untouched until
the next UTC day, and spend passes a cap by no more than the calls in flight.

Every call of the fake server here costs the same, $0.011 (claude-sonnet-5-5 at $2 and $10
per million: 2,500 input and 600 output tokens), and every prompt is 8,750 characters (fixed
part and task part), which the estimate (3.5 characters a token before any calibration, 600
output tokens) prices at exactly that. A cap of $0.055 is five calls.
"""

import os
import random
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import func, select

from drafts_pipeline.drafting.ballot import cast_ballots
from drafts_pipeline.drafting.estimates import daily_budgets
from drafts_pipeline.errors import BudgetReached, ConfigurationError
from drafts_pipeline.llm.budget import (
    DailyBudget,
    ProviderSpend,
    SpendLedger,
    daily_caps,
    utc_day,
)
from drafts_pipeline.llm.estimate import CallEstimator
from drafts_pipeline.llm.generation import Generation
from drafts_pipeline.llm.pricing import resolve_price
from drafts_pipeline.llm.provider import DraftRequest
from drafts_pipeline.llm.providers import (
    SHIPPED_PROVIDERS,
    MisconfiguredProvider,
    provider_resource,
)
from drafts_pipeline.settings import Settings
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DraftClaim, LLMCall
from drafts_pipeline_tests.factories import make_draft, make_task, task_with_prompt_of
from drafts_pipeline_tests.fake_clock import EPOCH, FakeTime
from drafts_pipeline_tests.fake_providers import FakeProviderServer, FixedUsage
from drafts_pipeline_tests.graph_runs import materialize_tasks

CALL_USD = Decimal("0.011")
CAP_USD = Decimal("0.055")
PROMPT_CHARS = 8750
MAX_IN_FLIGHT = 3
FAST: dict[str, Any] = {"initial_delay_s": 0.01, "max_delay_s": 0.05, "requests_per_minute": 60_000}
DAY_ONE = EPOCH.date()


class CountingLedger:
    """A ledger that reads the store and counts how often it was asked."""

    def __init__(self, inner: SpendLedger) -> None:
        self.inner = inner
        self.queries = 0

    def spend_between(self, start: datetime, end: datetime) -> Mapping[str, ProviderSpend]:
        self.queries += 1
        return self.inner.spend_between(start, end)


class DayLedger:
    """Spend as a test sets it, per UTC day."""

    def __init__(self) -> None:
        self.days: dict[datetime, dict[str, ProviderSpend]] = {}
        self.queries = 0

    def spend_between(self, start: datetime, end: datetime) -> Mapping[str, ProviderSpend]:
        self.queries += 1
        return self.days.get(start, {})


def at(hour: int, day: int = 20) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def test_a_call_that_would_pass_a_cap_is_refused_until_the_next_utc_midnight() -> None:
    ledger = DayLedger()
    caps = daily_caps("claude", Decimal("1"), None)
    budget = DailyBudget(
        "claude", caps, ledger, lambda texts: Decimal("0.04"), {"claude": Decimal("0.05")}
    )
    # 0.90 spent, one call in flight at 0.05, this one 0.04: 0.99 fits under 1.
    ledger.days[at(0)] = {"claude": ProviderSpend(Decimal("0.90"), 1)}
    budget.admit(("prompt",), at(23))
    # 0.92 + 0.05 + 0.04 = 1.01 does not.
    ledger.days[at(0)] = {"claude": ProviderSpend(Decimal("0.92"), 1)}
    with pytest.raises(BudgetReached) as refused:
        budget.admit(("prompt",), at(23))
    assert refused.value.until == at(0, day=21)
    assert refused.value.reason == (
        "claude's daily budget DRAFTS_CLAUDE_DAILY_BUDGET_USD=$1.00 reached: $0.9200 spent today "
        "(UTC), $0.0500 in flight, $0.0400 for the next call"
    )
    # The rest of the day is refused without reading the ledger again.
    asked = ledger.queries
    with pytest.raises(BudgetReached):
        budget.admit(("prompt",), at(23) + timedelta(minutes=59))
    assert ledger.queries == asked
    # The next UTC day starts from nothing spent.
    budget.admit(("prompt",), at(0, day=21))
    assert ledger.queries == asked + 1


def test_the_budget_over_all_providers_counts_every_providers_calls() -> None:
    """Spent 0.50 (claude 0.30, openai 0.20); in flight two claude calls at 0.10 and one kimi
    call, which this batch has no estimate for, at the dearest there is (0.10): 0.80 + 0.10
    for this call = 0.90, under 1; a cap of 0.85 refuses it."""
    ledger = DayLedger()
    ledger.days[at(0)] = {
        "claude": ProviderSpend(Decimal("0.30"), 2),
        "openai": ProviderSpend(Decimal("0.20"), 0),
        "kimi": ProviderSpend(Decimal("0"), 1),
    }
    costs = {"claude": Decimal("0.10"), "openai": Decimal("0.05")}
    roomy = DailyBudget(
        "openai", daily_caps("openai", None, Decimal("1")), ledger, lambda t: Decimal("0.10"), costs
    )
    roomy.admit(("p",), at(12))
    tight = DailyBudget(
        "openai",
        daily_caps("openai", None, Decimal("0.85")),
        ledger,
        lambda t: Decimal("0.1"),
        costs,
    )
    with pytest.raises(BudgetReached, match=r"\$0\.5000 spent today \(UTC\), \$0\.3000 in flight"):
        tight.admit(("p",), at(12))
    # openai's own cap counts openai's calls only.
    own = DailyBudget(
        "openai",
        daily_caps("openai", Decimal("0.31"), None),
        ledger,
        lambda t: Decimal("0.1"),
        costs,
    )
    own.admit(("p",), at(12))


def test_a_utc_day_runs_midnight_to_midnight() -> None:
    assert utc_day(at(23) + timedelta(minutes=59)) == (at(0), at(0, day=21))
    assert utc_day(at(0)) == (at(0), at(0, day=21))


def test_the_caps_come_from_the_environment_and_a_bad_one_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings.from_environment({"DRAFTS_DAILY_BUDGET_USD": "25.50"})
    assert settings.daily_budget_usd == Decimal("25.50")
    for bad in ("-1", "lots", "nan", "inf"):
        with pytest.raises(ConfigurationError, match=f"DRAFTS_DAILY_BUDGET_USD='{bad}' must be"):
            Settings.from_environment({"DRAFTS_DAILY_BUDGET_USD": bad}).require("daily_budget_usd")

    spec = next(spec for spec in SHIPPED_PROVIDERS if spec.name == "claude")
    monkeypatch.setenv("DRAFTS_CLAUDE_DAILY_BUDGET_USD", "7.5")
    assert provider_resource(spec, "live").daily_budget() == Decimal("7.5")
    monkeypatch.setenv("DRAFTS_CLAUDE_DAILY_BUDGET_USD", "seven")
    unparsed = provider_resource(spec, "live")
    assert isinstance(unparsed, MisconfiguredProvider)
    with pytest.raises(ConfigurationError, match="DRAFTS_CLAUDE_DAILY_BUDGET_USD='seven'"):
        unparsed.require_key()
    monkeypatch.setenv("DRAFTS_CLAUDE_DAILY_BUDGET_USD", "-3")
    with pytest.raises(ConfigurationError, match=r"\(DRAFTS_CLAUDE_DAILY_BUDGET_USD\) must be"):
        provider_resource(spec, "live").daily_budget()
    # Offline drafts cost nothing: no cap of their own, and none stops them.
    assert provider_resource(spec, "offline").daily_budget() is None


def test_without_a_cap_there_is_no_budget_to_ask_and_a_cap_needs_a_price(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    claude = fake_providers.resource("claude")
    mystery = fake_providers.resource("claude", model="mystery-model-1")
    estimator = CallEstimator.from_history("claude", claude.model, claude.price(), [])
    unpriced = CallEstimator.from_history("claude", mystery.model, mystery.price(), [])
    assert daily_budgets(store, {"claude": claude}, {"claude": estimator}, {}, None) == {
        "claude": None
    }
    with pytest.raises(ConfigurationError, match="DRAFTS_DAILY_BUDGET_USD set, but claude's"):
        daily_budgets(store, {"claude": mystery}, {"claude": unpriced}, {}, Decimal("5"))


def budget_for_claude(store: DraftStore) -> tuple[DailyBudget, CountingLedger]:
    ledger = CountingLedger(store)
    model = "claude-sonnet-5-5"
    estimator = CallEstimator.from_history("claude", model, resolve_price(model), [])
    assert estimator.cost_usd(("p" * PROMPT_CHARS,)) == CALL_USD
    caps = daily_caps("claude", CAP_USD, None)
    return DailyBudget("claude", caps, ledger, estimator.cost_usd, {"claude": CALL_USD}), ledger


def spent(store: DraftStore, provider: str, day: datetime) -> Decimal:
    spend = store.spend_between(*utc_day(day)).get(provider)
    return spend.cost_usd if spend else Decimal(0)


def fixed_cost_calls(server: FakeProviderServer) -> None:
    script = server.script("claude")
    script.usage = FixedUsage(input_tokens=2500, output_tokens=600)
    script.latency_s = 0.02


def test_generate_each_stops_sending_at_the_cap_and_asks_no_more(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    """With estimates that are right, a day's calls stop once five (the cap) are paid for or in
    flight: at least five are made, at most five and the two others in flight with the last."""
    fixed_cost_calls(fake_providers)
    clock = FakeTime()
    claude = fake_providers.resource("claude", clock=clock, max_in_flight=MAX_IN_FLIGHT, **FAST)
    requests = [DraftRequest(f"t{i}", "p" * PROMPT_CHARS, "f", "def f(): pass") for i in range(9)]
    budget, ledger = budget_for_claude(store)

    outcomes = dict(claude.generate_each(requests, call_log=store.call_log("r1"), budget=budget))

    drafted = sorted(t for t, o in outcomes.items() if isinstance(o, Generation))
    refused = sorted(t for t, o in outcomes.items() if isinstance(o, BudgetReached))
    assert len(drafted) + len(refused) == len(requests)
    assert 5 <= len(drafted) <= 5 + MAX_IN_FLIGHT - 1
    assert fake_providers.script("claude").calls == len(drafted)
    assert spent(store, "claude", EPOCH) == CALL_USD * len(drafted)
    assert spent(store, "claude", EPOCH) - CAP_USD <= MAX_IN_FLIGHT * CALL_USD
    # Each call asked once; after the first refusal only the calls already past the check did.
    assert ledger.queries - len(drafted) <= MAX_IN_FLIGHT
    with store.engine.connect() as connection:
        called = set(connection.scalars(select(LLMCall.task_id)))
    assert called == set(drafted)

    # The next UTC day the refused ones go through.
    clock.advance(24 * 3600)
    again = dict(
        claude.generate_each(
            [r for r in requests if r.task_id in refused], call_log=store.call_log("r2"),
            budget=budget,
        )
    )  # fmt: skip
    assert all(isinstance(outcome, Generation) for outcome in again.values())
    assert spent(store, "claude", EPOCH + timedelta(days=1)) == CALL_USD * len(refused)


def latest_this_run(instance: dg.DagsterInstance, asset: str, task_id: str) -> object:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(dg.AssetKey(asset), asset_partitions=[task_id]), limit=1
    ).records
    materialisation = records[0].asset_materialization
    assert materialisation is not None
    return materialisation.metadata["this_run"].value


def test_a_budget_that_runs_out_mid_run_holds_the_rest_until_the_next_utc_day(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
) -> None:
    """Through the Dagster graph: claude live under a cap of five calls a day (its clock a fake
    one), openai and kimi offline. The tasks claude did not draft stay in `drafting` with no
    claude draft, held to the next midnight; their ballots leave them alone although the
    other two drafts would make quorum; the next day they go to voting."""
    fixed_cost_calls(fake_providers)
    clock = FakeTime()
    claude = fake_providers.resource(
        "claude", clock=clock, max_in_flight=MAX_IN_FLIGHT, daily_budget_usd=float(CAP_USD),
        **FAST,
    )  # fmt: skip
    ids = [f"svc.capped.handler_{i}" for i in range(8)]
    store.add_tasks([task_with_prompt_of(task_id, PROMPT_CHARS) for task_id in ids])

    first = materialize_tasks(instance, store.database_url, ids, providers={"claude_llm": claude})

    assert first.success
    drafted = store.latest_drafts(ids, "claude")
    held = store.held_tasks(now=EPOCH)
    assert 5 <= len(drafted) <= 5 + MAX_IN_FLIGHT - 1
    assert sorted(held) == sorted(set(ids) - set(drafted))
    assert fake_providers.script("claude").calls == len(drafted)
    assert spent(store, "claude", EPOCH) - CAP_USD <= MAX_IN_FLIGHT * CALL_USD
    midnight = datetime.combine(DAY_ONE + timedelta(days=1), datetime.min.time(), UTC)
    for task_id, (until, reason) in held.items():
        assert until == midnight
        assert "DRAFTS_CLAUDE_DAILY_BUDGET_USD=$0.055 reached" in reason
        assert latest_this_run(instance, "claude_draft", task_id) == "held, daily budget reached"
    tasks = store.tasks_by_id(ids)
    assert {task_id for task_id in ids if tasks[task_id].status == "voting"} == set(drafted)
    assert all(tasks[t].attempts == 0 and tasks[t].last_error is None for t in held)
    assert all(labels == [] for labels in store.ballot_labels(list(held)).values())
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(DraftClaim)).scalar_one() == 0
    warnings = [
        str(event.user_message)
        for event in instance.all_logs(first.run_id)
        if event.level == 30  # logging.WARNING
    ]
    assert any(
        "claude: claude's daily budget DRAFTS_CLAUDE_DAILY_BUDGET_USD=$0.055 reached" in line
        and f"{len(held)} task(s) left in drafting, no draft stored, held until "
        f"{midnight:%Y-%m-%d} 00:00 UTC"
        in line
        for line in warnings
    ), warnings
    # The below-quorum schedule leaves them until their hold has passed.
    assert store.retry_candidates(100, 1800, now=EPOCH + timedelta(hours=1)) == []
    after = store.retry_candidates(100, 1800, now=midnight + timedelta(minutes=1))
    assert sorted(task_id for task_id, _ in after) == sorted(held)

    clock.advance(24 * 3600)
    second = materialize_tasks(
        instance, store.database_url, sorted(held), providers={"claude_llm": claude}
    )

    assert second.success
    assert store.task_ids("voting") == ids
    assert fake_providers.script("claude").calls == len(ids)
    assert spent(store, "claude", midnight) == CALL_USD * len(held)
    assert all(task.held_until is None for task in store.tasks_by_id(ids).values())


@pytest.mark.parametrize(
    ("unpriced", "refusal"),
    [
        ({"model": "mystery-model-1"}, "DRAFTS_DAILY_BUDGET_USD set, but claude's"),
        # The fallback's calls count against the caps too.
        ({"fallback_model": "mystery-model-2"}, "fallback model 'mystery-model-2' has no price"),
    ],
    ids=["model", "fallback model"],
)
def test_a_cap_on_a_provider_without_a_price_fails_the_run_before_any_request(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    unpriced: dict[str, str],
    refusal: str,
) -> None:
    """A spend that could not be counted could never be kept under a cap."""
    monkeypatch.setenv("DRAFTS_DAILY_BUDGET_USD", "10")
    ids = ["svc.unpriced"]
    store.add_tasks([make_task(ids[0])])
    claude = fake_providers.resource("claude", **unpriced, **FAST)
    with pytest.raises(ConfigurationError, match=refusal):
        materialize_tasks(instance, store.database_url, ids, providers={"claude_llm": claude})
    assert fake_providers.script("claude").calls == 0
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(LLMCall)).scalar_one() == 0
        assert connection.execute(select(func.count()).select_from(DraftClaim)).scalar_one() == 0
    assert store.task_ids("drafting") == ids


def test_no_cap_ever_stops_the_offline_providers(
    instance: dg.DagsterInstance,
    store: DraftStore,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRAFTS_DAILY_BUDGET_USD", "0")
    ids = [f"svc.free.f{i}" for i in range(3)]
    store.add_tasks([make_task(task_id) for task_id in ids])
    assert materialize_tasks(instance, store.database_url, ids).success
    assert store.task_ids("voting") == ids


def test_a_ballot_leaves_a_held_task_as_it_is_until_the_hold_is_lifted(store: DraftStore) -> None:
    store.add_tasks([make_task("svc.held")])
    for provider in ("openai", "kimi"):
        assert store.add_draft(make_draft("svc.held", provider)) is not None
    store.hold_tasks(["svc.held"], at(0, day=21), "claude: daily budget reached")
    [outcome] = cast_ballots(
        store, ["svc.held"], min_drafts=2, max_attempts=3, rng=random.Random(0)
    )
    assert outcome.outcome == "held"
    assert outcome.reason == "held until 2026-11-21 00:00 UTC: claude: daily budget reached"
    task = store.tasks_by_id(["svc.held"])["svc.held"]
    assert (task.status, task.attempts, task.last_error) == ("drafting", 0, None)
    store.clear_holds(["svc.held"])
    [outcome] = cast_ballots(
        store, ["svc.held"], min_drafts=2, max_attempts=3, rng=random.Random(0)
    )
    assert outcome.outcome == "voting"


@pytest.mark.slow
def test_run_skips_held_tasks_and_says_so(tmp_path: Path, store: DraftStore) -> None:
    store.add_tasks([make_task("svc.free"), make_task("svc.waiting", symbol="waiting")])
    tomorrow = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    store.hold_tasks(["svc.waiting"], tomorrow, "claude: daily budget reached")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DRAFTS_")},
        "DRAFTS_DATA_DIR": str(tmp_path / "data"),
        "DRAFTS_DATABASE_URL": store.database_url,
        "DRAFTS_LLM_MODE": "offline",
    }
    result = subprocess.run(
        [sys.executable, "-m", "drafts_pipeline", "run"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        f"1 task(s) held back by a daily budget until {tomorrow:%Y-%m-%d %H:%M} UTC at the "
        "latest: skipped, drafted by the first run after their hold"
    ) in result.stdout
    assert "1 run(s), 1 task(s)" in result.stdout
    assert store.task_ids("voting") == ["svc.free"]
    assert store.task_ids("drafting") == ["svc.waiting"]
