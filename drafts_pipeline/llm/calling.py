"""The one call-with-retry loop every live provider runs, with no Dagster and no SDK in it.

`RetryingCaller.call` takes a `send` callable (one HTTP attempt through an SDK, returning a
`ProviderReply` or raising the SDK's exception) and runs it under the retry policy (`retry.py`)
and the limiter every thread of the provider shares (`limits.py`). Each attempt is recorded twice
in the call log: in the pace's wait just before it is sent, and as its answer or error arrives.
The clock is injectable, so tests drive waits and latencies without sleeping.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

from drafts_pipeline.errors import ProviderError
from drafts_pipeline.llm.generation import (
    CallAttempt,
    CallLog,
    Generation,
    TokenUsage,
    billed_cost,
)
from drafts_pipeline.llm.limits import LimiterPaused, RequestLimiter
from drafts_pipeline.llm.pricing import ModelPrice, cost_usd
from drafts_pipeline.llm.retry import Failure, RetryPolicy, classify, decide

logger = logging.getLogger(__name__)

OnStart = Callable[[], None]
Admit = Callable[[datetime], None]
"""Asked, with the time the call's first attempt is due to start, as that start is booked and
right before the attempt's row is written; raises (e.g. `BudgetReached`) to keep the call from
being sent at all."""
REDACTED = "[redacted]"
# Failures that every later call of the same provider instance would repeat: stop calling.
ACCOUNT_FAILURES = {"authentication", "quota"}
# Failures after which every thread of the provider pauses, not only the one that got it.
SLOW_DOWN_KINDS = {"rate_limited", "overloaded"}


@dataclass(frozen=True)
class ProviderReply:
    """One successful HTTP attempt, in the project's terms; `usage` is None when the API
    reported none."""

    text: str
    model: str
    finish_reason: str | None
    request_id: str | None
    usage: TokenUsage | None


class Clock(Protocol):
    """Time as the loop sees it: wall time for records, a monotonic clock for latencies."""

    def utcnow(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def utcnow(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class NoCallLog:
    """The call log of a caller that keeps none (attempts still end up in `Generation.calls`)."""

    def call_sent(self, task_id: str, call: CallAttempt) -> object:
        return None

    def call_finished(self, handle: object, call: CallAttempt) -> None:
        return None

    def call_withdrawn(self, handle: object) -> None:
        return None


class RetryingCaller:
    """One provider's calls: the retry policy, the shared limiter, cost and redaction.

    Once a call fails on authentication or quota, later calls of the same caller (one run step,
    one CLI command) fail at once without a request: each would fail the same way.
    """

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        policy: RetryPolicy,
        limiter: RequestLimiter,
        price: ModelPrice | None,
        key_env_var: str,
        secret: str,
        clock: Clock | None = None,
    ) -> None:
        """`model` is the configured model every attempt is recorded under; `secret` (the API
        key) is removed from every message the caller makes."""
        self.provider = provider
        self.model = model
        self.policy = policy
        self.limiter = limiter
        self.price = price
        self.key_env_var = key_env_var
        self._secret = secret
        self._clock: Clock = clock or SystemClock()
        self._account_failure: Failure | None = None
        self._lock = threading.Lock()

    def call(
        self,
        send: Callable[[], ProviderReply],
        *,
        task_id: str,
        on_start: OnStart | None = None,
        call_log: CallLog | None = None,
        admit: Admit | None = None,
    ) -> Generation:
        """Attempts of `send` until one succeeds or the policy gives up (`ProviderError`).

        `admit` is asked once, in the limiter's slot as the first attempt's start is booked and
        right before its row is written, so that as little time as possible passes between a
        budget's check and the call's row; its exception propagates and nothing is sent. The
        retries of a call it admitted are part of that call. `on_start` is called once, as the
        first attempt is sent. An exception from `call_log.call_sent` propagates as it is: the
        request was not sent. An attempt's row is written in the pace's wait for its start;
        one that a long pause then keeps from going out is withdrawn."""
        log = call_log or NoCallLog()
        policy = self.policy
        with self._lock:
            earlier = self._account_failure
        if earlier is not None:
            message = f"not attempted, an earlier call failed: {earlier.message}"
            raise self._provider_error(earlier, message, ())
        calls: list[CallAttempt] = []
        first_started: float | None = None
        for attempt in range(1, policy.max_attempts + 1):
            announced: list[object] = []

            def prepare(
                wait_s: float, attempt: int = attempt, announced: list[object] = announced
            ) -> None:
                # In the pace's wait: the budget's check, then the row, both at the start due
                # (the day the call counts in).
                due_at = self._clock.utcnow() + timedelta(seconds=wait_s)
                if attempt == 1 and admit is not None:
                    admit(due_at)
                announced.append(log.call_sent(task_id, CallAttempt(
                    self.provider, self.model, attempt, due_at
                )))  # fmt: skip

            sending = False
            try:
                with self.limiter.slot(max_pause_s=policy.retry_after_cap_s, prepare=prepare):
                    sent = CallAttempt(self.provider, self.model, attempt, self._clock.utcnow())
                    handle = announced[0]
                    began = self._clock.monotonic()
                    if first_started is None:
                        first_started = began
                        if on_start is not None:
                            on_start()
                    sending = True
                    reply, error = _attempt(send)
                    latency_ms = self._elapsed_ms(began)
            except LimiterPaused as paused:
                self._withdraw(log, announced)
                failure = Failure(True, "rate_limited", str(paused), status_code=429)
                message = (
                    f"{paused}, more than retry_after_cap_s={policy.retry_after_cap_s:g}: "
                    "try again later or raise the cap"
                )
                raise self._provider_error(failure, message, tuple(calls)) from None
            except BaseException:
                # Whatever stopped the attempt before it went out (an interrupt in the wait, the
                # store out of reach, `on_start`): its row goes, it was never sent.
                if not sending:
                    self._withdraw(log, announced)
                raise
            if reply is not None:
                call = self._succeeded(sent, latency_ms, reply)
                log.call_finished(handle, call)
                calls.append(call)
                self._tell_pace(self.limiter.on_success)
                return self._generation(reply, calls, first_started)
            assert error is not None
            failure = classify(error, key_env_var=self.key_env_var)
            decision = decide(failure, attempt, policy)
            if failure.kind in SLOW_DOWN_KINDS:
                # The pause first: the other callers must stop now, not once the row is written.
                pause_s = decision.delay_s if decision.retry else failure.retry_after_s or 0.0
                self._tell_pace(partial(self.limiter.on_rate_limited, pause_s))
            call = self._failed(sent, latency_ms, failure)
            log.call_finished(handle, call)
            calls.append(call)
            if not decision.retry:
                if failure.kind in ACCOUNT_FAILURES:
                    with self._lock:
                        self._account_failure = failure
                provider_error = self._provider_error(failure, decision.reason, tuple(calls))
                if failure.kind in ("unexpected", "connection"):
                    raise provider_error from error
                raise provider_error from None
            logger.warning(
                "%s: attempt %d failed: %s", self.provider, attempt, self._redact(decision.reason),
                extra={"task_id": task_id, "provider": self.provider, "attempt": attempt},
            )  # fmt: skip
            self._clock.sleep(decision.delay_s)
        raise AssertionError("the retry loop returns or raises")

    def _tell_pace(self, change: Callable[[], None]) -> None:
        """Tell the (perhaps shared) pace what an answer said. That is advice to the other
        callers, not part of the answer: a store that cannot take it just now (locked, out of
        reach) costs a warning, never an answer already paid for."""
        try:
            change()
        except Exception as error:
            logger.warning(
                "%s: the request pace could not be updated: %s",
                self.provider, self._redact(str(error)),
            )  # fmt: skip

    @staticmethod
    def _withdraw(log: CallLog, announced: list[object]) -> None:
        """Take back the row of an attempt that was written but never sent."""
        if announced:
            log.call_withdrawn(announced[0])

    def _elapsed_ms(self, since: float) -> int:
        return round((self._clock.monotonic() - since) * 1000)

    def _succeeded(self, sent: CallAttempt, latency_ms: int, reply: ProviderReply) -> CallAttempt:
        """Every attempt carries the configured model, so usage groups by one name; the draft
        (`Generation.model`) keeps the exact model the provider reports having used."""
        cost = cost_usd(reply.usage, self.price, self.model) if reply.usage else None
        return CallAttempt(
            provider=sent.provider,
            model=sent.model,
            attempt=sent.attempt,
            started_at=sent.started_at,
            latency_ms=latency_ms,
            status_code=200,
            request_id=reply.request_id,
            usage=reply.usage,
            cost_usd=cost,
        )

    def _failed(self, sent: CallAttempt, latency_ms: int, failure: Failure) -> CallAttempt:
        """A failed attempt's row: with its tokens and cost when the answer was billed anyway
        (readable usage, unreadable content), so that the spend and the budget count it."""
        usage = failure.usage
        return CallAttempt(
            provider=sent.provider,
            model=sent.model,
            attempt=sent.attempt,
            started_at=sent.started_at,
            latency_ms=latency_ms,
            status_code=failure.status_code,
            error_type=failure.kind,
            error_message=self._redact(failure.message),
            request_id=failure.request_id,
            usage=usage,
            cost_usd=cost_usd(usage, self.price, self.model) if usage else None,
        )

    def _generation(
        self, reply: ProviderReply, calls: list[CallAttempt], first_started: float | None
    ) -> Generation:
        """`latency_ms` is what the caller waited: first attempt sent to answer, retries
        included; `cost_usd` what it paid: the answer and any attempt billed before it (an
        answer whose content could not be read)."""
        return Generation(
            provider=self.provider,
            model=reply.model or self.model,
            text=reply.text,
            finish_reason=reply.finish_reason,
            request_id=reply.request_id,
            usage=reply.usage,
            cost_usd=billed_cost(calls),
            latency_ms=self._elapsed_ms(first_started) if first_started is not None else 0,
            attempts=len(calls),
            calls=tuple(calls),
        )

    def _provider_error(
        self, failure: Failure, message: str, calls: tuple[CallAttempt, ...]
    ) -> ProviderError:
        return ProviderError(
            self.provider,
            self._redact(message),
            retryable=failure.retryable,
            status_code=failure.status_code,
            error_type=failure.kind,
            request_id=failure.request_id,
            calls=calls,
        )

    def _redact(self, text: str) -> str:
        return redact(text, self._secret)


def _attempt(send: Callable[[], ProviderReply]) -> tuple[ProviderReply | None, Exception | None]:
    """One attempt's outcome as a value, so its latency is taken inside the limiter slot."""
    try:
        return send(), None
    except Exception as error:  # classified by the caller: every SDK error is an outcome
        return None, error


def answer_request_id(answer: object) -> str | None:
    """The request id of an SDK answer: the `x-request-id` header the SDK keeps, else the
    answer's own id (None when neither is a string)."""
    found = getattr(answer, "_request_id", None) or getattr(answer, "id", None)
    return found if isinstance(found, str) else None


def redact(text: str, secret: str) -> str:
    """The text without the secret, should a provider or an SDK ever echo it. (A secret shorter
    than 8 characters is no real key, and replacing it would garble the text.)"""
    return text.replace(secret, REDACTED) if len(secret) >= 8 else text
