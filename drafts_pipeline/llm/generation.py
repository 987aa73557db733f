"""What a provider call returns, and the record of every HTTP attempt behind it."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class CallAttempt:
    """One HTTP attempt: a row of `llm_calls`. Never holds a key or a header."""

    provider: str
    model: str
    attempt: int
    started_at: datetime
    latency_ms: int
    status_code: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: Decimal | None = None


@dataclass(frozen=True)
class Generation:
    """A provider's answer to one prompt, with its provenance."""

    provider: str
    model: str
    text: str
    finish_reason: str | None
    request_id: str | None
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    cost_usd: Decimal | None
    latency_ms: int
    attempts: int
    calls: tuple[CallAttempt, ...] = field(default=())
