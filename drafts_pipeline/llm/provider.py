"""The provider contract, and the thin Dagster resource every live provider is built on.

Drafting calls providers by duck typing (`LLMProvider`): the live resources of each wire API
(`anthropic_messages.py`, `openai_chat.py`) and the offline one (`offline.py`) all fit it.

`LiveProvider` holds settings and the SDK client (SDK retries off, built on first use), as
Dagster's own `dagster-openai` resource does; the retry loop, the limiter and pricing are plain
modules it hands its settings to (`calling.py`, `limits.py`, `pricing.py`).
"""

import contextvars
import hashlib
import json
import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import dagster as dg
from pydantic import Field, PrivateAttr

from drafts_pipeline.errors import BudgetReached, ConfigurationError, ProviderError
from drafts_pipeline.llm.budget import DailyBudget, provider_budget_env
from drafts_pipeline.llm.calling import (
    Admit,
    Clock,
    OnStart,
    ProviderReply,
    RetryingCaller,
    SystemClock,
)
from drafts_pipeline.llm.generation import CallAttempt, CallLog, Generation
from drafts_pipeline.llm.keys import MISSING, UnusableKey, key_problem
from drafts_pipeline.llm.limits import PaceBook, RequestLimiter
from drafts_pipeline.llm.pricing import ModelPrice, resolve_price
from drafts_pipeline.llm.retry import RetryPolicy
from drafts_pipeline.llm.structured_output import OFF, structured_output_for

if TYPE_CHECKING:
    from drafts_pipeline.llm.batches import BatchAPI

DEFAULT_MAX_OUTPUT_TOKENS = 8192


@dataclass(frozen=True)
class DraftRequest:
    """What a provider needs to draft one task: `system` is the prompt's fixed part, sent
    first as the system prompt (empty: none), `prompt` the task part, sent as the user
    message."""

    task_id: str
    prompt: str
    symbol: str
    code: str
    language: str = "python"
    system: str = ""

    @property
    def texts(self) -> tuple[str, ...]:
        """Every text the request sends the model, the fixed part and the task part: what its
        input tokens are estimated from (the estimate, the daily budget)."""
        return (self.system, self.prompt)


Outcome = tuple[str, Generation | ProviderError | BudgetReached]
"""A request's task id and its end: a draft, the error that ended it, or the daily budget that
kept it from being sent."""


class LLMProvider(Protocol):
    """What drafting and the Dagster assets call on a provider, live or offline."""

    @property
    def name(self) -> str: ...

    @property
    def effective_model(self) -> str: ...

    def settings_hash(self) -> str: ...

    def require_key(self) -> None: ...

    def share_pace(self, book: PaceBook) -> None: ...

    def price(self) -> ModelPrice | None: ...

    def daily_budget(self) -> Decimal | None: ...

    def generate(
        self,
        request: DraftRequest,
        *,
        on_start: OnStart | None = None,
        call_log: CallLog | None = None,
        budget: DailyBudget | None = None,
    ) -> Generation: ...

    def generate_each(
        self,
        requests: list[DraftRequest],
        on_start: OnStart | None = None,
        call_log: CallLog | None = None,
        budget: DailyBudget | None = None,
    ) -> Iterator[Outcome]: ...


def settings_hash(
    model: str,
    max_output_tokens: int,
    temperature: float | None,
    fallback_model: str | None = None,
    structured_output: str = "off",
) -> str:
    """Identifies the model and generation settings; a change means a new draft. A fallback
    model is part of the settings only when there is one, and the form of structured output
    (`structured_output.py`, which changes the request) only when it is not `off` (the request
    as before structured output), so the hashes of drafts made without either stay as they
    were."""
    settings: list[Any] = [model, max_output_tokens, temperature]
    if fallback_model is not None:
        settings.append({"fallback_model": fallback_model})
    if structured_output != OFF:
        settings.append({"structured_output": structured_output})
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()


FALLBACK_KINDS = {"not_found", "overloaded"}
"""A primary model's final failures that send the draft to the fallback model: the model is
retired or unknown (404), or stayed overloaded (529, or a 503 `server_error`, OpenAI's way of
saying it) through its retries."""


def falls_back(error: ProviderError) -> bool:
    """Whether the primary model's final `error` hands the draft to a fallback model."""
    if error.error_type in FALLBACK_KINDS:
        return True
    return error.error_type == "server_error" and error.status_code == 503


class LiveProvider(dg.ConfigurableResource):
    """Base of the live provider resources: settings and an SDK client. A wire API subclass
    implements `_build_client` and `_send`."""

    name: str = Field(description="Provider name as stored on drafts, e.g. `claude`.")
    model: str = Field(description="Model id sent to the API.")
    api_key: str | None = Field(
        default=None,
        repr=False,
        description="API key, given as `dg.EnvVar(<api_key_env_var>)`.",
    )
    api_key_env_var: str = Field(description="Environment variable holding the API key.")
    base_url: str | None = Field(default=None, description="API base URL; None for the SDK's.")
    max_output_tokens: int = Field(
        default=DEFAULT_MAX_OUTPUT_TOKENS,
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
    batch_price_factor: float | None = Field(
        default=None,
        description="A batch's price against live, e.g. 0.5 for half; None takes the price "
        "table's (0.5 for Anthropic and OpenAI models, 0.6 for Moonshot's).",
    )
    daily_budget_usd: float | None = Field(
        default=None,
        description="US dollars this provider may spend a UTC day (with DRAFTS_DAILY_BUDGET_USD "
        "over all providers); None for no cap of its own.",
    )
    submit_mode: str | None = Field(
        default=None,
        description="`live`: this provider drafts live even in a batch-mode run (e.g. a model "
        "its batch API does not take); None follows the run's submission mode.",
    )
    fallback_model: str | None = Field(
        default=None,
        description="Model asked once more, with retries of its own, when `model` answers 404 "
        "(retired or unknown) or stays overloaded through its retries; None: no fallback. "
        "Live calls only: batches never fall back.",
    )
    structured_output: str | None = Field(
        default=None,
        description="How the answer's JSON shape is asked for: `schema` (the draft's JSON "
        "schema, enforced by the API), `json` (any JSON object; OpenAI-compatible APIs), `tool` "
        "(a forced tool call; Anthropic) or `off` (in the prompt only); None picks by model.",
    )
    family: list[str] = Field(
        default_factory=list,
        description="More words that name this provider's model family (e.g. `granite`): a "
        "draft that speaks them, as its model id, breaks blindness.",
    )
    backoff_jitter: str = Field(
        default="equal",
        description="`equal` waits at least half of each backoff step; "
        "`full` spreads retries wider.",
    )

    structured_api: ClassVar[str | None] = None
    """The wire API's key in `structured_output.FORMS_BY_API`; None: no structured output."""

    _client: Any = PrivateAttr(default=None)
    _caller: RetryingCaller | None = PrivateAttr(default=None)
    _fallback_caller: RetryingCaller | None = PrivateAttr(default=None)
    _primary_not_found: bool = PrivateAttr(default=False)
    _pace_book: PaceBook | None = PrivateAttr(default=None)
    _state_lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def effective_model(self) -> str:
        return self.model

    def settings_hash(self) -> str:
        return settings_hash(
            self.model,
            self.max_output_tokens,
            self.temperature,
            self.fallback_model,
            self.structured_output_form,
        )

    def with_model(self, model: str) -> "LiveProvider":
        """This provider asking `model` instead of its own (a regenerate's override): the
        same key, endpoint, limits and retries; priced by the price table's entry for `model`
        (the configured price overrides are the configured model's), and no fallback model.
        It shares this instance's SDK client, which this instance's teardown closes."""
        if not model.strip():
            raise ConfigurationError(f"{self.name}: the model override is empty")
        kept = {name: getattr(self, name) for name in type(self).model_fields}
        unpriced = dict.fromkeys(
            ("input_usd_per_mtok", "cached_input_usd_per_mtok", "output_usd_per_mtok")
        )
        other = type(self)(**{**kept, **unpriced, "model": model.strip(), "fallback_model": None})
        other._client = self.sdk_client()
        return other

    @property
    def structured_output_form(self) -> str:
        """The form of structured output this provider's requests take (`structured_output.py`):
        the `structured_output` setting, else the model's; `off` for a resource without a wire
        API. A form the API cannot take is a `ValueError` naming its variable."""
        return self.structured_output_form_for(self.model)

    def structured_output_form_for(self, model: str) -> str:
        """The form of structured output a request to `model` (the configured model or its
        fallback) takes: the `structured_output` setting, else that model's."""
        if self.structured_api is None:
            return OFF
        try:
            return structured_output_for(self.structured_api, model, self.structured_output)
        except ValueError as error:
            variable = f"DRAFTS_{self.name.upper()}_STRUCTURED_OUTPUT"
            raise ValueError(f"{error} ({variable})") from None

    def resolved_api_key(self) -> str:
        """The key, or `UnusableKey` when it is missing or cannot be sent in a header. Inside a
        run Dagster has resolved `dg.EnvVar` already; outside one (the CLI, benchmarks) the
        field still holds the `EnvVar`, read here."""
        key = self.api_key
        if isinstance(key, dg.EnvVar):
            key = key.get_value()
        if not key:
            raise UnusableKey(self.name, self.api_key_env_var, MISSING)
        problem = key_problem(key)
        if problem is not None:
            raise UnusableKey(self.name, self.api_key_env_var, problem)
        return key

    def require_key(self) -> None:
        """Fail before any call when this provider's key is missing or unusable: never a silent
        fallback, never a request the HTTP layer refuses."""
        self.resolved_api_key()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A nonsense setting fails the run at its start, before any call. The key is checked
        by whatever calls the providers, all of them at once (`require_keys`), so that one
        message names every unusable key; `generate` checks it too, before any request."""
        try:
            self.retry_policy()
            RequestLimiter(self.max_in_flight, self.requests_per_minute)
            self._check_settings()
            _ = self.structured_output_form
            factor = self.batch_price_factor
            if factor is not None and not 0 < factor <= 1:
                raise ValueError(f"batch_price_factor must be above 0 and at most 1, not {factor}")
            self.always_live()
            self._check_fallback()
        except ValueError as error:
            raise ConfigurationError(f"{self.name}: {error}") from None
        self.price()
        self.fallback_price()
        self.daily_budget()

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
            self.model,
            input_usd_per_mtok=self.input_usd_per_mtok,
            cached_input_usd_per_mtok=self.cached_input_usd_per_mtok,
            output_usd_per_mtok=self.output_usd_per_mtok,
            batch_factor=self.batch_price_factor,
        )

    def fallback_price(self) -> ModelPrice | None:
        """The fallback model's price: the price table's, at this provider's batch factor. The
        configured `*_usd_per_mtok` overrides are the primary model's price and do not apply
        to another model. None when there is no fallback or its price is unknown."""
        if self.fallback_model is None:
            return None
        return resolve_price(self.fallback_model, batch_factor=self.batch_price_factor)

    def _check_fallback(self) -> None:
        fallback = self.fallback_model
        if fallback is not None and fallback.strip() in ("", self.model):
            raise ValueError(
                f"fallback_model={fallback!r} (DRAFTS_{self.name.upper()}_FALLBACK_MODEL) must "
                f"name a model other than {self.model!r}, or be unset"
            )

    def always_live(self) -> bool:
        """Whether this provider drafts live in a batch-mode run too (`submit_mode="live"`);
        any other value than `live` or none is a `ValueError` naming its variable."""
        if self.submit_mode is None:
            return False
        if self.submit_mode.strip().lower() != "live":
            raise ValueError(
                f"submit_mode={self.submit_mode!r} (DRAFTS_{self.name.upper()}_SUBMIT_MODE) must "
                "be `live` or unset (follow the run's submission mode)"
            )
        return True

    def daily_budget(self) -> Decimal | None:
        """This provider's own daily cap in US dollars, None for none; a negative or infinite
        one is a `ConfigurationError` naming its variable."""
        if self.daily_budget_usd is None:
            return None
        if not 0 <= self.daily_budget_usd < math.inf:
            raise ConfigurationError(
                f"{self.name}: daily_budget_usd={self.daily_budget_usd} "
                f"({provider_budget_env(self.name)}) must be an amount in US dollars, 0 or more"
            )
        return Decimal(str(self.daily_budget_usd))

    def share_pace(self, book: PaceBook) -> None:
        """Pace requests through `book` (e.g. the store's, shared by every process) instead of
        a pace of this instance's own; the in-flight cap stays this instance's."""
        with self._state_lock:
            self._pace_book = book
            self._caller = None
            self._fallback_caller = None

    def caller(self) -> RetryingCaller:
        """The retry loop and limiter all threads of this instance share, made on first use."""
        with self._state_lock:
            return self._callers()[0]

    def fallback_caller(self) -> RetryingCaller | None:
        """The fallback model's retry loop, on the same policy and limiter as `caller`'s, priced
        at the fallback's price; None without a fallback model."""
        with self._state_lock:
            return self._callers()[1]

    def _callers(self) -> tuple[RetryingCaller, RetryingCaller | None]:
        """The primary and fallback callers, made together on first use (under the lock)."""
        if self._caller is None:
            clock = self._clock()
            limiter = RequestLimiter(
                self.max_in_flight,
                self.requests_per_minute,
                book=self._pace_book,
                clock=clock.monotonic,
                sleep=clock.sleep,
            )
            secret = self.resolved_api_key()
            common: dict[str, Any] = {
                "provider": self.name,
                "policy": self.retry_policy(),
                "limiter": limiter,
                "key_env_var": self.api_key_env_var,
                "secret": secret,
                "clock": clock,
            }
            self._caller = RetryingCaller(model=self.model, price=self.price(), **common)
            self._fallback_caller = None
            self._primary_not_found = False
            if self.fallback_model is not None:
                self._fallback_caller = RetryingCaller(
                    model=self.fallback_model, price=self.fallback_price(), **common
                )
        return self._caller, self._fallback_caller

    def sdk_client(self) -> Any:
        """The SDK client, built once per resource instance on first use (also outside Dagster)."""
        with self._state_lock:
            if self._client is None:
                self._client = self._build_client(self.resolved_api_key())
            return self._client

    def generate(
        self,
        request: DraftRequest,
        *,
        on_start: OnStart | None = None,
        call_log: CallLog | None = None,
        budget: DailyBudget | None = None,
    ) -> Generation:
        """One draft; raises `ProviderError` once the retry policy gives up, and
        `BudgetReached`, sending nothing, when `budget` has no room for the call.

        With a `fallback_model`, a primary model that fails with `not_found` or stays
        `overloaded` through its retries hands the draft to the fallback once, under a retry
        loop of its own (`_fall_back`). After a `not_found`, this instance's later drafts (the
        rest of the run step) go to the fallback straight away: the model is gone."""
        with self._state_lock:
            caller, fallback = self._callers()
            primary_gone = self._primary_not_found
        client = self.sdk_client()
        admit: Admit | None = None
        if budget is not None:
            checked = budget

            def admit(now: datetime) -> None:
                checked.admit(request.texts, now)

        if fallback is not None and primary_gone:
            return self._call_fallback(fallback, client, request, on_start, call_log, admit)
        try:
            generation = caller.call(
                lambda: self._send(client, request),
                task_id=request.task_id,
                on_start=on_start,
                call_log=call_log,
                admit=admit,
            )
        except ProviderError as error:
            if fallback is None or not falls_back(error):
                raise
            return self._fall_back(fallback, client, request, error, on_start, call_log, admit)
        return replace(generation, attempted_models=(self.model,))

    def _fall_back(
        self,
        fallback: RetryingCaller,
        client: Any,
        request: DraftRequest,
        failed: ProviderError,
        on_start: OnStart | None,
        call_log: CallLog | None,
        admit: Admit | None,
    ) -> Generation:
        """The draft asked of the fallback model after the primary's `failed`: one generation
        (or error) over both models' attempts. The daily budget asks again: the fallback's
        call is a new one, possibly at another price. `on_start` was called by the primary's
        first attempt already."""
        if failed.error_type == "not_found":
            with self._state_lock:
                self._primary_not_found = True
        models = (self.model, fallback.model)
        try:
            answered = self._call_fallback(fallback, client, request, None, call_log, admit)
        except ProviderError as second:
            raise ProviderError(
                self.name,
                f"{self.model}: {_reason(failed)}; then fallback {fallback.model}: "
                f"{_reason(second)}",
                retryable=second.retryable,
                status_code=second.status_code,
                error_type=second.error_type,
                request_id=second.request_id,
                calls=(*failed.calls, *second.calls),
                attempted_models=models,
            ) from second
        calls = (*failed.calls, *answered.calls)
        return replace(
            answered,
            attempts=len(calls),
            calls=calls,
            latency_ms=_span_ms(calls) or answered.latency_ms,
            attempted_models=models,
        )

    def _call_fallback(
        self,
        fallback: RetryingCaller,
        client: Any,
        request: DraftRequest,
        on_start: OnStart | None,
        call_log: CallLog | None,
        admit: Admit | None,
    ) -> Generation:
        """One draft of the fallback model under its own retry loop."""
        model = fallback.model
        try:
            generation = fallback.call(
                lambda: self._send(client, request, model=model),
                task_id=request.task_id,
                on_start=on_start,
                call_log=call_log,
                admit=admit,
            )
        except ProviderError as error:
            error.attempted_models = (model,)
            raise
        return replace(generation, attempted_models=(model,))

    def generate_each(
        self,
        requests: list[DraftRequest],
        on_start: OnStart | None = None,
        call_log: CallLog | None = None,
        budget: DailyBudget | None = None,
    ) -> Iterator[Outcome]:
        """(task id, generation or error) as each call finishes, calls running concurrently
        up to `max_in_flight`, so the caller can store one result while others are in flight.
        `on_start` is called as each request's first attempt is sent.

        Once `budget` refuses a call, every request not yet sent ends with the same
        `BudgetReached` without asking it again; the calls in flight finish."""
        refused: list[BudgetReached] = []

        def one(request: DraftRequest) -> Generation | ProviderError | BudgetReached:
            if refused:
                return refused[0]
            try:
                return self.generate(request, on_start=on_start, call_log=call_log, budget=budget)
            except ProviderError as error:
                return error
            except BudgetReached as reached:
                refused.append(reached)
                return reached

        if len(requests) <= 1:
            for request in requests:
                yield request.task_id, one(request)
            return
        pool = ThreadPoolExecutor(max_workers=max(1, self.max_in_flight))
        try:
            # Each call in a copy of this context: its log lines carry the caller's run id.
            futures = {
                pool.submit(contextvars.copy_context().run, one, request): request.task_id
                for request in requests
            }
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            # A caller that stops early (its store failed) sends none of the requests still
            # queued: each would be paid for and its answer lost.
            pool.shutdown(wait=True, cancel_futures=True)

    def generate_many(
        self, requests: list[DraftRequest]
    ) -> dict[str, Generation | ProviderError | BudgetReached]:
        """task id -> generation or the error that ended it, calls running concurrently."""
        return dict(self.generate_each(requests))

    def _clock(self) -> Clock:
        """The time retries wait on and latencies are taken from (a test subclass fakes it)."""
        return SystemClock()

    def _check_settings(self) -> None:
        """Raise ValueError for a setting of the wire API that cannot work."""

    def _sdk_options(self, api_key: str) -> dict[str, Any]:
        """The SDK client's arguments; its own retries are off, the caller's loop retries."""
        return {
            "api_key": api_key,
            "base_url": self.base_url,
            "timeout": self.timeout_s,
            "max_retries": 0,
        }

    def _build_client(self, api_key: str) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no wire API")

    def request_body(self, request: DraftRequest, model: str | None = None) -> dict[str, Any]:
        """The wire API's JSON body for one draft (live requests and batch items alike)."""
        raise NotImplementedError(f"{type(self).__name__} has no wire API")

    def _send(self, client: Any, request: DraftRequest, model: str | None = None) -> ProviderReply:
        """One HTTP attempt, to `model` (None: the configured one, `request_body`'s); raises
        the SDK's exception, or `MalformedResponseError`."""
        raise NotImplementedError(f"{type(self).__name__} has no wire API")

    def batch_api(self) -> "BatchAPI":
        """The provider's batch API (`batches.py`), on the same SDK client and key."""
        raise NotImplementedError(f"{type(self).__name__} has no batch API")


def _reason(error: ProviderError) -> str:
    """The error's message without the provider's name it starts with."""
    text = str(error)
    prefix = f"{error.provider}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _span_ms(calls: tuple[CallAttempt, ...]) -> int | None:
    """From the first attempt's start to the last one's answer, in milliseconds; None when
    the last one's latency is unknown."""
    last = calls[-1] if calls else None
    if last is None or last.latency_ms is None:
        return None
    end = last.started_at + timedelta(milliseconds=last.latency_ms)
    return round((end - calls[0].started_at).total_seconds() * 1000)
