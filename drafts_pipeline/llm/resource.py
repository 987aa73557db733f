"""The provider contract shared by every LLM resource.

Every provider is a `dg.ConfigurableResource` with the same public methods:
`generate(request) -> Generation` (raises `ProviderError` once its retry policy gives up) and
`generate_each(requests)` / `generate_many(requests)`, which run calls concurrently under the
resource's own limits.

The live path lives here once for every provider: the lazily built SDK client (SDK retries off),
the one retry loop (`retry.py`), the limiter every thread shares (`limits.py`), the cost
(`pricing.py`) and a `CallAttempt` per HTTP attempt. A subclass only builds its SDK client and
turns one request into one `ProviderReply`.
"""

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from drafts_pipeline.errors import ConfigurationError, ProviderError
from drafts_pipeline.llm.generation import CallAttempt, Generation
from drafts_pipeline.llm.limits import LimiterPaused, PaceBook, RequestLimiter
from drafts_pipeline.llm.offline import offline_answer
from drafts_pipeline.llm.pricing import ModelPrice, TokenUsage, cost_usd, resolve_price
from drafts_pipeline.llm.retry import Failure, RetryPolicy, classify, decide
from drafts_pipeline.settings import LLM_MODES

logger = logging.getLogger(__name__)

OnStart = Callable[[], None]
REDACTED = "[redacted]"
# Failures that every later call of the same resource would repeat: stop calling.
ACCOUNT_FAILURES = {"authentication", "quota"}
# Failures after which every thread of the resource pauses, not only the one that got it.
SLOW_DOWN_KINDS = {"rate_limited", "overloaded"}


@dataclass(frozen=True)
class DraftRequest:
    """What a provider needs to draft one task."""

    task_id: str
    prompt: str
    symbol: str
    code: str


@dataclass(frozen=True)
class ProviderReply:
    """One successful HTTP attempt, in the project's terms; `usage` is None when the API
    reported none."""

    text: str
    model: str
    finish_reason: str | None
    request_id: str | None
    usage: TokenUsage | None


class LLMProvider(dg.ConfigurableResource):
    """Base of the provider resources; an API subclass implements `_build_client` and `_send`
    (a test double may replace `_generate_live` whole).

    Once a call fails on authentication or quota, later calls of the same instance (one run
    step, one CLI command) fail at once without a request: each would fail the same way.
    """

    name: str = Field(description="Provider name as stored on drafts, e.g. `claude`.")
    mode: str = Field(default="live", description="`live` calls the API, `offline` drafts locally.")
    model: str = Field(description="Model id sent to the API.")
    api_key: str | None = Field(default=None, description="API key; else `api_key_env_var`.")
    api_key_env_var: str = Field(description="Environment variable holding the API key.")
    base_url: str | None = Field(default=None, description="API base URL; None for the SDK's.")
    max_output_tokens: int = Field(
        default=8192,
        description="Answer token limit; reasoning models spend part of it thinking.",
    )
    temperature: float | None = Field(
        default=None, description="None sends no temperature (some models accept only theirs)."
    )
    timeout_s: float = 60.0
    max_attempts: int = Field(default=4, description="HTTP attempts per draft, first included.")
    initial_delay_s: float = 1.0
    max_delay_s: float = 30.0
    retry_after_cap_s: float = Field(
        default=60.0, description="Longest Retry-After honoured; a longer one fails the call."
    )
    max_in_flight: int = Field(default=8, description="Concurrent requests at most.")
    requests_per_minute: int = Field(default=600, description="Requests started per minute.")
    input_usd_per_mtok: float | None = None
    cached_input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    backoff_jitter: str = Field(
        default="equal",
        description="`equal` waits at least half of each backoff step; "
        "`full` spreads retries wider.",
    )
    strict_responses: bool = Field(
        default=False,
        description="Test hook: the SDK validates every answer against its schema "
        "(`_strict_response_validation`), so a wire-format mistake fails loudly.",
    )

    _client: Any = PrivateAttr(default=None)
    _limiter: RequestLimiter | None = PrivateAttr(default=None)
    _pace_book: PaceBook | None = PrivateAttr(default=None)
    _account_failure: Failure | None = PrivateAttr(default=None)
    _state_lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def offline(self) -> bool:
        return self.mode == "offline"

    @property
    def effective_model(self) -> str:
        return f"offline-{self.name}" if self.offline else self.model

    def settings_hash(self) -> str:
        """Identifies the model and generation settings; a change means a new draft."""
        settings = [self.effective_model, self.max_output_tokens, self.temperature]
        return hashlib.sha256(json.dumps(settings).encode()).hexdigest()

    def resolved_api_key(self) -> str:
        key = self.api_key or os.environ.get(self.api_key_env_var)
        if not key:
            raise ConfigurationError(
                f"{self.name}: no API key; set {self.api_key_env_var} "
                "(or DRAFTS_LLM_MODE=offline to draft locally)"
            )
        return key

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.mode not in LLM_MODES:
            raise ConfigurationError(f"{self.name}: mode {self.mode!r} is not one of {LLM_MODES}")
        if not self.offline:
            self.resolved_api_key()
            try:
                self.retry_policy()
                RequestLimiter(self.max_in_flight, self.requests_per_minute)
            except ValueError as error:
                raise ConfigurationError(f"{self.name}: {error}") from None
            self.price()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        with self._state_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            initial_delay_s=self.initial_delay_s,
            max_delay_s=self.max_delay_s,
            retry_after_cap_s=self.retry_after_cap_s,
            jitter=self.backoff_jitter,
        )

    def price(self) -> ModelPrice | None:
        """The model's price, configured overrides first; None when unknown."""
        return resolve_price(
            self.effective_model,
            input_usd_per_mtok=self.input_usd_per_mtok,
            cached_input_usd_per_mtok=self.cached_input_usd_per_mtok,
            output_usd_per_mtok=self.output_usd_per_mtok,
        )

    def share_pace(self, book: PaceBook) -> None:
        """Pace requests through `book` (e.g. the store's, shared by every process) instead of
        a pace of this instance's own; the in-flight cap stays this instance's."""
        with self._state_lock:
            self._pace_book = book
            self._limiter = None

    def request_limiter(self) -> RequestLimiter:
        """The limiter all threads of this resource instance share, made on first use."""
        with self._state_lock:
            if self._limiter is None:
                self._limiter = RequestLimiter(
                    self.max_in_flight, self.requests_per_minute, book=self._pace_book
                )
            return self._limiter

    def sdk_client(self) -> Any:
        """The SDK client, built once per resource instance on first use (also outside Dagster)."""
        with self._state_lock:
            if self._client is None:
                self._client = self._build_client(self.resolved_api_key())
            return self._client

    def generate(self, request: DraftRequest, on_start: OnStart | None = None) -> Generation:
        """One draft; `on_start` is called once, when its first attempt is sent."""
        if self.offline:
            if on_start is not None:
                on_start()
            return self._generate_offline(request)
        return self._generate_live(request, on_start)

    def generate_many(self, requests: list[DraftRequest]) -> dict[str, Generation | ProviderError]:
        """task id -> generation or the error that ended it, calls running concurrently."""
        return dict(self.generate_each(requests))

    def generate_each(
        self, requests: list[DraftRequest], on_start: OnStart | None = None
    ) -> Iterator[tuple[str, Generation | ProviderError]]:
        """(task id, generation or error) as each call finishes, calls running concurrently
        up to `max_in_flight`, so the caller can store one result while others are in flight.
        `on_start` is called as each request's first attempt is sent."""

        def one(request: DraftRequest) -> Generation | ProviderError:
            try:
                return self.generate(request, on_start)
            except ProviderError as error:
                return error

        if self.offline or len(requests) <= 1:
            for request in requests:
                yield request.task_id, one(request)
            return
        with ThreadPoolExecutor(max_workers=max(1, self.max_in_flight)) as pool:
            futures = {pool.submit(one, request): request.task_id for request in requests}
            for future in as_completed(futures):
                yield futures[future], future.result()

    def _build_client(self, api_key: str) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no live API")

    def _send(self, client: Any, request: DraftRequest) -> ProviderReply:
        """One HTTP attempt; raises the SDK's exception, or `MalformedResponseError`."""
        raise NotImplementedError(f"{type(self).__name__} has no live API")

    def _generate_live(self, request: DraftRequest, on_start: OnStart | None = None) -> Generation:
        """Attempts under the retry policy and the shared limiter, each one recorded."""
        key = self.resolved_api_key()
        client = self.sdk_client()
        policy = self.retry_policy()
        limiter = self.request_limiter()
        earlier = self._account_failure
        if earlier is not None:
            raise self._provider_error(
                earlier, f"not attempted, an earlier call failed: {earlier.message}", (), key
            )
        calls: list[CallAttempt] = []
        began = time.perf_counter()
        for attempt in range(1, policy.max_attempts + 1):
            started_at, clock = datetime.now(UTC), time.perf_counter()
            try:
                with limiter.slot(max_pause_s=policy.retry_after_cap_s):
                    started_at, clock = datetime.now(UTC), time.perf_counter()
                    if attempt == 1 and on_start is not None:
                        on_start()
                    reply = self._send(client, request)
            except LimiterPaused as paused:
                failure = Failure(True, "rate_limited", str(paused), status_code=429)
                message = (
                    f"{paused}, more than retry_after_cap_s={policy.retry_after_cap_s:g}: "
                    "try again later or raise the cap"
                )
                raise self._provider_error(failure, message, tuple(calls), key) from None
            except Exception as error:
                failure = classify(error, key_env_var=self.api_key_env_var)
                calls.append(self._failed_call(attempt, started_at, clock, failure, key))
                decision = decide(failure, attempt, policy)
                if failure.kind in SLOW_DOWN_KINDS:
                    limiter.on_rate_limited(
                        decision.delay_s if decision.retry else failure.retry_after_s or 0.0
                    )
                if not decision.retry:
                    if failure.kind in ACCOUNT_FAILURES:
                        self._account_failure = failure
                    provider_error = self._provider_error(
                        failure, decision.reason, tuple(calls), key
                    )
                    if failure.kind in ("unexpected", "connection"):
                        raise provider_error from error
                    raise provider_error from None
                logger.warning(
                    "%s: attempt %d failed: %s", self.name, attempt, _redact(decision.reason, key)
                )
                time.sleep(decision.delay_s)
                continue
            limiter.on_success()
            calls.append(self._successful_call(attempt, started_at, clock, reply))
            return self._generation(reply, calls, began)
        raise AssertionError("the retry loop returns or raises")

    def _usage_cost(self, reply: ProviderReply) -> Decimal | None:
        if reply.usage is None:
            return None
        return cost_usd(reply.usage, self.price(), self.model)

    def _successful_call(
        self, attempt: int, started_at: datetime, clock: float, reply: ProviderReply
    ) -> CallAttempt:
        """Every attempt carries the configured model, so usage groups by one name; the draft
        (`Generation.model`) keeps the exact model the provider reports having used."""
        usage = reply.usage
        return CallAttempt(
            provider=self.name,
            model=self.model,
            attempt=attempt,
            started_at=started_at,
            latency_ms=_elapsed_ms(clock),
            status_code=200,
            request_id=reply.request_id,
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            cached_tokens=usage.cached_tokens if usage else None,
            reasoning_tokens=usage.reasoning_tokens if usage else None,
            cost_usd=self._usage_cost(reply),
        )

    def _failed_call(
        self, attempt: int, started_at: datetime, clock: float, failure: Failure, key: str
    ) -> CallAttempt:
        return CallAttempt(
            provider=self.name,
            model=self.model,
            attempt=attempt,
            started_at=started_at,
            latency_ms=_elapsed_ms(clock),
            status_code=failure.status_code,
            error_type=failure.kind,
            error_message=_redact(failure.message, key),
            request_id=failure.request_id,
        )

    def _generation(
        self, reply: ProviderReply, calls: list[CallAttempt], began: float
    ) -> Generation:
        """`latency_ms` is what the caller waited: first attempt to answer, retries included."""
        usage = reply.usage
        return Generation(
            provider=self.name,
            model=reply.model or self.model,
            text=reply.text,
            finish_reason=reply.finish_reason,
            request_id=reply.request_id,
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            cached_tokens=usage.cached_tokens if usage else None,
            reasoning_tokens=usage.reasoning_tokens if usage else None,
            cost_usd=calls[-1].cost_usd,
            latency_ms=_elapsed_ms(began),
            attempts=len(calls),
            calls=tuple(calls),
        )

    def _provider_error(
        self, failure: Failure, message: str, calls: tuple[CallAttempt, ...], key: str
    ) -> ProviderError:
        return ProviderError(
            self.name,
            _redact(message, key),
            retryable=failure.retryable,
            status_code=failure.status_code,
            error_type=failure.kind,
            request_id=failure.request_id,
            calls=calls,
        )

    def _generate_offline(self, request: DraftRequest) -> Generation:
        started, clock = datetime.now(UTC), time.perf_counter()
        text = offline_answer(self.name, request.symbol, request.code)
        latency_ms = round((time.perf_counter() - clock) * 1000)
        tokens_in, tokens_out = len(request.prompt) // 4, len(text) // 4
        call = CallAttempt(
            provider=self.name,
            model=self.effective_model,
            attempt=1,
            started_at=started,
            latency_ms=latency_ms,
            status_code=200,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cached_tokens=0,
            reasoning_tokens=0,
            cost_usd=Decimal(0),
        )
        return Generation(
            provider=self.name,
            model=self.effective_model,
            text=text,
            finish_reason="stop",
            request_id=None,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cached_tokens=0,
            reasoning_tokens=0,
            cost_usd=Decimal(0),
            latency_ms=latency_ms,
            attempts=1,
            calls=(call,),
        )


def _elapsed_ms(clock: float) -> int:
    return round((time.perf_counter() - clock) * 1000)


def _redact(text: str, key: str) -> str:
    """The text without the key, should a provider or an SDK ever echo it. (A key shorter than
    8 characters is no real key, and replacing it would garble the text.)"""
    return text.replace(key, REDACTED) if len(key) >= 8 else text
