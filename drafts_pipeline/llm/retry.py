"""The one retry policy of every provider: which failures deserve another attempt, and when.

The SDKs' own retries are off (`max_retries=0`), so attempts never multiply. Pure functions:
`classify` turns an SDK exception into a `Failure` (retryable or not, a reason a person can act
on), `decide` turns a failure and the attempt number into a `RetryDecision` (wait this long, or
give up). Retried: connection errors, timeouts, malformed answers, 408, 409, 429, 5xx and
Anthropic's 529. Never retried: 400, 401, 403, 404, 422 and every quota or spend-limit error,
whatever its status, because waiting does not bring credit back.
"""

import email.utils
import json
import math
import random
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import anthropic
import openai

from drafts_pipeline.errors import DraftsError
from drafts_pipeline.llm.generation import TokenUsage

JITTERS = ("equal", "full")

TIMEOUT_ERRORS = (anthropic.APITimeoutError, openai.APITimeoutError)
CONNECTION_ERRORS = (anthropic.APIConnectionError, openai.APIConnectionError)
STATUS_ERRORS = (anthropic.APIStatusError, openai.APIStatusError)
INVALID_RESPONSE_ERRORS = (anthropic.APIResponseValidationError, openai.APIResponseValidationError)

RETRYABLE_STATUS_KINDS = {
    408: "request_timeout",
    409: "conflict",
    429: "rate_limited",
    529: "overloaded",
}
# Error `type` / `code` values that mean the account is out of money or past a spend limit.
QUOTA_CODES = {
    "insufficient_quota",  # OpenAI, 429
    "billing_hard_limit_reached",  # OpenAI
    "exceeded_current_quota_error",  # Moonshot, 429 (or 403)
    "billing_error",  # Anthropic
    "enforced_spend_limit_reached",  # Anthropic, 429 error.details.error_code
    "contract_spend_limit_reached",  # Anthropic, 429
    "linked_organization_spend_limit_reached",  # Anthropic, 402
    "linked_organization_billing_unavailable",  # Anthropic, 402
}
QUOTA_MESSAGE = re.compile(
    r"credit balance|exceeded your current quota|insufficient (balance|quota)|"
    r"spend(ing)? limit|recharge your account",
    re.IGNORECASE,
)
# Key-like tokens (`sk-…`, masked ones such as `sk-proj-****abcd` too) an error message may echo.
KEY_LIKE = re.compile(r"\b(sk|key)-(?=[\w*.-]*[\d*])[\w*.-]{8,}")
MAX_PROVIDER_MESSAGE = 300


class MalformedResponseError(DraftsError):
    """A 2xx answer that is not the documented wire format (truncated JSON, missing fields).

    `usage` is what the answer says was billed, when it says so readably: an answer whose
    content cannot be read is paid for all the same, and its cost counts against the budget.
    `request_id` likewise."""

    def __init__(
        self, message: str, *, usage: TokenUsage | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.usage = usage
        self.request_id = request_id


@contextmanager
def read_or_malformed(
    what: str, *, usage: TokenUsage | None = None, request_id: str | None = None
) -> Iterator[None]:
    """Reading an SDK answer: a field missing or of the wrong type (`AttributeError`,
    `TypeError`) becomes `MalformedResponseError` ("unreadable <what>: …"), carrying the
    answer's usage and request id as far as they were read."""
    try:
        yield
    except (AttributeError, TypeError) as error:
        raise MalformedResponseError(
            f"unreadable {what}: {error}", usage=usage, request_id=request_id
        ) from error


@dataclass(frozen=True)
class Failure:
    """One failed attempt, classified. `kind` is stored as the call's `error_type`."""

    retryable: bool
    kind: str
    message: str
    status_code: int | None = None
    request_id: str | None = None
    retry_after_s: float | None = None
    provider_type: str | None = None
    usage: TokenUsage | None = None
    """The tokens a failed answer was billed for (a 2xx answer whose content is unreadable)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How many HTTP attempts a draft gets and how long to wait between them."""

    max_attempts: int = 4
    initial_delay_s: float = 1.0
    max_delay_s: float = 30.0
    retry_after_cap_s: float = 60.0
    jitter: str = "equal"

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.jitter not in JITTERS:
            raise ValueError(f"jitter must be one of {JITTERS}, not {self.jitter!r}")


@dataclass(frozen=True)
class RetryDecision:
    """Retry after `delay_s` seconds, or stop; `reason` is the final error message when stopping."""

    retry: bool
    delay_s: float
    reason: str


def retry_after_seconds(
    headers: Mapping[str, str] | None, now: datetime | None = None
) -> float | None:
    """The wait a response asks for: `retry-after-ms`, else `retry-after` in seconds or as an
    HTTP date; None when absent or unreadable. Never negative."""
    if not headers:
        return None
    lowered = {name.lower(): value for name, value in headers.items()}
    milliseconds = _finite_float(lowered.get("retry-after-ms"))
    if milliseconds is not None:
        return max(0.0, milliseconds / 1000)
    value = lowered.get("retry-after")
    if value is None:
        return None
    seconds = _finite_float(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def _finite_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def backoff_s(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Exponential backoff after failed attempt `attempt` (1-based), capped by `max_delay_s`.

    Equal jitter waits between half and all of the exponential step, so a retry never comes
    right back; full jitter spreads retries over the whole step, which scatters a crowd best.
    """
    uniform = (rng or random).uniform
    step = min(policy.max_delay_s, policy.initial_delay_s * 2 ** (attempt - 1))
    if policy.jitter == "full":
        return uniform(0, step)
    return step / 2 + uniform(0, step / 2)


def decide(
    failure: Failure, attempt: int, policy: RetryPolicy, rng: random.Random | None = None
) -> RetryDecision:
    """After failed attempt `attempt` (1-based): retry after a delay, or stop and say why."""
    if not failure.retryable:
        return RetryDecision(False, 0.0, failure.message)
    if attempt >= policy.max_attempts:
        return RetryDecision(
            False, 0.0, f"{failure.message}; gave up after {attempt} attempt(s) (max_attempts)"
        )
    wait = failure.retry_after_s
    if wait is not None and wait > policy.retry_after_cap_s:
        return RetryDecision(
            False,
            0.0,
            f"{failure.message}; the provider asks to wait {wait:.0f} s, more than "
            f"retry_after_cap_s={policy.retry_after_cap_s:g}: try again later or raise the cap",
        )
    delay = wait if wait is not None else backoff_s(attempt, policy, rng)
    return RetryDecision(True, delay, f"{failure.message}; retrying in {delay:.2f} s")


def classify(error: BaseException, *, key_env_var: str = "the API key variable") -> Failure:
    """What an exception from a provider call means for the retry policy.

    The message names the next step and never carries the key: provider messages are cut
    short and stripped of key-like tokens, and an authentication error repeats none of them.
    """
    if isinstance(error, MalformedResponseError):
        return Failure(
            True,
            "malformed_response",
            f"malformed answer: {error}",
            request_id=error.request_id,
            usage=error.usage,
        )
    if isinstance(error, INVALID_RESPONSE_ERRORS):
        return Failure(
            True,
            "malformed_response",
            f"malformed answer (HTTP {error.status_code}): the body does not match the API schema",
            status_code=error.status_code,
            request_id=_request_id(error.response.headers),
        )
    if isinstance(error, json.JSONDecodeError):
        return Failure(True, "malformed_response", f"malformed answer: not JSON ({error.msg})")
    if isinstance(error, TIMEOUT_ERRORS):
        return Failure(
            True,
            "timeout",
            "timed out waiting for the answer: retrying; raise timeout_s if answers are long",
        )
    if isinstance(error, CONNECTION_ERRORS):
        return Failure(
            True,
            "connection",
            f"could not reach the API ({_cause_name(error)}): check base_url and the network",
        )
    if isinstance(error, STATUS_ERRORS):
        return classify_status(
            error.status_code, error.response.headers, error.body, key_env_var=key_env_var
        )
    return Failure(
        False, "unexpected", f"unexpected {type(error).__name__}: {clean_message(str(error))}"
    )


def classify_status(
    status: int,
    headers: Mapping[str, str] | None,
    body: object,
    *,
    key_env_var: str = "the API key variable",
) -> Failure:
    """Classify an HTTP error answer from its status, headers and decoded body."""
    error_type, code, provider_message = _error_fields(body)
    request_id = _request_id(headers)
    shown = error_type or code
    label = f"{status} {shown}" if shown else str(status)
    said = f": {provider_message}" if provider_message else ""

    def failure(retryable: bool, kind: str, message: str) -> Failure:
        return Failure(
            retryable,
            kind,
            message,
            status_code=status,
            request_id=request_id,
            retry_after_s=retry_after_seconds(headers) if retryable else None,
            provider_type=shown,
        )

    if _is_quota(status, error_type, code, provider_message):
        return failure(
            False,
            "quota",
            f"{label} quota or spend limit reached{said} — add credit or raise the spend "
            "limit, then re-run; retrying cannot help",
        )
    if status == 401:
        return failure(False, "authentication", f"401 authentication failed: check {key_env_var}")
    if status == 403:
        return failure(
            False,
            "permission",
            f"{label} permission denied{said} — the key in {key_env_var} may lack access to "
            "this model, or the account is restricted",
        )
    if status == 404:
        return failure(
            False, "not_found", f"{label} not found{said} — check the model id and base_url"
        )
    if status == 400:
        return failure(
            False, "bad_request", f"{label} bad request{said} — fix the request settings"
        )
    if status == 422:
        return failure(False, "unprocessable", f"{label} unprocessable request{said}")
    if status in RETRYABLE_STATUS_KINDS:
        return failure(True, RETRYABLE_STATUS_KINDS[status], f"{label}{said}")
    if status >= 500:
        return failure(True, "server_error", f"{label} server error{said}")
    return failure(False, "http_error", f"{label} request rejected{said}")


def _is_quota(status: int, error_type: str | None, code: str | None, message: str | None) -> bool:
    if status == 402:
        return True
    if status not in (400, 403, 429):
        return False
    if error_type in QUOTA_CODES or code in QUOTA_CODES:
        return True
    return bool(message and QUOTA_MESSAGE.search(message))


def _error_fields(body: object) -> tuple[str | None, str | None, str | None]:
    """(type, code, message) from an Anthropic (`{"error": {...}}`), OpenAI or Moonshot body."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            details = inner.get("details")
            code = inner.get("code")
            if code is None and isinstance(details, Mapping):
                code = details.get("error_code")
            return _text(inner.get("type")), _text(code), clean_message(_text(inner.get("message")))
        return None, None, clean_message(_text(inner))
    if isinstance(body, str | bytes):
        return None, None, clean_message(_text(body))
    return None, None, None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    return text or None


def clean_message(message: str | None) -> str | None:
    """A provider message safe to store: key-like tokens removed, one line, short."""
    if not message:
        return None
    flat = " ".join(KEY_LIKE.sub("[redacted]", message).split())
    if len(flat) > MAX_PROVIDER_MESSAGE:
        flat = flat[: MAX_PROVIDER_MESSAGE - 1] + "…"
    return flat


def _request_id(headers: Mapping[str, str] | None) -> str | None:
    if not headers:
        return None
    lowered = {name.lower(): value for name, value in headers.items()}
    return lowered.get("request-id") or lowered.get("x-request-id")


def _cause_name(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    return type(cause).__name__ if cause is not None else type(error).__name__
