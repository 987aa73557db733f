"""What a provider call returns, the record of every HTTP attempt behind it, and the hook that
records each attempt as it happens."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True)
class TokenUsage:
    """One call's tokens, read once from the SDK's answer and carried as they are to the
    draft and the call log. Cached and cache-write tokens are part of `input_tokens`,
    reasoning tokens part of `output_tokens`."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class CallAttempt:
    """One HTTP attempt: a row of `llm_calls`. Never holds a key or a header.

    As `call_sent` sees it, only who, which attempt and when; the rest once it finished."""

    provider: str
    model: str
    attempt: int
    started_at: datetime
    latency_ms: int | None = None
    status_code: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    usage: TokenUsage | None = None
    cost_usd: Decimal | None = None


@dataclass(frozen=True)
class Generation:
    """A provider's answer to one prompt, with its provenance."""

    provider: str
    model: str
    text: str
    finish_reason: str | None
    request_id: str | None
    usage: TokenUsage | None
    cost_usd: Decimal | None
    latency_ms: int
    attempts: int
    calls: tuple[CallAttempt, ...] = ()
    attempted_models: tuple[str, ...] = ()
    """Every model asked for this answer, in order: the configured one, then a fallback model
    when the first failed (`model` is the one that answered, as the provider names it). Empty
    when the provider does not say (offline, batches)."""


class CallLog(Protocol):
    """Where each HTTP attempt is recorded just before it is sent (the store implements it),
    so a crash leaves an unfinished row rather than no row."""

    def call_sent(self, task_id: str, call: CallAttempt) -> object:
        """Called right before the attempt goes out (in the pace's wait for its start, which
        `call.started_at` gives); returns a handle for `call_finished`. If it raises, the
        request is not sent."""
        ...

    def call_finished(self, handle: object, call: CallAttempt) -> None:
        """Called as the attempt's answer or error arrives, with the completed attempt (its
        `started_at` the moment it went out)."""
        ...

    def call_withdrawn(self, handle: object) -> None:
        """The attempt `call_sent` announced was never sent (something stopped it in the wait
        for its start: a rate-limit pause longer than the caller waits, an interrupt): forget
        it. Like `call_finished`, a failure to is logged rather than raised."""
        ...


def billed_cost(calls: Sequence[CallAttempt]) -> Decimal | None:
    """What the attempts that were billed (those with usage: answers, readable or not) cost
    together; None when none was billed or one's price is unknown."""
    billed = [call.cost_usd for call in calls if call.usage is not None]
    if not billed or any(cost is None for cost in billed):
        return None
    return sum((cost for cost in billed if cost is not None), Decimal(0))
