"""`daily_llm_usage`: calls, failures, tokens, the cache hit rate and exact cost per UTC day, and
its schedule."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest

from drafts_pipeline.definitions import defs
from drafts_pipeline.defs.usage.assets import daily_llm_usage
from drafts_pipeline.llm.generation import CallAttempt, TokenUsage
from drafts_pipeline.store import DraftStore

DAY = datetime(2026, 11, 21, tzinfo=UTC)


def call(
    provider: str,
    at: datetime,
    cost: str | None,
    *,
    failed: bool = False,
    attempt: int = 1,
    cached: int = 10,
) -> CallAttempt:
    return CallAttempt(
        provider=provider,
        model=f"{provider}-model",
        attempt=attempt,
        started_at=at,
        latency_ms=900,
        status_code=429 if failed else 200,
        error_type="RateLimitError" if failed else None,
        usage=None
        if failed
        else TokenUsage(100, 40, cached_tokens=cached, cache_write_tokens=30, reasoning_tokens=5),
        cost_usd=None if cost is None else Decimal(cost),
    )


@pytest.fixture
def calls(store: DraftStore) -> DraftStore:
    """Claude: a 429 and its retry, and one more call, on DAY; OpenAI: one call on DAY, one a
    microsecond before it and one at the next midnight (neither counts for DAY)."""
    store.add_calls(
        "shop.a",
        "run-1",
        [
            call("claude", DAY, None, failed=True),
            call("claude", DAY + timedelta(seconds=2), "0.00123456", attempt=2),
        ],
    )
    store.add_calls("shop.b", "run-1", [call("claude", DAY + timedelta(hours=23), "0.00100001")])
    store.add_calls(
        "shop.a", "run-1", [call("openai", DAY + timedelta(hours=12), "0.0005", cached=60)]
    )
    store.add_calls("shop.c", "run-0", [call("openai", DAY - timedelta(microseconds=1), "1")])
    store.add_calls("shop.d", "run-2", [call("openai", DAY + timedelta(days=1), "2")])
    # Sent, and its run died before the answer: a row with no outcome.
    store.call_log("run-3").call_sent("shop.e", call("openai", DAY + timedelta(hours=13), None))
    return store


def test_usage_of_a_day_counts_attempts_failures_tokens_and_exact_cost(calls: DraftStore) -> None:
    rows = calls.usage_between(DAY, DAY + timedelta(days=1))
    assert rows == [
        {
            "provider": "claude",
            "model": "claude-model",
            "calls": 3,
            "failures": 1,
            "unfinished": 0,
            "input_tokens": 200,
            "output_tokens": 80,
            "cached_tokens": 20,
            "cache_write_tokens": 60,
            "cache_hit_rate": 0.1,
            "reasoning_tokens": 10,
            "cost_usd": Decimal("0.00223457"),
        },
        {
            "provider": "openai",
            "model": "openai-model",
            "calls": 2,
            "failures": 0,
            "unfinished": 1,
            "input_tokens": 100,
            "output_tokens": 40,
            "cached_tokens": 60,
            "cache_write_tokens": 30,
            "cache_hit_rate": 0.6,
            "reasoning_tokens": 5,
            "cost_usd": Decimal("0.0005"),
        },
    ]
    assert calls.usage_between(DAY + timedelta(days=2), DAY + timedelta(days=3)) == []


def test_the_asset_materialises_one_day(calls: DraftStore, instance: dg.DagsterInstance) -> None:
    result = dg.materialize(
        [daily_llm_usage], instance=instance, resources={"store": calls}, partition_key="2026-11-21"
    )
    assert result.success
    frame = result.output_for_node("daily_llm_usage")
    assert list(frame["provider"]) == ["claude", "openai"]
    assert set(frame["day"]) == {"2026-11-21"}
    assert sum(frame["cost_usd"]) == Decimal("0.00273457")
    metadata = result.asset_materializations_for_node("daily_llm_usage")[0].metadata
    assert metadata["calls"].value == 5
    assert metadata["failures"].value == 1
    assert metadata["unfinished"].value == 1
    assert metadata["cost_usd_by_provider"].value == {"claude": "0.002235", "openai": "0.000500"}
    # Cached input tokens over input tokens: (10 + 10 + 60) / (100 + 100 + 100).
    assert list(frame["cache_hit_rate"]) == [0.1, 0.6]
    assert metadata["cache_hit_rate"].value == pytest.approx(80 / 300)
    assert metadata["cache_hit_rate_by_provider"].value == {"claude": 0.1, "openai": 0.6}
    assert metadata["cache_write_tokens"].value == 90


def test_an_empty_day_is_an_empty_frame(store: DraftStore, instance: dg.DagsterInstance) -> None:
    result = dg.materialize(
        [daily_llm_usage], instance=instance, resources={"store": store}, partition_key="2026-01-02"
    )
    assert result.success
    assert result.output_for_node("daily_llm_usage").empty
    metadata = result.asset_materializations_for_node("daily_llm_usage")[0].metadata
    assert metadata["calls"].value == 0
    assert metadata["cost_usd"].value == 0.0
    # No input, no rate: shown as none, not as a rate of zero.
    assert metadata["cache_hit_rate"].value is None


def test_the_schedule_materialises_yesterday_and_the_day_before_again() -> None:
    """The day before yesterday again: batches collected since count on their submission day."""
    schedule = defs.resolve_schedule_def("daily_llm_usage_schedule")
    at = datetime(2026, 11, 22, 0, 15, tzinfo=UTC)
    repository = defs.get_repository_def()
    with dg.build_schedule_context(
        scheduled_execution_time=at, repository_def=repository
    ) as context:
        result = schedule.evaluate_tick(context)
    requests = result.run_requests or []
    assert [request.partition_key for request in requests] == ["2026-11-20", "2026-11-21"]
    assert len({request.run_key for request in requests}) == 2
    first_day = datetime(2026, 1, 2, 0, 15, tzinfo=UTC)  # DRAFTS_USAGE_START_DATE: 2026-01-01
    with dg.build_schedule_context(
        scheduled_execution_time=first_day, repository_def=repository
    ) as context:
        result = schedule.evaluate_tick(context)
    assert [request.partition_key for request in result.run_requests or []] == ["2026-01-01"]
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_a_bad_start_date_fails_the_run_naming_the_variable(
    calls: DraftStore, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRAFTS_USAGE_START_DATE", "21/11/2026")
    result = dg.materialize(
        [daily_llm_usage],
        instance=instance,
        resources={"store": calls},
        partition_key="2026-11-21",
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "DRAFTS_USAGE_START_DATE='21/11/2026' is not a date" in str(failure.step_failure_data)
