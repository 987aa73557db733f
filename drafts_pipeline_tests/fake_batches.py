"""The batch endpoints of the fake provider server (`fake_providers.py`): Anthropic's Message
Batches, and OpenAI's and Moonshot's Files and Batches, in each API's wire format.

`BatchBook` holds the files and batches of one server and answers its batch requests. A batch
ends at the retrieve that polls it for the `batch_polls_until_done`-th time (or after a cancel);
only then are its items answered, each as a live request with the same body would be (the
server's `answer_item`), so texts and usage match live answers. How a batch ends is scripted on
the provider's `ProviderScript` when it is created: `batch_expire` (only the first
`batch_expire_answered` items are answered) and `batch_item_errors` (position -> fault kind).

Where the wires differ: Anthropic reports every item in its results (`canceled`, `expired`
included); OpenAI writes items a batch never ran to the error file (`batch_expired`,
`batch_cancelled`); Moonshot's docs show no result line, so this fake follows OpenAI's format but
writes no line for items that never ran, and its file objects say `status: "ready"` as Moonshot's
do (outside OpenAI's schema: the SDK must parse them leniently).
"""

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drafts_pipeline_tests.fake_providers import ProviderScript

DAY_S = 24 * 3600
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
CHAT_COMPLETIONS = "/v1/chat/completions"
MOONSHOT_WINDOW = re.compile(r"^\d+[hd]$")
BATCH_ITEM_FAULTS = (
    "rate_limit", "overloaded", "server_error", "unavailable", "request_timeout", "conflict",
    "bad_request", "forbidden", "not_found", "unprocessable", "quota", "malformed", "schema",
    "unreadable",
)  # fmt: skip
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
CANCELLED_MESSAGE = "This request was not executed because the batch was cancelled."


@dataclass(frozen=True)
class BatchReply:
    """What an endpoint answers: status, raw body and its content type."""

    status: int
    body: bytes
    content_type: str = "application/json"


class BatchRefused(Exception):
    """The request is refused with the wire's error answer of `kind` (a fault kind)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class ItemAnswer:
    """One item as a live request would have been answered: an HTTP status and its JSON body,
    or `malformed` (the result line itself is cut short)."""

    status: int
    body: Any
    malformed: bool = False


AnswerItem = Callable[["ProviderScript", str, Any, str | None], ItemAnswer]
"""(script, wire, item body, fault kind or None) -> the answer a live request would get."""


@dataclass
class FakeFile:
    id: str
    provider: str
    filename: str
    purpose: str
    data: bytes
    created_at: int


@dataclass
class FakeBatch:
    """One batch as the fake holds it; `outcomes` are set when it ends."""

    id: str
    provider: str
    wire: str
    items: list[tuple[str, Any]]
    created_at: int
    polls_until_done: int
    expire: bool
    expire_answered: int
    item_errors: dict[int, str]
    input_file_id: str | None = None
    polls: int = 0
    cancel_requested_at: int | None = None
    ended_at: int | None = None
    validation_errors: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[tuple[str, str, ItemAnswer | None]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None

    @property
    def expires_at(self) -> int:
        return self.created_at + DAY_S


class BatchBook:
    """The files and batches of one fake server, and the answers of its batch endpoints."""

    def __init__(self, answer_item: AnswerItem, base_url: Callable[[], str]) -> None:
        self._answer_item = answer_item
        self._base_url = base_url
        self._lock = threading.Lock()
        self._files: dict[str, FakeFile] = {}
        self._batches: dict[str, FakeBatch] = {}

    # Anthropic Message Batches

    def anthropic_create(self, script: "ProviderScript", body: Any) -> BatchReply:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise BatchRefused("bad_request", "requests: Field required")
        items: list[tuple[str, Any]] = []
        for index, request in enumerate(requests):
            custom_id = request.get("custom_id") if isinstance(request, dict) else None
            if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
                raise BatchRefused(
                    "bad_request", f"requests.{index}.custom_id: String should match pattern"
                )
            if not isinstance(request.get("params"), dict):
                raise BatchRefused("bad_request", f"requests.{index}.params: Field required")
            items.append((custom_id, request["params"]))
        _check_unique([custom_id for custom_id, _ in items])
        batch = self._new_batch(script, "anthropic", "msgbatch_", items)
        return _json(self._anthropic_batch(batch))

    def anthropic_retrieve(self, script: "ProviderScript", batch_id: str) -> BatchReply:
        batch = self._poll(script, batch_id)
        return _json(self._anthropic_batch(batch))

    def anthropic_cancel(self, script: "ProviderScript", batch_id: str) -> BatchReply:
        batch = self._cancel(script, batch_id)
        return _json(self._anthropic_batch(batch))

    def anthropic_results(self, script: "ProviderScript", batch_id: str) -> BatchReply:
        with self._lock:
            batch = self._batch(script, batch_id)
            if batch.outcomes is None:
                raise BatchRefused("not_found", f"Message Batch {batch_id} has no results yet.")
            lines = [_anthropic_line(custom_id, kind, answer) for custom_id, kind, answer in
                     batch.outcomes]  # fmt: skip
        return BatchReply(200, b"".join(lines), "application/binary")

    def anthropic_delete(self, script: "ProviderScript", batch_id: str) -> BatchReply:
        with self._lock:
            batch = self._batch(script, batch_id)
            if batch.outcomes is None:
                raise BatchRefused(
                    "bad_request",
                    f"Message Batch {batch_id} is still processing: cancel it before deleting",
                )
            del self._batches[batch.id]
        return _json({"id": batch.id, "type": "message_batch_deleted"})

    def held(self, provider: str) -> tuple[list[str], list[str]]:
        """The ids of the batches and the files the server still holds for `provider`."""
        with self._lock:
            return (
                [b.id for b in self._batches.values() if b.provider == provider],
                [f.id for f in self._files.values() if f.provider == provider],
            )

    def _anthropic_batch(self, batch: FakeBatch) -> dict[str, Any]:
        with self._lock:
            outcomes = batch.outcomes
            tally = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
            if outcomes is None:
                tally["processing"] = len(batch.items)
            else:
                for _, kind, _ in outcomes:
                    tally["succeeded" if kind == "malformed" else kind] += 1
            if outcomes is not None:
                status = "ended"
            elif batch.cancel_requested_at is not None:
                status = "canceling"
            else:
                status = "in_progress"
            results_url = (
                f"{self._base_url()}/claude/v1/messages/batches/{batch.id}/results"
                if outcomes is not None
                else None
            )
            return {
                "id": batch.id,
                "type": "message_batch",
                "processing_status": status,
                "request_counts": tally,
                "ended_at": _rfc3339(batch.ended_at),
                "created_at": _rfc3339(batch.created_at),
                "expires_at": _rfc3339(batch.expires_at),
                "archived_at": None,
                "cancel_initiated_at": _rfc3339(batch.cancel_requested_at),
                "results_url": results_url,
            }

    # OpenAI and Moonshot Files and Batches

    def upload(
        self, script: "ProviderScript", wire: str, content_type: str, raw: bytes
    ) -> BatchReply:
        fields = _multipart(content_type, raw)
        upload = fields.get("file")
        purpose = fields.get("purpose")
        if upload is None or purpose is None:
            raise BatchRefused("bad_request", "file and purpose are required")
        filename, data = upload
        if purpose[1].decode() != "batch":
            raise BatchRefused("bad_request", "purpose: only 'batch' files are served here")
        with self._lock:
            uploaded = FakeFile(
                id=f"file-{secrets.token_hex(12)}",
                provider=script.name,
                filename=filename or "upload",
                purpose="batch",
                data=data,
                created_at=int(time.time()),
            )
            self._files[uploaded.id] = uploaded
        return _json(_file_object(uploaded, wire))

    def file_content(self, script: "ProviderScript", file_id: str) -> BatchReply:
        with self._lock:
            found = self._file(script, file_id)
        return BatchReply(200, found.data, "application/octet-stream")

    def delete_file(self, script: "ProviderScript", file_id: str) -> BatchReply:
        with self._lock:
            found = self._file(script, file_id)
            del self._files[found.id]
        return _json({"id": found.id, "object": "file", "deleted": True})

    def openai_create(self, script: "ProviderScript", wire: str, body: Any) -> BatchReply:
        if not isinstance(body, dict) or not isinstance(body.get("input_file_id"), str):
            raise BatchRefused("bad_request", "input_file_id: Field required")
        window = body.get("completion_window")
        allowed = window == "24h" if wire == "openai" else bool(MOONSHOT_WINDOW.match(str(window)))
        if not allowed:
            raise BatchRefused("bad_request", f"completion_window {window!r} is not supported")
        if body.get("endpoint", CHAT_COMPLETIONS) != CHAT_COMPLETIONS:
            raise BatchRefused("bad_request", f"endpoint {body.get('endpoint')!r} is not supported")
        with self._lock:
            source = self._file(script, body["input_file_id"])
        if wire == "moonshot" and not source.filename.endswith(".jsonl"):
            raise BatchRefused("bad_request", "the input file must have a .jsonl extension")
        items, errors = _input_lines(source.data)
        batch = self._new_batch(script, wire, "batch_", items)
        with self._lock:
            batch.input_file_id = source.id
            batch.validation_errors = errors
        return _json(self._openai_batch(batch, "validating"))

    def openai_retrieve(self, script: "ProviderScript", batch_id: str) -> BatchReply:
        batch = self._poll(script, batch_id)
        return _json(self._openai_batch(batch))

    def openai_cancel(self, script: "ProviderScript", batch_id: str) -> BatchReply:
        batch = self._cancel(script, batch_id)
        return _json(self._openai_batch(batch, "cancelling"))

    def _openai_batch(self, batch: FakeBatch, status: str | None = None) -> dict[str, Any]:
        with self._lock:
            outcomes = batch.outcomes
            if status is None:
                status = _openai_status(batch)
            completed = failed = 0
            for _, kind, _ in outcomes or ():
                completed += kind in ("succeeded", "malformed")
                failed += kind == "errored" or (
                    batch.wire == "openai" and kind in ("expired", "canceled")
                )
            ended = batch.ended_at
            errors = (
                {"object": "list", "data": batch.validation_errors}
                if batch.validation_errors
                else None
            )
            return {
                "id": batch.id,
                "object": "batch",
                "endpoint": CHAT_COMPLETIONS,
                "errors": errors,
                "input_file_id": batch.input_file_id,
                "completion_window": "24h",
                "status": status,
                "output_file_id": batch.output_file_id,
                "error_file_id": batch.error_file_id,
                "created_at": batch.created_at,
                "in_progress_at": batch.created_at if batch.polls else None,
                "expires_at": batch.expires_at,
                "finalizing_at": ended if status == "completed" else None,
                "completed_at": ended if status == "completed" else None,
                "failed_at": ended if status == "failed" else None,
                "expired_at": ended if status == "expired" else None,
                "cancelling_at": batch.cancel_requested_at,
                "cancelled_at": ended if status == "cancelled" else None,
                "request_counts": {
                    "total": len(batch.items),
                    "completed": completed,
                    "failed": failed,
                },
                "metadata": None,
            }

    # Shared: the life of a batch

    def _new_batch(
        self, script: "ProviderScript", wire: str, prefix: str, items: list[tuple[str, Any]]
    ) -> FakeBatch:
        for kind in script.batch_item_errors.values():
            if kind not in BATCH_ITEM_FAULTS:
                raise ValueError(f"batch item fault {kind!r}; one of {BATCH_ITEM_FAULTS}")
        batch = FakeBatch(
            id=f"{prefix}{secrets.token_hex(12)}",
            provider=script.name,
            wire=wire,
            items=items,
            created_at=int(time.time()),
            polls_until_done=script.batch_polls_until_done,
            expire=script.batch_expire,
            expire_answered=script.batch_expire_answered,
            item_errors=dict(script.batch_item_errors),
        )
        with self._lock:
            self._batches[batch.id] = batch
            script.batches.append(batch)
        return batch

    def _poll(self, script: "ProviderScript", batch_id: str) -> FakeBatch:
        """A retrieve: counts the poll and ends the batch when its time has come."""
        with self._lock:
            batch = self._batch(script, batch_id)
            batch.polls += 1
            due = batch.polls >= batch.polls_until_done or batch.cancel_requested_at is not None
            if batch.outcomes is None and due:
                self._end(script, batch)
            return batch

    def _cancel(self, script: "ProviderScript", batch_id: str) -> FakeBatch:
        with self._lock:
            batch = self._batch(script, batch_id)
            if batch.outcomes is not None:
                raise BatchRefused("bad_request", f"batch {batch_id} has ended; nothing to cancel")
            if batch.cancel_requested_at is None:
                batch.cancel_requested_at = int(time.time())
            return batch

    def _end(self, script: "ProviderScript", batch: FakeBatch) -> None:
        """Answer the batch's items (caller holds the lock)."""
        outcomes: list[tuple[str, str, ItemAnswer | None]] = []
        if not batch.validation_errors:
            for position, (custom_id, body) in enumerate(batch.items):
                if batch.cancel_requested_at is not None:
                    outcomes.append((custom_id, "canceled", None))
                elif batch.expire and position >= batch.expire_answered:
                    outcomes.append((custom_id, "expired", None))
                else:
                    outcomes.append(self._answered(script, batch, position, custom_id, body))
        batch.outcomes = outcomes
        batch.ended_at = int(time.time())
        if batch.wire != "anthropic" and outcomes:
            self._write_result_files(script, batch)

    def _answered(
        self, script: "ProviderScript", batch: FakeBatch, position: int, custom_id: str, body: Any
    ) -> tuple[str, str, ItemAnswer]:
        fault = batch.item_errors.get(position)
        if fault == "malformed":
            return custom_id, "malformed", ItemAnswer(200, None, malformed=True)
        if fault == "schema":
            return custom_id, "succeeded", ItemAnswer(200, {"unexpected": True})
        if fault == "unreadable":  # answered and billed, but with no content to read
            answer = self._answer_item(script, batch.wire, body, None)
            script.batch_items_answered += 1
            return custom_id, "succeeded", ItemAnswer(200, without_content(answer.body))
        answer = self._answer_item(script, batch.wire, body, fault)
        if answer.status != 200:
            return custom_id, "errored", answer
        script.batch_items_answered += 1
        return custom_id, "succeeded", answer

    def _write_result_files(self, script: "ProviderScript", batch: FakeBatch) -> None:
        output: list[bytes] = []
        failed: list[bytes] = []
        for custom_id, kind, answer in batch.outcomes or ():
            line = _openai_line(batch.wire, custom_id, kind, answer)
            if line is None:
                continue
            (output if kind in ("succeeded", "malformed") else failed).append(line)
        now = int(time.time())
        for lines, slot in ((output, "output_file_id"), (failed, "error_file_id")):
            if not lines:
                continue
            written = FakeFile(
                id=f"file-{secrets.token_hex(12)}",
                provider=script.name,
                filename=f"{batch.id}_{slot.split('_')[0]}.jsonl",
                purpose="batch_output",
                data=b"".join(lines),
                created_at=now,
            )
            self._files[written.id] = written
            setattr(batch, slot, written.id)

    def _batch(self, script: "ProviderScript", batch_id: str) -> FakeBatch:
        batch = self._batches.get(batch_id)
        if batch is None or batch.provider != script.name:
            raise BatchRefused("not_found", f"No batch found with id '{batch_id}'.")
        return batch

    def _file(self, script: "ProviderScript", file_id: str) -> FakeFile:
        found = self._files.get(file_id)
        if found is None or found.provider != script.name:
            raise BatchRefused("not_found", f"No such File object: {file_id}")
        return found


def without_content(answer: dict[str, Any]) -> dict[str, Any]:
    """A Message or a completion as billed (its usage kept) but with no content a client can
    read: the Message's `content` null, the completion without choices."""
    if answer.get("type") == "message":
        return {**answer, "content": None}
    return {**answer, "choices": []}


def _openai_status(batch: FakeBatch) -> str:
    if batch.outcomes is None:
        return "cancelling" if batch.cancel_requested_at is not None else "in_progress"
    if batch.validation_errors:
        return "failed"
    if batch.cancel_requested_at is not None:
        return "cancelled"
    return "expired" if batch.expire else "completed"


def _anthropic_line(custom_id: str, kind: str, answer: ItemAnswer | None) -> bytes:
    if kind == "malformed":
        return f'{{"custom_id": "{custom_id}", "result": {{"type": "succ\n'.encode()
    result: dict[str, Any] = {"type": kind}
    if kind == "succeeded" and answer is not None:
        result["message"] = answer.body
    elif kind == "errored" and answer is not None:
        result["error"] = answer.body
    return (json.dumps({"custom_id": custom_id, "result": result}) + "\n").encode()


def _openai_line(wire: str, custom_id: str, kind: str, answer: ItemAnswer | None) -> bytes | None:
    """A result line; None for an item Moonshot would write nowhere (it never ran)."""
    line: dict[str, Any] = {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id}
    if kind == "malformed":
        return f'{{"id": "{line["id"]}", "custom_id": "{custom_id}", "respo\n'.encode()
    if answer is None:
        if wire != "openai":
            return None
        code, message = (
            ("batch_expired", EXPIRED_MESSAGE)
            if kind == "expired"
            else ("batch_cancelled", CANCELLED_MESSAGE)
        )
        line.update(response=None, error={"code": code, "message": message})
    else:
        request_id = f"req_{secrets.token_hex(12)}"
        line.update(
            response={"status_code": answer.status, "request_id": request_id, "body": answer.body},
            error=None,
        )
    return (json.dumps(line) + "\n").encode()


def _input_lines(data: bytes) -> tuple[list[tuple[str, Any]], list[dict[str, Any]]]:
    """The items of an input file, and the validation errors that fail the whole batch."""
    items: list[tuple[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            errors.append(_line_error(number, "invalid_json", "Line is not valid JSON."))
            continue
        missing = [key for key in ("custom_id", "method", "url", "body") if key not in line]
        if missing:
            errors.append(_line_error(number, "missing_required_parameter", f"{missing[0]}"))
        elif line["method"] != "POST" or line["url"] != CHAT_COMPLETIONS:
            errors.append(_line_error(number, "invalid_url", "url must be /v1/chat/completions"))
        else:
            items.append((str(line["custom_id"]), line["body"]))
    if not items and not errors:
        errors.append(_line_error(None, "empty_file", "The input file is empty."))
    try:
        _check_unique([custom_id for custom_id, _ in items])
    except BatchRefused as duplicate:
        errors.append(_line_error(None, "duplicate_custom_id", duplicate.message))
    return items, errors


def _line_error(line: int | None, code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": line}


def _check_unique(custom_ids: list[str]) -> None:
    if len(set(custom_ids)) != len(custom_ids):
        raise BatchRefused("bad_request", "custom_id values must be unique within a batch")


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, bytes), parsed by the
    standard library's MIME parser."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields: dict[str, tuple[str | None, bytes]] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = (part.get_filename(), payload)
    return fields


def _file_object(found: FakeFile, wire: str) -> dict[str, Any]:
    return {
        "id": found.id,
        "object": "file",
        "bytes": len(found.data),
        "created_at": found.created_at,
        "filename": found.filename,
        "purpose": found.purpose,
        "status": "ready" if wire == "moonshot" else "processed",
        "expires_at": None,
        "status_details": None,
    }


def _rfc3339(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _json(body: Any) -> BatchReply:
    return BatchReply(200, json.dumps(body).encode())
