"""The retry layer without HTTP: classification, Retry-After, backoff, decisions, the pace, the
limiter and the call-with-retry loop on a fake clock."""

import json
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anthropic
import httpx2
import openai
import pytest

from drafts_pipeline.errors import ProviderError
from drafts_pipeline.llm.calling import ProviderReply, RetryingCaller
from drafts_pipeline.llm.generation import CallAttempt, TokenUsage
from drafts_pipeline.llm.limits import (
    BOOKING_WAIT_CREDIT_S,
    MIN_RATE_FACTOR,
    PACE_HEADROOM,
    LimiterPaused,
    PaceState,
    RequestLimiter,
    book_start,
    slowed_down,
    sped_up,
)
from drafts_pipeline.llm.pricing import ModelPrice
from drafts_pipeline.llm.retry import (
    Failure,
    MalformedResponseError,
    RetryPolicy,
    backoff_s,
    classify,
    decide,
    retry_after_seconds,
)
from drafts_pipeline_tests.fake_clock import EPOCH, FakeTime
from drafts_pipeline_tests.provider_doubles import RecordingCallLog

ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
OPENAI_URL = "https://api.openai.com/v1/chat/completions"
MOONSHOT_URL = "https://api.moonshot.ai/v1/chat/completions"


def anthropic_error(
    status: int, error_type: str, message: str, error_code: str | None = None, **headers: str
) -> Exception:
    """The exception the Anthropic SDK itself raises for this answer."""
    error: dict[str, object] = {"type": error_type, "message": message}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    response = httpx2.Response(
        status,
        headers=headers,
        json={"type": "error", "error": error, "request_id": "req_a"},
        request=httpx2.Request("POST", ANTHROPIC_URL),
    )
    return anthropic.Anthropic(api_key="unused")._make_status_error_from_response(response)


def openai_error(
    status: int, error_type: str, message: str, code: str | None = None, **headers: str
) -> Exception:
    """The exception the OpenAI SDK itself raises for this answer."""
    error: dict[str, object] = {"message": message, "type": error_type, "param": None, "code": code}
    return _openai_sdk_error(status, error, OPENAI_URL, headers)


def moonshot_error(status: int, error_type: str, message: str) -> Exception:
    """Moonshot's answers, as the OpenAI SDK pointed at Moonshot raises them."""
    return _openai_sdk_error(status, {"message": message, "type": error_type}, MOONSHOT_URL, {})


def _openai_sdk_error(
    status: int, error: dict[str, object], url: str, headers: dict[str, str]
) -> Exception:
    response = httpx2.Response(
        status, headers=headers, json={"error": error}, request=httpx2.Request("POST", url)
    )
    return openai.OpenAI(api_key="unused")._make_status_error_from_response(response)


QUOTA_MESSAGE = "You exceeded your current quota, please check your plan and billing details."
CREDIT_MESSAGE = "Your credit balance is too low to access the Anthropic API."
SUSPENDED_MESSAGE = "Your account is suspended, please check your plan and billing details"

RETRYABLE = {
    "anthropic-429": (anthropic_error(429, "rate_limit_error", "slow down"), "rate_limited"),
    "anthropic-529": (anthropic_error(529, "overloaded_error", "Overloaded"), "overloaded"),
    "anthropic-500": (anthropic_error(500, "api_error", "oops"), "server_error"),
    "anthropic-503": (anthropic_error(503, "api_error", "down"), "server_error"),
    "anthropic-504": (anthropic_error(504, "timeout_error", "slow"), "server_error"),
    "anthropic-408": (anthropic_error(408, "timeout_error", "slow"), "request_timeout"),
    "anthropic-409": (anthropic_error(409, "conflict_error", "again"), "conflict"),
    "anthropic-429-ramp-limit": (
        anthropic_error(429, "rate_limit_error", "ramping", "ramp_limit_exceeded"),
        "rate_limited",
    ),
    "openai-429": (
        openai_error(429, "requests", "Rate limit reached for requests", "rate_limit_exceeded"),
        "rate_limited",
    ),
    "openai-500": (openai_error(500, "server_error", "error"), "server_error"),
    "openai-502": (openai_error(502, "server_error", "bad gateway"), "server_error"),
    "moonshot-429": (
        moonshot_error(429, "rate_limit_reached_error", "max RPM: 3, try again after 1 seconds"),
        "rate_limited",
    ),
    "moonshot-429-overloaded": (
        moonshot_error(429, "engine_overloaded_error", "The engine is currently overloaded"),
        "rate_limited",
    ),
}

NOT_RETRYABLE = {
    "anthropic-400": (
        anthropic_error(400, "invalid_request_error", "max_tokens: Field required"),
        "bad_request",
    ),
    "anthropic-401": (
        anthropic_error(401, "authentication_error", "invalid x-api-key"),
        "authentication",
    ),
    "anthropic-403": (anthropic_error(403, "permission_error", "no"), "permission"),
    "anthropic-404": (anthropic_error(404, "not_found_error", "model: x"), "not_found"),
    "anthropic-422": (anthropic_error(422, "invalid_request_error", "bad"), "unprocessable"),
    "anthropic-413": (anthropic_error(413, "invalid_request_error", "too large"), "http_error"),
    "anthropic-429-spend-limit": (
        anthropic_error(
            429, "rate_limit_error", "Usage blocked", "enforced_spend_limit_reached",
            **{"retry-after": "1"},
        ),
        "quota",
    ),
    "anthropic-429-contract-limit": (
        anthropic_error(429, "rate_limit_error", "blocked", "contract_spend_limit_reached"),
        "quota",
    ),
    "anthropic-400-credit-balance": (
        anthropic_error(400, "invalid_request_error", CREDIT_MESSAGE),
        "quota",
    ),
    "anthropic-402-billing": (anthropic_error(402, "billing_error", "pay"), "quota"),
    "openai-429-insufficient-quota": (
        openai_error(429, "insufficient_quota", QUOTA_MESSAGE, "insufficient_quota"),
        "quota",
    ),
    "openai-401": (
        openai_error(401, "invalid_request_error", "Incorrect API key provided", "invalid_api_key"),
        "authentication",
    ),
    "openai-400": (
        openai_error(400, "invalid_request_error", "Unsupported parameter: 'max_tokens'"),
        "bad_request",
    ),
    "openai-404": (
        openai_error(404, "invalid_request_error", "No such model", "model_not_found"),
        "not_found",
    ),
    "moonshot-429-quota": (
        moonshot_error(429, "exceeded_current_quota_error", SUSPENDED_MESSAGE),
        "quota",
    ),
    "moonshot-403-balance": (
        moonshot_error(403, "exceeded_current_quota_error", "insufficient balance"),
        "quota",
    ),
    "moonshot-401": (
        moonshot_error(401, "invalid_authentication_error", "Invalid Authentication"),
        "authentication",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("error", "kind"), RETRYABLE.values(), ids=RETRYABLE.keys())
def test_transient_statuses_are_retryable(error: Exception, kind: str) -> None:
    failure = classify(error)

    assert failure.retryable
    assert failure.kind == kind
    assert failure.status_code == error.status_code  # type: ignore[attr-defined]


@pytest.mark.parametrize(("error", "kind"), NOT_RETRYABLE.values(), ids=NOT_RETRYABLE.keys())
def test_permanent_statuses_and_quota_are_not_retryable(error: Exception, kind: str) -> None:
    failure = classify(error)

    assert not failure.retryable
    assert failure.kind == kind
    assert failure.retry_after_s is None


def test_a_request_id_is_read_from_either_header() -> None:
    claude = classify(anthropic_error(500, "api_error", "x", **{"request-id": "req_9"}))
    gpt = classify(openai_error(500, "server_error", "x", **{"x-request-id": "req_8"}))

    assert claude.request_id == "req_9"
    assert gpt.request_id == "req_8"


@pytest.mark.parametrize("sdk", [anthropic, openai], ids=["anthropic", "openai"])
def test_timeouts_and_connection_errors_are_retryable(sdk: object) -> None:
    request = httpx2.Request("POST", OPENAI_URL)
    timeout = classify(sdk.APITimeoutError(request=request))  # type: ignore[attr-defined]
    refused = classify(sdk.APIConnectionError(request=request))  # type: ignore[attr-defined]

    assert (timeout.retryable, timeout.kind) == (True, "timeout")
    assert (refused.retryable, refused.kind) == (True, "connection")
    assert "base_url" in refused.message


@pytest.mark.parametrize(
    "error",
    [
        MalformedResponseError("no choices"),
        json.JSONDecodeError("Expecting value", '{"id": "x", "ty', 14),
        openai.APIResponseValidationError(
            httpx2.Response(200, request=httpx2.Request("POST", OPENAI_URL)), {"unexpected": True}
        ),
    ],
    ids=["ours", "json", "sdk-validation"],
)
def test_malformed_answers_are_retryable(error: Exception) -> None:
    failure = classify(error)

    assert (failure.retryable, failure.kind) == (True, "malformed_response")


def test_an_unexpected_exception_is_not_retried() -> None:
    failure = classify(KeyError("choices"))

    assert (failure.retryable, failure.kind) == (False, "unexpected")


def test_messages_say_what_to_do() -> None:
    unauthorized = classify(
        anthropic_error(401, "authentication_error", "invalid x-api-key"),
        key_env_var="ANTHROPIC_API_KEY",
    )
    broke = classify(openai_error(429, "insufficient_quota", QUOTA_MESSAGE, "insufficient_quota"))

    assert unauthorized.message == "401 authentication failed: check ANTHROPIC_API_KEY"
    assert "add credit" in broke.message


def test_messages_never_repeat_a_key() -> None:
    masked = "sk-proj-abc********************wxyz"
    unauthorized = classify(
        openai_error(401, "invalid_request_error", f"Incorrect API key provided: {masked}.")
    )
    forbidden = classify(
        openai_error(403, "invalid_request_error", "Key sk-fake-01234567 has no access")
    )

    assert masked not in unauthorized.message and "wxyz" not in unauthorized.message
    assert "sk-fake-01234567" not in forbidden.message
    assert "[redacted]" in forbidden.message


def test_ordinary_words_are_not_mistaken_for_keys() -> None:
    failure = classify(openai_error(400, "invalid_request_error", "metadata takes key-value pairs"))

    assert "key-value pairs" in failure.message


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"Retry-After-Ms": "1500"}, 1.5),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.2"}, 0.2),
        ({"Retry-After": "Fri, 20 Nov 2026 10:00:30 GMT"}, 30.0),
        ({"retry-after": "Fri, 20 Nov 2026 09:59:00 GMT"}, 0.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "soon", "retry-after": "4"}, 4.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after_headers(headers: dict[str, str], seconds: float | None) -> None:
    now = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)

    assert retry_after_seconds(headers, now=now) == seconds


def test_retry_after_comes_with_a_retryable_failure() -> None:
    failure = classify(anthropic_error(429, "rate_limit_error", "x", **{"retry-after": "7"}))

    assert failure.retry_after_s == 7.0


class Extreme(random.Random):
    """A random source that always draws the low or the high end."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@pytest.mark.parametrize(
    ("jitter", "attempt", "low", "high"),
    [
        ("equal", 1, 0.5, 1.0),
        ("equal", 2, 1.0, 2.0),
        ("equal", 3, 2.0, 4.0),
        ("equal", 10, 5.0, 10.0),
        ("full", 1, 0.0, 1.0),
        ("full", 3, 0.0, 4.0),
        ("full", 10, 0.0, 10.0),
    ],
)
def test_backoff_grows_exponentially_within_its_jitter_and_cap(
    jitter: str, attempt: int, low: float, high: float
) -> None:
    policy = RetryPolicy(initial_delay_s=1.0, max_delay_s=10.0, jitter=jitter)

    assert backoff_s(attempt, policy, Extreme(high=False)) == low
    assert backoff_s(attempt, policy, Extreme(high=True)) == high
    assert low <= backoff_s(attempt, policy, random.Random(attempt)) <= high


def test_equal_jitter_spreads_a_crowd() -> None:
    policy = RetryPolicy(initial_delay_s=1.0, max_delay_s=10.0)
    rng = random.Random(1)

    delays = {round(backoff_s(3, policy, rng), 6) for _ in range(20)}

    assert len(delays) == 20


POLICY = RetryPolicy(max_attempts=3, initial_delay_s=1.0, max_delay_s=8.0, retry_after_cap_s=10.0)
RATE_LIMITED = Failure(True, "rate_limited", "429 rate_limit_error", status_code=429)


def test_a_permanent_failure_stops_at_once() -> None:
    failure = Failure(False, "authentication", "401 authentication failed: check KEY")

    decision = decide(failure, 1, POLICY)

    assert not decision.retry
    assert decision.reason == failure.message


def test_attempts_are_bounded() -> None:
    assert decide(RATE_LIMITED, 2, POLICY).retry
    last = decide(RATE_LIMITED, 3, POLICY)

    assert not last.retry
    assert "gave up after 3 attempt(s)" in last.reason


def test_retry_after_replaces_the_backoff() -> None:
    failure = Failure(True, "rate_limited", "429", status_code=429, retry_after_s=0.2)

    decision = decide(failure, 1, POLICY, Extreme(high=True))

    assert decision.retry
    assert decision.delay_s == 0.2


def test_retry_after_up_to_the_cap_is_honoured() -> None:
    failure = Failure(True, "rate_limited", "429", status_code=429, retry_after_s=10.0)

    assert decide(failure, 1, POLICY).delay_s == 10.0


def test_retry_after_above_the_cap_fails_at_once() -> None:
    failure = Failure(True, "rate_limited", "429", status_code=429, retry_after_s=3600)

    decision = decide(failure, 1, POLICY)

    assert not decision.retry
    assert decision.delay_s == 0
    assert "3600 s" in decision.reason and "retry_after_cap_s=10" in decision.reason


def test_without_retry_after_the_backoff_applies() -> None:
    decision = decide(RATE_LIMITED, 2, POLICY, Extreme(high=False))

    assert decision.delay_s == 1.0


@pytest.mark.parametrize("settings", [{"max_attempts": 0}, {"jitter": "none"}])
def test_a_policy_refuses_nonsense(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**settings)  # type: ignore[arg-type]


def limiter_on(fake: FakeTime, per_minute: float = 60.0, in_flight: int = 4) -> RequestLimiter:
    return RequestLimiter(in_flight, per_minute, clock=fake.clock, sleep=fake.sleep)


def starts(limiter: RequestLimiter, fake: FakeTime, count: int) -> list[float]:
    times = []
    for _ in range(count):
        with limiter.slot():
            times.append(fake.now)
    return times


def test_requests_are_paced_to_the_rate() -> None:
    fake = FakeTime()

    times = starts(limiter_on(fake, per_minute=120), fake, 4)

    # Half a percent under 120 a minute.
    assert times == pytest.approx([1000.0 + k * 0.5 / PACE_HEADROOM for k in range(4)])


def test_a_429_pauses_everyone_and_halves_the_rate() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, per_minute=60)
    starts(limiter, fake, 1)

    limiter.on_rate_limited(5.0)
    limiter.on_rate_limited(5.0)
    times = starts(limiter, fake, 2)

    assert limiter.rate_factor == 0.5
    assert times == pytest.approx([1005.0, 1005.0 + 2 / PACE_HEADROOM])


def test_successes_win_the_rate_back() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake)
    limiter.on_rate_limited(0.0)
    limiter.on_rate_limited(0.0)

    for _ in range(100):
        limiter.on_success()

    assert limiter.rate_factor == 1.0


def test_a_pause_longer_than_the_caller_accepts_raises_without_waiting() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake)
    limiter.on_rate_limited(3600)

    with pytest.raises(LimiterPaused) as raised, limiter.slot(max_pause_s=60):
        pass

    assert raised.value.wait_s == pytest.approx(3600)
    assert fake.slept == []
    assert limiter.paused_for_s == pytest.approx(3600)


def test_a_429_that_comes_in_while_the_caller_prepares_moves_it_behind_the_pause() -> None:
    """Its start is due at once, but a 429 elsewhere paused the provider while it wrote its
    row: it goes when the pause ends, not at the start it first booked."""
    fake = FakeTime()
    limiter = limiter_on(fake)
    waits: list[float] = []

    def prepare(wait_s: float) -> None:
        waits.append(wait_s)
        limiter.on_rate_limited(2.0)

    with limiter.slot(prepare=prepare):
        started = fake.now

    assert waits == [0.0]
    assert started == pytest.approx(1002.0)


def test_the_in_flight_cap_holds_across_threads() -> None:
    """Ten threads, a cap of 3: inside the slot, callers meet in threes (a lower cap would never
    fill the barrier) and never more than three are inside at once."""
    limiter = RequestLimiter(3, 60_000)
    meet = threading.Barrier(3, timeout=10)
    lock = threading.Lock()
    current = peak = 0

    def call() -> None:
        nonlocal current, peak
        with limiter.slot():
            with lock:
                current += 1
                peak = max(peak, current)
            meet.wait()
            with lock:
                current -= 1

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda _: call(), range(21)))

    assert peak == 3


@pytest.mark.parametrize(("in_flight", "per_minute"), [(0, 60), (1, 0)])
def test_a_limiter_refuses_nonsense(in_flight: int, per_minute: float) -> None:
    with pytest.raises(ValueError):
        RequestLimiter(in_flight, per_minute)


def test_the_pace_books_one_interval_per_start_scaled_by_the_rate() -> None:
    state, first = book_start(PaceState.fresh(100.0), 100.0, 0.5, None)
    state, second = book_start(state, 100.0, 0.5, None)
    slow, third = book_start(replace_factor(state, 0.5), 100.0, 0.5, None)

    assert (first, second, third) == (100.0, 100.5, 101.0)
    assert slow.next_start == 102.0


def test_a_booking_that_waited_for_the_book_keeps_the_start_it_asked_for() -> None:
    due = PaceState(next_start=100.0, paused_until=0.0)

    # Asked at 100.0 for the start due then; the book let it in 0.1 s later.
    waited, start = book_start(due, 100.1, 0.1, None, asked_at=100.0)
    # The book was idle: the start it asked for, not when it got in.
    idle, idle_start = book_start(due, 100.5, 0.1, None, asked_at=100.45)
    # A long wait: credited up to BOOKING_WAIT_CREDIT_S only.
    long, long_start = book_start(due, 101.0, 0.1, None, asked_at=100.0)
    # Asked on time with no wait: as before.
    prompt, prompt_start = book_start(due, 99.0, 0.1, None, asked_at=99.0)

    assert (start, waited.next_start) == (100.0, pytest.approx(100.1))
    assert (idle_start, idle.next_start) == (100.45, pytest.approx(100.55))
    assert long_start == pytest.approx(101.0 - BOOKING_WAIT_CREDIT_S)
    assert long.next_start == pytest.approx(101.0 - BOOKING_WAIT_CREDIT_S + 0.1)
    assert (prompt_start, prompt.next_start) == (100.0, pytest.approx(100.1))


def replace_factor(state: PaceState, factor: float) -> PaceState:
    return PaceState(state.next_start, state.paused_until, factor)


def test_the_pace_halves_once_per_pause_and_not_below_its_floor() -> None:
    state = slowed_down(PaceState.fresh(0.0), 0.0, 5.0)
    during = slowed_down(state, 1.0, 5.0)
    after = slowed_down(during, 10.0, 0.0)
    floor = PaceState(0.0, 0.0, MIN_RATE_FACTOR)

    assert (state.rate_factor, state.paused_until) == (0.5, 5.0)
    assert (during.rate_factor, during.paused_until) == (0.5, 6.0)
    assert after.rate_factor == 0.25
    assert slowed_down(floor, 1.0, 0.0).rate_factor == MIN_RATE_FACTOR
    assert sped_up(PaceState(0.0, 0.0, 0.9), 0.5).rate_factor == 1.0


def test_a_429_long_after_the_last_pause_pauses_without_slowing() -> None:
    calm = PaceState(next_start=100.0, paused_until=0.0, rate_factor=1.0)

    alone = slowed_down(calm, 100.0, 1.0)
    again = slowed_down(alone, 130.0, 1.0)

    assert (alone.rate_factor, alone.paused_until) == (1.0, 101.0)
    assert (again.rate_factor, again.paused_until) == (0.5, 131.0)


def test_a_paused_pace_refuses_a_caller_who_will_not_wait_and_books_nothing() -> None:
    paused = PaceState(next_start=0.0, paused_until=100.0)

    with pytest.raises(LimiterPaused) as raised:
        book_start(paused, 10.0, 1.0, max_pause_s=60)
    state, start = book_start(paused, 10.0, 1.0, max_pause_s=None)

    assert raised.value.wait_s == 90.0
    assert (start, state.next_start) == (100.0, 101.0)


REPLY = ProviderReply(
    text="{}",
    model="model-2026-11-01",
    finish_reason="stop",
    request_id="req_1",
    usage=TokenUsage(input_tokens=1000, output_tokens=100, cached_tokens=200),
)
PRICE_1_2 = ModelPrice(input=Decimal(1), cached_input=Decimal("0.5"), output=Decimal(2))
# Not shaped like a vendor key, so only the caller's own redaction of its secret can hide it.
SECRET = "test-secret-value-0123456789"


def caller_on(fake: FakeTime, **policy: object) -> RetryingCaller:
    settings: dict[str, object] = {"max_attempts": 3, "initial_delay_s": 1.0, **policy}
    return RetryingCaller(
        provider="claude",
        model="model",
        policy=RetryPolicy(**settings),  # type: ignore[arg-type]
        limiter=RequestLimiter(4, 60, clock=fake.clock, sleep=fake.sleep),
        price=PRICE_1_2,
        key_env_var="ANTHROPIC_API_KEY",
        secret=SECRET,
        clock=fake,
    )


def scripted(
    fake: FakeTime, *outcomes: Exception | ProviderReply, took_s: float = 2.0
) -> Callable[[], ProviderReply]:
    """A send that takes `took_s` on the fake clock, then raises or returns the next outcome."""
    pending = list(outcomes)

    def send() -> ProviderReply:
        fake.advance(took_s)
        outcome = pending.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return send


def test_the_loop_retries_records_each_attempt_and_prices_the_answer() -> None:
    fake = FakeTime()
    log = RecordingCallLog()
    overloaded = anthropic_error(529, "overloaded_error", "Overloaded", **{"retry-after": "3"})

    generation = caller_on(fake).call(scripted(fake, overloaded, REPLY), task_id="t1", call_log=log)

    assert [(kind, task, call.attempt) for kind, task, call in log.events] == [
        ("sent", "t1", 1), ("finished", "t1", 1), ("sent", "t1", 2), ("finished", "t1", 2),
    ]  # fmt: skip
    sent = log.events[0][2]
    assert (sent.latency_ms, sent.status_code, sent.usage) == (None, None, None)
    assert sent.started_at == EPOCH
    first, second = generation.calls
    assert (first.status_code, first.error_type, first.latency_ms) == (529, "overloaded", 2000)
    assert second.started_at == EPOCH.replace(second=5)  # 2 s answer, 3 s Retry-After
    assert log.events[3][2] == second
    assert 3.0 in fake.slept
    assert generation.usage == REPLY.usage and second.usage is REPLY.usage
    # 800 uncached * 1 + 200 cached * 0.5 + 100 out * 2, per million
    assert generation.cost_usd == second.cost_usd == Decimal("0.0011")
    assert (generation.model, generation.attempts, generation.latency_ms) == (REPLY.model, 2, 7000)


def test_a_call_log_that_cannot_record_stops_the_request() -> None:
    fake = FakeTime()
    sent: list[int] = []

    def send() -> ProviderReply:
        sent.append(1)
        return REPLY

    with pytest.raises(RuntimeError, match="database down"):
        caller_on(fake).call(
            send, task_id="t1", call_log=RecordingCallLog(RuntimeError("database down"))
        )

    assert sent == []


class ClockedCallLog(RecordingCallLog):
    """Notes the fake time at which each row is written."""

    def __init__(self, fake: FakeTime) -> None:
        super().__init__()
        self.fake = fake
        self.written_at: list[float] = []

    def call_sent(self, task_id: str, call: CallAttempt) -> object:
        self.written_at.append(self.fake.now)
        return super().call_sent(task_id, call)


def test_the_row_is_written_in_the_pace_wait_due_at_the_start() -> None:
    """The second call's start is booked a pace interval ahead: its row is written at once, due
    at that start, and the request goes out when it comes, not after the write."""
    fake = FakeTime()
    log = ClockedCallLog(fake)
    caller = caller_on(fake)
    caller.call(scripted(fake, REPLY, took_s=0), task_id="t1", call_log=log)

    generation = caller.call(scripted(fake, REPLY, took_s=0), task_id="t2", call_log=log)

    interval = timedelta(seconds=1 / PACE_HEADROOM)
    assert log.written_at == [1000.0, 1000.0]
    assert fake.slept == [pytest.approx(1 / PACE_HEADROOM)]
    due, finished = log.events[2][2], log.events[3][2]
    assert due.started_at == finished.started_at == EPOCH + interval
    assert generation.calls[0].started_at == EPOCH + interval


def test_a_long_pause_that_comes_in_during_the_wait_withdraws_the_row() -> None:
    """The row is written, then a 429 elsewhere pauses the provider longer than the caller
    waits: nothing is sent, and the row of the attempt that never went out is gone."""
    fake = FakeTime()
    log = RecordingCallLog()

    def sleep_through_a_429(seconds: float) -> None:
        limiter.on_rate_limited(3600)
        fake.sleep(seconds)

    limiter = RequestLimiter(4, 60, clock=fake.clock, sleep=sleep_through_a_429)
    caller = caller_on(fake, retry_after_cap_s=60)
    caller.limiter = limiter
    caller.call(scripted(fake, REPLY, took_s=0), task_id="t1", call_log=log)
    sent: list[int] = []

    def send() -> ProviderReply:
        sent.append(1)
        return REPLY

    with pytest.raises(ProviderError, match="retry_after_cap_s=60"):
        caller.call(send, task_id="t2", call_log=log)

    assert sent == []
    assert [(kind, task) for kind, task, _ in log.events] == [("sent", "t1"), ("finished", "t1")]


def test_a_short_pause_during_the_wait_rebooks_the_start_and_keeps_one_row() -> None:
    """A 429 elsewhere pauses the provider 2 s while the attempt waits: it books again behind
    the pause, keeps the one row it wrote, and completes it with the moment it really went
    out, not the start first booked."""
    fake = FakeTime()
    log = RecordingCallLog()
    paused: list[float] = []

    def sleep_through_one_429(seconds: float) -> None:
        if not paused:
            paused.append(fake.now)
            limiter.on_rate_limited(2.0)
        fake.sleep(seconds)

    limiter = RequestLimiter(4, 60, clock=fake.clock, sleep=sleep_through_one_429)
    caller = caller_on(fake)
    caller.limiter = limiter
    caller.call(scripted(fake, REPLY, took_s=0), task_id="t1", call_log=log)

    generation = caller.call(scripted(fake, REPLY, took_s=0), task_id="t2", call_log=log)

    events = [(kind, task) for kind, task, _ in log.events]
    assert events == [("sent", "t1"), ("finished", "t1"), ("sent", "t2"), ("finished", "t2")]
    due, finished = log.events[2][2].started_at, log.events[3][2].started_at
    assert due == EPOCH + timedelta(seconds=1 / PACE_HEADROOM)
    # Behind the pause (1002.0) and its own first booking's interval (two from 1000).
    assert (
        finished == EPOCH + timedelta(seconds=2 / PACE_HEADROOM) == generation.calls[0].started_at
    )


def test_an_attempt_stopped_before_it_goes_out_takes_its_row_back() -> None:
    """Anything but the send failing after the row was written (here `on_start`): the row of
    the attempt that never went out is withdrawn, and the error goes on up."""
    log = RecordingCallLog()
    sent: list[int] = []

    def send() -> ProviderReply:
        sent.append(1)
        return REPLY

    def on_start() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        caller_on(FakeTime()).call(send, task_id="t1", call_log=log, on_start=on_start)

    assert sent == [] and log.events == []


def test_the_loop_gives_up_after_its_attempts_without_leaking_the_key() -> None:
    fake = FakeTime()
    echo = anthropic_error(500, "api_error", f"bad key {SECRET}")
    log = RecordingCallLog()

    with pytest.raises(ProviderError) as raised:
        caller_on(fake).call(scripted(fake, echo, echo, echo), task_id="t1", call_log=log)

    assert [call.attempt for call in raised.value.calls] == [1, 2, 3]
    assert len(log.events) == 6
    assert "gave up after 3 attempt(s)" in str(raised.value)
    assert SECRET not in str(raised.value) + "".join(repr(call) for call in raised.value.calls)
    assert len(fake.slept) >= 2


def test_an_account_failure_ends_the_next_calls_without_a_request() -> None:
    fake = FakeTime()
    caller = caller_on(fake)
    broke = openai_error(429, "insufficient_quota", QUOTA_MESSAGE, "insufficient_quota")
    sent: list[str] = []

    def send() -> ProviderReply:
        sent.append("sent")
        return REPLY

    with pytest.raises(ProviderError):
        caller.call(scripted(fake, broke), task_id="t1")
    with pytest.raises(ProviderError) as second:
        caller.call(send, task_id="t2")

    assert sent == []
    assert second.value.calls == ()
    assert "not attempted" in str(second.value)
