"""The providers' batch APIs: many drafts sent as one job, answered within a day, at a lower price.

One interface, `BatchAPI`, over each wire API's batch endpoints through its official SDK, on the
provider resource's own client and key (`LiveProvider.batch_api()`):

- Anthropic's Message Batches (`AnthropicMessageBatches`): one request carries every item, a
  `custom_id` and the Messages API body as `params`; `processing_status` goes `in_progress`,
  `canceling`, `ended`; the results are a JSONL stream whose lines say `succeeded` (with the
  Message), `errored`, `canceled` or `expired`.
- OpenAI's Batch API (`OpenAIBatches`): the items are a JSONL file uploaded with purpose `batch`,
  one Chat Completions request a line; the batch runs over that file and answers in two files,
  `output_file_id` (answered lines) and `error_file_id` (failed lines, and lines of items a
  batch that expired or was cancelled never ran: codes `batch_expired`, `batch_cancelled`).
- Moonshot's Kimi batches: OpenAI-compatible Files and Batches endpoints, served by
  `OpenAIBatches` (the differences are in its docstring).

Custom ids are the items' positions ("0", "1", ...): a task id may hold characters or a length a
provider refuses, and the caller keeps the task list in order. `results()` yields one result per
submitted item whenever the provider reports the batch's size: an item in no result file (an
OpenAI batch that expired, a line that cannot be read) comes as the batch's end says (`expired`,
`cancelled`, else `errored`).

Errors are `ProviderError`s classified as live calls' are (`retry.classify`) with the key
removed. Batch calls are few (a submit, a poll a minute, one download), so each gets a plain
retry of transient failures with the provider's own policy (attempts, backoff, retry-after cap),
run by `tenacity`, outside the live calls' limiter and call log. A call that creates a batch is
sent again only after an answer that says nothing was done (429, 5xx, 529, 408, 409): after a
timeout the batch may exist, and a second one would be paid twice.
"""

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import httpx2
import pydantic
import tenacity
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
from openai.types import Batch
from openai.types.chat import ChatCompletion

from drafts_pipeline.errors import ProviderError
from drafts_pipeline.llm.anthropic_messages import messages_reply
from drafts_pipeline.llm.calling import ProviderReply, redact
from drafts_pipeline.llm.generation import TokenUsage
from drafts_pipeline.llm.openai_chat import chat_reply
from drafts_pipeline.llm.retry import (
    MalformedResponseError,
    RetryPolicy,
    backoff_s,
    classify,
    classify_status,
    clean_message,
)

if TYPE_CHECKING:
    from drafts_pipeline.llm.provider import DraftRequest, LiveProvider

logger = logging.getLogger(__name__)

BatchStatus = Literal["in_progress", "ended", "expired", "cancelled", "failed"]
ItemKind = Literal["succeeded", "errored", "expired", "cancelled"]
T = TypeVar("T")

# Failures whose answer says the server did nothing: a call that creates may be sent again.
REFUSED_KINDS = frozenset(
    {"rate_limited", "overloaded", "server_error", "request_timeout", "conflict"}
)
# Failures after which a created batch may exist although the call failed.
UNKNOWN_OUTCOME_KINDS = frozenset({"timeout", "connection", "malformed_response", "unexpected"})
CHAT_COMPLETIONS = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
INPUT_FILENAME = "drafts-batch.jsonl"
ANTHROPIC_MAX_ITEMS = 100_000
OPENAI_MAX_ITEMS = 50_000


@dataclass(frozen=True)
class BatchSubmission:
    """A batch the provider accepted."""

    batch_id: str
    expires_at: datetime | None
    """When the provider gives up on it (UTC); None when it does not say."""
    input_file_id: str | None
    """OpenAI and Moonshot: the uploaded JSONL file the batch runs over."""


@dataclass(frozen=True)
class BatchState:
    """Where a batch is. Every status but `in_progress` is final, and each of them has results
    to collect: an expired or cancelled batch may hold answered items, and those are billed."""

    status: BatchStatus
    counts: dict[str, int]
    """Items by outcome as the provider reports them: `total`, `succeeded`, `errored`, and
    Anthropic's `processing`, `cancelled`, `expired` too."""
    raw_status: str
    """The API's own word, for logs."""
    error: str | None = None
    """Why the provider failed the whole batch, where it says (OpenAI's and Moonshot's
    validation errors), secret-free."""

    @property
    def ended(self) -> bool:
        return self.status != "in_progress"


@dataclass(frozen=True)
class BatchItemResult:
    """One item's outcome: a reply for `succeeded`, the provider's message (secret-free) for
    the others."""

    custom_id: str
    kind: ItemKind
    reply: ProviderReply | None
    error: str | None
    usage: TokenUsage | None = None
    """An `errored` item's billed tokens: its answer came, with readable usage, but its content
    could not be read."""
    request_id: str | None = None
    """Such an item's request id, when its answer gave one."""


class BatchAPI(Protocol):
    """A provider's batch endpoints. Every method raises `ProviderError` when the provider
    cannot be asked (auth, HTTP, a batch id it does not know)."""

    def submit(self, requests: Sequence["DraftRequest"]) -> BatchSubmission:
        """One batch of these requests, item `i` with custom id `str(i)`."""
        ...

    def state(self, batch_id: str) -> BatchState: ...

    def results(self, batch_id: str) -> Iterator[BatchItemResult]:
        """Every item's outcome, once the batch has ended (else `ProviderError`)."""
        ...

    def cancel(self, batch_id: str) -> None:
        """Ask the provider to stop; items already answered stay answered (and billed)."""
        ...

    def discard(self, batch_id: str) -> None:
        """Delete what the provider keeps of an ended batch whose items are all collected: the
        prompts and answers would otherwise stay there, and files count against a quota. What
        is already gone is no error."""
        ...


@dataclass(frozen=True)
class BatchCalls:
    """How one provider's batch calls are made: the retry policy around each SDK call, and
    failures turned into `ProviderError`s without the key."""

    provider: str
    key_env_var: str
    secret: str = field(repr=False)
    policy: RetryPolicy
    sleep: Callable[[float], None]

    @classmethod
    def of(cls, provider: "LiveProvider") -> "BatchCalls":
        return cls(
            provider=provider.name,
            key_env_var=provider.api_key_env_var,
            secret=provider.resolved_api_key(),
            policy=provider.retry_policy(),
            sleep=provider._clock().sleep,
        )

    def run(self, what: str, call: Callable[[], T], *, creates: bool = False) -> T:
        """`call` under the retry policy; `what` names the call in the error."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self._refused if creates else self._transient),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(call)
        except Exception as error:  # every SDK error becomes a ProviderError
            provider_error = self.error(what, error, creates=creates)
            if provider_error.error_type in ("unexpected", "connection"):
                raise provider_error from error
            raise provider_error from None

    def error(self, what: str, error: BaseException, *, creates: bool = False) -> ProviderError:
        failure = classify(error, key_env_var=self.key_env_var)
        message = f"{what}: {failure.message}"
        if creates and failure.kind in UNKNOWN_OUTCOME_KINDS:
            message += (
                "; the batch may have been created all the same: look at the provider's list "
                "of batches before sending these items again"
            )
        return ProviderError(
            self.provider,
            self.redact(message),
            retryable=failure.retryable,
            status_code=failure.status_code,
            error_type=failure.kind,
            request_id=failure.request_id,
        )

    def not_ended(self, batch_id: str, raw_status: str) -> ProviderError:
        return ProviderError(
            self.provider,
            f"batch {batch_id} has not ended (status {raw_status}): collect its results once "
            "its state says it ended",
            retryable=True,
            error_type="batch_not_ended",
        )

    def redact(self, text: str) -> str:
        return redact(text, self.secret)

    def _transient(self, error: BaseException) -> bool:
        failure = classify(error, key_env_var=self.key_env_var)
        wait = failure.retry_after_s
        return failure.retryable and (wait is None or wait <= self.policy.retry_after_cap_s)

    def _refused(self, error: BaseException) -> bool:
        kind = classify(error, key_env_var=self.key_env_var).kind
        return kind in REFUSED_KINDS and self._transient(error)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = classify(error).retry_after_s if error is not None else None
        return wait if wait is not None else backoff_s(state.attempt_number, self.policy)


class AnthropicMessageBatches:
    """Anthropic's Message Batches API (at most 100,000 items or 256 MB a batch; a batch
    expires 24 hours after it is created)."""

    def __init__(self, provider: "LiveProvider") -> None:
        self._provider = provider
        self._calls = BatchCalls.of(provider)

    def submit(self, requests: Sequence["DraftRequest"]) -> BatchSubmission:
        _check_size(requests, ANTHROPIC_MAX_ITEMS)
        items: Any = [
            {"custom_id": str(position), "params": self._provider.request_body(request)}
            for position, request in enumerate(requests)
        ]
        client = self._provider.sdk_client()
        batch = self._calls.run(
            f"creating a Message Batch of {len(items)} item(s)",
            lambda: client.messages.batches.create(requests=items),
            creates=True,
        )
        return BatchSubmission(batch.id, batch.expires_at.astimezone(UTC), None)

    def state(self, batch_id: str) -> BatchState:
        return anthropic_state(self._retrieve(batch_id))

    def results(self, batch_id: str) -> Iterator[BatchItemResult]:
        state = self.state(batch_id)
        if not state.ended:
            raise self._calls.not_ended(batch_id, state.raw_status)
        client = self._provider.sdk_client()
        body = self._calls.run(
            f"downloading the results of Message Batch {batch_id}",
            lambda: _read_stream(client.messages.batches.results(batch_id)),
        )
        seen: set[str] = set()
        for line in _json_lines(body, batch_id):
            item = self._item(line)
            if item is not None and item.custom_id not in seen:
                seen.add(item.custom_id)
                yield item
        yield from _missing(state, seen, self._provider.name)

    def cancel(self, batch_id: str) -> None:
        client = self._provider.sdk_client()
        self._calls.run(
            f"cancelling Message Batch {batch_id}",
            lambda: client.messages.batches.cancel(batch_id),
        )

    def discard(self, batch_id: str) -> None:
        """Delete the batch and its results (Anthropic deletes only ended batches, and keeps
        results for 29 days otherwise)."""
        client = self._provider.sdk_client()
        _unless_gone(
            lambda: self._calls.run(
                f"deleting Message Batch {batch_id}",
                lambda: client.messages.batches.delete(batch_id),
            )
        )

    def _retrieve(self, batch_id: str) -> MessageBatch:
        client = self._provider.sdk_client()
        return self._calls.run(
            f"reading Message Batch {batch_id}", lambda: client.messages.batches.retrieve(batch_id)
        )

    def _item(self, line: Any) -> BatchItemResult | None:
        custom_id = _custom_id(line)
        if custom_id is None:
            return None
        try:
            result = _model(MessageBatchIndividualResponse, line).result
            if result.type == "succeeded":
                return BatchItemResult(custom_id, "succeeded", messages_reply(result.message), None)
            if result.type == "errored":
                return _failed(custom_id, "errored", self._calls.redact(_anthropic_error(result)))
            if result.type == "canceled":
                return _failed(custom_id, "cancelled", "cancelled before it ran")
            if result.type == "expired":
                return _failed(custom_id, "expired", "not run before the batch expired")
            raise MalformedResponseError(f"unknown result type {result.type!r}")
        except (MalformedResponseError, AttributeError, TypeError) as error:
            message = self._calls.redact(f"unreadable result: {clean_message(str(error))}")
            return _failed(custom_id, "errored", message, *_billed(error))


class OpenAIBatches:
    """OpenAI's Batch API over the Files API (at most 50,000 items or 200 MB a file; a batch
    has 24 hours), and Moonshot's, which follows it.

    Moonshot (platform.kimi.ai/docs: guide/use-batch-api, api/batch-create, batch-retrieve,
    batch-cancel, files-upload, pricing/batch; read 2026-11) differs in these ways:

    - Its file object says `status: "ready"` (or `"ok"`), a value outside OpenAI's schema:
      harmless, as the SDK parses answers without validating them unless told to.
    - Files must be named `*.jsonl`, be non-empty and at most 100 MB, and an organization keeps
      at most 1,000 batch files: the input file is deleted when its batch cannot be created.
    - `completion_window` may be 12 hours to 7 days; "24h", the only value OpenAI accepts, is
      sent to both. Its create call documents `input_file_id` and `completion_window`; the SDK
      also sends `endpoint`, which names the one endpoint Moonshot batches serve.
    - Only the models its batch guide lists take batches, and they accept no `temperature`
      or `top_p`; another model fails the batch's validation (status `failed`).
    - A batch costs 60% of the live price (`pricing.py`), not 50%.
    - Its docs do not show a result line; OpenAI's format is assumed. Items in no result file
      are reported as the batch's end says.

    The statuses (validating, in_progress, finalizing, completed, failed, expired, cancelling,
    cancelled), the request counts, list and cancel are OpenAI's.
    """

    def __init__(self, provider: "LiveProvider") -> None:
        self._provider = provider
        self._calls = BatchCalls.of(provider)

    def submit(self, requests: Sequence["DraftRequest"]) -> BatchSubmission:
        _check_size(requests, OPENAI_MAX_ITEMS)
        lines = [
            json.dumps(
                {
                    "custom_id": str(position),
                    "method": "POST",
                    "url": CHAT_COMPLETIONS,
                    "body": self._provider.request_body(request),
                }
            )
            for position, request in enumerate(requests)
        ]
        data = ("\n".join(lines) + "\n").encode()
        client = self._provider.sdk_client()
        uploaded = self._calls.run(
            f"uploading the batch input file of {len(lines)} item(s)",
            lambda: client.files.create(
                file=(INPUT_FILENAME, data, "application/jsonl"), purpose="batch"
            ),
        )
        try:
            batch = self._calls.run(
                f"creating a batch over file {uploaded.id}",
                lambda: client.batches.create(
                    input_file_id=uploaded.id,
                    endpoint=CHAT_COMPLETIONS,
                    completion_window=COMPLETION_WINDOW,
                ),
                creates=True,
            )
        except ProviderError as error:
            if error.error_type not in UNKNOWN_OUTCOME_KINDS:
                self._delete_file(uploaded.id)
            raise
        expires_at = datetime.fromtimestamp(batch.expires_at, UTC) if batch.expires_at else None
        return BatchSubmission(batch.id, expires_at, uploaded.id)

    def state(self, batch_id: str) -> BatchState:
        batch = self._retrieve(batch_id)
        said = _batch_errors(batch)
        return replace(openai_state(batch), error=self._calls.redact(said) if said else None)

    def results(self, batch_id: str) -> Iterator[BatchItemResult]:
        batch = self._retrieve(batch_id)
        state = openai_state(batch)
        if not state.ended:
            raise self._calls.not_ended(batch_id, state.raw_status)
        client = self._provider.sdk_client()
        seen: set[str] = set()
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = self._calls.run(
                f"downloading result file {file_id} of batch {batch_id}",
                _file_content(client, file_id),
            )
            for line in _json_lines(content, batch_id):
                item = self._item(line)
                if item is not None and item.custom_id not in seen:
                    seen.add(item.custom_id)
                    yield item
        said = _batch_errors(batch)
        yield from _missing(
            state, seen, self._provider.name, self._calls.redact(said) if said else None
        )

    def cancel(self, batch_id: str) -> None:
        client = self._provider.sdk_client()
        self._calls.run(f"cancelling batch {batch_id}", lambda: client.batches.cancel(batch_id))

    def discard(self, batch_id: str) -> None:
        """Delete the batch's input file and its result files (the batch object itself cannot
        be deleted). Moonshot keeps at most 1,000 batch files an organization: files left
        behind would stop its batches after some 300 to 500 of them."""
        batch = _unless_gone(lambda: self._retrieve(batch_id))
        if batch is None:
            return
        for file_id in (batch.input_file_id, batch.output_file_id, batch.error_file_id):
            if file_id:
                self._delete(file_id, batch_id)

    def _delete(self, file_id: str, batch_id: str) -> None:
        client = self._provider.sdk_client()
        _unless_gone(
            lambda: self._calls.run(
                f"deleting file {file_id} of batch {batch_id}",
                lambda: client.files.delete(file_id),
            )
        )

    def _retrieve(self, batch_id: str) -> Batch:
        client = self._provider.sdk_client()
        return self._calls.run(
            f"reading batch {batch_id}", lambda: client.batches.retrieve(batch_id)
        )

    def _delete_file(self, file_id: str) -> None:
        """Best effort: a leftover file costs only a place in the provider's file quota."""
        client = self._provider.sdk_client()
        try:
            self._calls.run(f"deleting file {file_id}", lambda: client.files.delete(file_id))
        except ProviderError as error:
            logger.warning("%s: the unused batch input file stays: %s", error.provider, error)

    def _item(self, line: Any) -> BatchItemResult | None:
        custom_id = _custom_id(line)
        if custom_id is None:
            return None
        error = line.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            said = clean_message(_text(error.get("message")))
            kind = OPENAI_ITEM_ERRORS.get(str(code), "errored")
            message = ": ".join(part for part in (_text(code), said) if part) or "failed"
            return _failed(custom_id, kind, self._calls.redact(message))
        response = line.get("response")
        if not isinstance(response, dict):
            return _failed(custom_id, "errored", "result line without a response")
        status = response.get("status_code")
        body = response.get("body")
        if status != 200:
            code = status if isinstance(status, int) else 0
            failure = classify_status(code, None, body, key_env_var=self._calls.key_env_var)
            return _failed(custom_id, "errored", self._calls.redact(failure.message))
        try:
            reply = chat_reply(_model(ChatCompletion, body))
        except (MalformedResponseError, AttributeError, TypeError) as error:
            message = self._calls.redact(f"unreadable answer: {clean_message(str(error))}")
            usage, answer_id = _billed(error)
            item_id = _text(response.get("request_id")) or answer_id
            return _failed(custom_id, "errored", message, usage, item_id)
        request_id = _text(response.get("request_id")) or reply.request_id
        return BatchItemResult(custom_id, "succeeded", replace(reply, request_id=request_id), None)


def anthropic_state(batch: MessageBatch) -> BatchState:
    """`ended` becomes `cancelled` when a cancel was asked for, `expired` when items expired."""
    counts = batch.request_counts
    reported = {
        "processing": counts.processing,
        "succeeded": counts.succeeded,
        "errored": counts.errored,
        "cancelled": counts.canceled,
        "expired": counts.expired,
    }
    status: BatchStatus = "in_progress"
    if batch.processing_status == "ended":
        if batch.cancel_initiated_at is not None:
            status = "cancelled"
        elif counts.expired:
            status = "expired"
        else:
            status = "ended"
    return BatchState(
        status, {"total": sum(reported.values()), **reported}, batch.processing_status
    )


# Error codes of result lines that are no failure of the item itself.
OPENAI_ITEM_ERRORS: dict[str, ItemKind] = {
    "batch_expired": "expired",
    "batch_cancelled": "cancelled",
}
OPENAI_STATUSES: dict[str, BatchStatus] = {
    "validating": "in_progress",
    "in_progress": "in_progress",
    "finalizing": "in_progress",
    "cancelling": "in_progress",
    "completed": "ended",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "cancelled",
}


def openai_state(batch: Batch) -> BatchState:
    """OpenAI's and Moonshot's statuses; one neither documents counts as still running."""
    counts = batch.request_counts
    reported = (
        {"total": counts.total, "succeeded": counts.completed, "errored": counts.failed}
        if counts is not None
        else {}
    )
    return BatchState(OPENAI_STATUSES.get(batch.status, "in_progress"), reported, batch.status)


def _unless_gone(call: Callable[[], T]) -> T | None:
    """`call()`, or None when the provider answers 404: deleted already (by another
    collection of the same batch), or never there."""
    try:
        return call()
    except ProviderError as error:
        if error.status_code == 404:
            return None
        raise


def _check_size(requests: Sequence["DraftRequest"], most: int) -> None:
    if not requests:
        raise ValueError("a batch needs at least one request")
    if len(requests) > most:
        raise ValueError(f"a batch takes at most {most} requests, not {len(requests)}")


def _file_content(client: Any, file_id: str) -> Callable[[], bytes]:
    return lambda: bytes(client.files.content(file_id).content)


def _read_stream(decoder: Any) -> bytes:
    """The whole body of a streamed answer; a stream cut short is a retryable failure."""
    try:
        return bytes(decoder.http_response.read())
    except httpx2.HTTPError as error:
        raise MalformedResponseError(f"the answer broke off ({type(error).__name__})") from error
    finally:
        decoder.close()


def _json_lines(body: bytes, batch_id: str) -> Iterator[Any]:
    """Each JSON line of a result file; a line that is not JSON is logged and skipped (its item
    is then reported as missing)."""
    for number, raw in enumerate(body.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield json.loads(raw)
        except ValueError:
            logger.warning("batch %s: result line %d is not JSON; skipped", batch_id, number)


def _model(model: Any, value: Any) -> Any:
    """An SDK model of `value`: validated, else built leniently as the SDK builds answers by
    default, so a provider's small departure from the schema does not lose a paid answer."""
    if not isinstance(value, dict):
        raise MalformedResponseError(f"expected an object, got {type(value).__name__}")
    try:
        return model.model_validate(value)
    except pydantic.ValidationError:
        return model.construct(**value)


def _custom_id(line: Any) -> str | None:
    custom_id = line.get("custom_id") if isinstance(line, dict) else None
    return custom_id if isinstance(custom_id, str) else None


def _text(value: object) -> str | None:
    return str(value) if value is not None else None


def _failed(
    custom_id: str,
    kind: ItemKind,
    error: str,
    usage: TokenUsage | None = None,
    request_id: str | None = None,
) -> BatchItemResult:
    return BatchItemResult(custom_id, kind, None, error, usage, request_id)


def _billed(error: Exception) -> tuple[TokenUsage | None, str | None]:
    """The tokens an unreadable answer was billed for, when it said so readably, and its
    request id."""
    if isinstance(error, MalformedResponseError) and error.usage is not None:
        return error.usage, error.request_id
    return None, None


def _anthropic_error(result: Any) -> str:
    """`<error type>: <message>` from an errored result's error response."""
    detail = getattr(getattr(result, "error", None), "error", None)
    kind = getattr(detail, "type", None) or "error"
    said = clean_message(_text(getattr(detail, "message", None)))
    return f"{kind}: {said}" if said else str(kind)


def _batch_errors(batch: Batch) -> str | None:
    """A failed batch's validation errors, as one line."""
    errors = batch.errors.data if batch.errors is not None and batch.errors.data else []
    said = [clean_message(error.message) for error in errors if error.message]
    return "; ".join(message for message in said if message) or None


def _missing(
    state: BatchState, seen: set[str], provider: str, batch_error: str | None = None
) -> Iterator[BatchItemResult]:
    """The items no result line answered, as the batch's end explains them."""
    total = state.counts.get("total", 0)
    absent = [str(position) for position in range(total) if str(position) not in seen]
    if not absent:
        return
    if state.status in ("expired", "cancelled"):
        kind: ItemKind = state.status
        reason = f"not run before the batch was {state.status}"
    elif state.status == "failed":
        kind = "errored"
        reason = f"the batch failed: {batch_error or 'the provider gave no reason'}"
    else:
        kind = "errored"
        reason = "the provider returned no readable result for this item"
    logger.warning("%s: %d item(s) without a result line: %s", provider, len(absent), reason)
    for custom_id in absent:
        yield _failed(custom_id, kind, reason)
