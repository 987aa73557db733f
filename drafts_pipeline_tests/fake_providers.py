"""A fake of the providers' HTTP APIs: real HTTP on 127.0.0.1, real wire formats, scripted faults.

The resources' real SDKs talk to it through `base_url`, so a test exercises the SDK, the retry
layer, the limiter and the parsing exactly as in production, without the internet or a key.

One server speaks for every provider, each under its own prefix and wire format:

| provider | wire | base URL (`server.base_url(name)`) | endpoint |
|---|---|---|---|
| claude | Anthropic Messages | `{url}/claude` | `POST /claude/v1/messages` |
| openai | OpenAI Chat Completions | `{url}/openai/v1` | `POST /openai/v1/chat/completions` |
| kimi | Moonshot (OpenAI-compatible) | `{url}/moonshot/v1` | `POST /moonshot/v1/chat/completions` |
| added | OpenAI-compatible | `{url}/{name}/v1` | `POST /{name}/v1/chat/completions` |

`add_provider(name)` adds one (no batch endpoints).

Unprefixed `/v1/messages` and `/v1/chat/completions` reach claude and openai too.

The batch endpoints (`fake_batches.py`) sit under the same prefixes, in each API's wire format:

| provider | endpoints (under the provider's prefix) |
|---|---|
| claude | `POST /v1/messages/batches`, `GET …/{id}`, `POST …/{id}/cancel`, `GET …/{id}/results`, |
| | `DELETE …/{id}` (once ended) |
| openai, kimi | `POST /files` (multipart), `GET /files/{id}/content`, `DELETE /files/{id}`, |
| | `POST /batches`, `GET /batches/{id}`, `POST /batches/{id}/cancel` |

A batch ends at its `batch_polls_until_done`-th retrieve (default 1), or at the retrieve after a
cancel; its items are then answered as live requests with the same bodies would be. `batch_expire`
ends it expired with only the first `batch_expire_answered` items answered; `batch_item_errors`
({position: fault kind}) errors those items (`malformed` cuts their result line short, `schema`
answers 200 with a body off the schema, `unreadable` answers the item billed but with no content
a client can read); `fail_batch(endpoint, kind)` queues faults for one batch
endpoint's own requests, `batch_faults` for the next batch request whatever its endpoint.
Counters: `batches` (each batch as the fake holds it), `batch_items_answered` (items answered
with a draft: what a provider bills), `batch_requests`; `batch_book.held(provider)` lists the
batches and files the server still holds (deleted ones are gone).

Each provider has a `ProviderScript`: its latency, a rate limit (requests per window, then 429 with
`retry-after`), a queue of faults (`script.fail("rate_limit", retry_after="0.2")`), a probability of
faults, a `down` mode, and counters (requests with their headers and bodies, statuses, the most
requests in flight at once). Each provider also expects its own API key (`script.api_key`); a
request without it gets the provider's real 401. The answer is a valid `DocDraft` JSON built from
the symbol's code in the user message (its `The symbol's source:` block).

Structured output is checked as the APIs check it, a bad request getting the wire's 400:
`response_format` (type `text`, `json_object` or `json_schema`; a `strict` schema must close
every object and require every property), Anthropic's `output_config.format` (type
`json_schema`, every object closed, no length or number bounds) and `tools` / `tool_choice` (a
forced tool must be one of the tools). A request forcing a tool is answered with a `tool_use`
block whose input is the draft (an answer scripted as no JSON object stays a text block).

Usage counts four characters a token of everything the model reads, system prompt included, and
reports reasoning tokens as each API does. Each provider keeps a prompt cache as its API does
(`fake_prompt_cache.py`): Anthropic writes and then reads the prefix a `cache_control` mark ends,
once it reaches the model's minimum, for five minutes from its last use; OpenAI reads the
longest earlier prefix in 128-token blocks from 1,024 tokens on, or, for a request with cache
breakpoints (GPT-5.6 and later), writes and reads at its breakpoints; Moonshot reads repeated
prefixes by itself. `script.prompt_cache.clock` is the time its entries expire by.
"""

import json
import random
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from drafts_pipeline.llm.calling import Clock
from drafts_pipeline.llm.offline import offline_answer
from drafts_pipeline.llm.provider import LiveProvider
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline_tests.fake_batches import (
    BatchBook,
    BatchRefused,
    BatchReply,
    FakeBatch,
    ItemAnswer,
    without_content,
)
from drafts_pipeline_tests.fake_prompt_cache import FakePromptCache, prompt_text, tokens
from drafts_pipeline_tests.provider_doubles import HOOKED_CLASSES, with_clock

WIRES = {"claude": "anthropic", "openai": "openai", "kimi": "moonshot"}
PREFIXES = {"claude": "/claude", "openai": "/openai/v1", "kimi": "/moonshot/v1"}
ENDPOINTS = {
    "anthropic": "/v1/messages",
    "openai": "/chat/completions",
    "moonshot": "/chat/completions",
}
FAULT_KINDS = (
    "rate_limit", "overloaded", "server_error", "unavailable", "request_timeout", "conflict",
    "timeout", "disconnect", "malformed", "schema", "unreadable", "unauthorized", "bad_request",
    "forbidden", "not_found", "unprocessable", "quota",
)  # fmt: skip
DOWN_MODES = ("500", "disconnect")
SOURCE_BLOCK = re.compile(r"The symbol's source:\n(`{3,})([^\n]*)\n(.*?)\n\1\n", re.DOTALL)
SYMBOL_LINE = re.compile(r"^Symbol: (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Fault:
    """One scripted failure. `retry_after` / `retry_after_ms` become headers; `delay_s` is how
    long a `timeout` fault keeps the client waiting (longer than its timeout); `message`
    replaces the error's usual text."""

    kind: str
    retry_after: str | None = None
    retry_after_ms: str | None = None
    delay_s: float = 5.0
    message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {FAULT_KINDS}")


@dataclass(frozen=True)
class FixedUsage:
    """Token counts to report instead of ones derived from the prompt; `cached_tokens` and
    `cache_write_tokens` are part of `input_tokens` and `reasoning_tokens` part of
    `output_tokens`, as OpenAI counts them."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it, and what it answered (no answer: status None)."""

    path: str
    headers: dict[str, str]
    body: Any
    received_at: float
    status: int | None = None
    method: str = "POST"
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: Any = None
    answered_at: float | None = None


@dataclass
class ProviderScript:
    """How one provider behaves (set the fields or queue faults) and what it saw.

    Behaviour: `latency_s` before each answer; `rate_limit` requests per `rate_window_s`, then
    429 with `retry-after` (and `retry-after-ms` on OpenAI wires); `faults` served first, one
    per request (`fail`); else `random_fault` with `fault_probability`; `down` = "500" or
    "disconnect" for every request; `usage` fixes the token counts, else they follow the prompt,
    its `prompt_cache` and `reasoning_tokens`; `finish_reason`, `refusal` (chat wires) and
    `answer` (prompt -> text) shape the answer. Ordering: `hold` (an Event) keeps every answer
    until it is set; `answer_when_in_flight=n` keeps answers until n requests have been in flight
    at once (so a test sees concurrency at the server, not in elapsed time); `before_answer` is
    called with the prompt, in the server's thread, before each answer that is not a fault (a
    test can keep one task's answer there until what it waits for is seen); `unknown_models`
    get the provider's own 404 for every request naming them, as a retired model does.
    Counters: `requests` (headers, body, status, answer), `calls`, `statuses`, `max_in_flight`.

    Batches (`fake_batches.py`): `batch_polls_until_done`, `batch_expire`,
    `batch_expire_answered`, `batch_item_errors`, `fail_batch`, `batch_faults` script them;
    `batches`, `batch_items_answered` and `batch_requests` count them (batch requests are not
    in `requests`).
    """

    name: str
    api_key: str | None
    latency_s: float = 0.0
    rate_limit: int | None = None
    rate_window_s: float = 60.0
    fault_probability: float = 0.0
    random_fault: Fault = field(default_factory=lambda: Fault("server_error"))
    down: str | None = None
    usage: FixedUsage | None = None
    reasoning_tokens: int = 0
    finish_reason: str | None = None
    refusal: str | None = None
    answer: Callable[[str], str] | None = None
    hold: threading.Event | None = None
    answer_when_in_flight: int | None = None
    before_answer: Callable[[str], None] | None = None
    unknown_models: set[str] = field(default_factory=set)
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    accepted_at: deque[float] = field(default_factory=deque)
    concurrency_reached: threading.Event = field(default_factory=threading.Event)
    batch_polls_until_done: int = 1
    batch_expire: bool = False
    batch_expire_answered: int = 0
    batch_item_errors: dict[int, str] = field(default_factory=dict)
    batch_faults: deque[Fault] = field(default_factory=deque)
    batch_endpoint_faults: dict[str, deque[Fault]] = field(default_factory=dict)
    batches: list[FakeBatch] = field(default_factory=list)
    batch_items_answered: int = 0
    batch_requests: list[RecordedRequest] = field(default_factory=list)
    wire: str = ""
    prefix: str = ""
    variant: int = 0
    prompt_cache: FakePromptCache = field(init=False)

    def __post_init__(self) -> None:
        self.wire = self.wire or WIRES[self.name]
        self.prefix = self.prefix or PREFIXES[self.name]
        self.prompt_cache = FakePromptCache(self.wire)

    def fail(self, kind: str, times: int = 1, **options: Any) -> "ProviderScript":
        """Queue `times` faults of one kind for the next requests, e.g.
        `fail("rate_limit", retry_after="0.2")`, `fail("timeout", delay_s=2)`."""
        self.faults.extend(Fault(kind, **options) for _ in range(times))
        return self

    def fail_batch(
        self, endpoint: str, kind: str, times: int = 1, **options: Any
    ) -> "ProviderScript":
        """Queue `times` faults for the next requests to one batch endpoint: `create`,
        `retrieve`, `cancel`, `results` (Anthropic), `upload`, `content`, `delete` (OpenAI
        wires); a `timeout` fault answers after `delay_s`, too late for a client that gave up."""
        if endpoint not in BATCH_ENDPOINTS:
            raise ValueError(f"unknown batch endpoint {endpoint!r}; one of {BATCH_ENDPOINTS}")
        queue = self.batch_endpoint_faults.setdefault(endpoint, deque())
        queue.extend(Fault(kind, **options) for _ in range(times))
        return self

    @property
    def calls(self) -> int:
        return len(self.requests)

    @property
    def statuses(self) -> list[int | None]:
        return [request.status for request in self.requests]


class FakeProviderServer:
    """The fake APIs on 127.0.0.1 at a random port; a context manager that starts and stops it."""

    def __init__(self, seed: int = 0) -> None:
        self.scripts = {
            name: ProviderScript(name=name, api_key=f"test-{name}-key-{secrets.token_hex(12)}")
            for name in WIRES
        }
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.batch_book = BatchBook(_batch_item_answer, lambda: self.url)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "FakeProviderServer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        handler = type("FakeProviderHandler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake provider server is not started")
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}"

    def base_url(self, provider: str) -> str:
        """What to configure as the provider resource's `base_url`."""
        return f"{self.url}{self.scripts[provider].prefix}"

    def script(self, provider: str) -> ProviderScript:
        return self.scripts[provider]

    def add_provider(self, name: str, wire: str = "moonshot") -> ProviderScript:
        """One more provider at `{url}/{name}/v1`, without batch endpoints: by default an
        OpenAI-compatible server (Chat Completions taking `max_tokens`, as a local server or
        Moonshot's), `wire="openai"` for OpenAI's own. It answers in the offline generic
        style of its place among the added providers."""
        added = len(self.scripts) - len(WIRES)
        self.scripts[name] = ProviderScript(
            name=name,
            api_key=f"test-{name}-key-{secrets.token_hex(12)}",
            wire=wire,
            prefix=f"/{name}/v1",
            variant=added,
        )
        return self.scripts[name]

    def resource(
        self, provider: str, *, strict: bool = True, clock: Clock | None = None, **overrides: Any
    ) -> LiveProvider:
        """A live resource of `provider` pointed at this server with the key it expects.

        `strict` has the SDK validate every answer against its schema, so a wire-format mistake
        of the fake fails loudly; `clock` replaces the resource's time (retry waits, pacing,
        latencies). The spec's own settings apply (OpenAI's resource sends
        `max_completion_tokens`, as against api.openai.com).
        """
        spec = next(spec for spec in SHIPPED_PROVIDERS if spec.name == provider)
        settings: dict[str, Any] = {
            "name": spec.name,
            "model": spec.default_model,
            "api_key": self.scripts[provider].api_key,
            "api_key_env_var": spec.key_env,
            "base_url": self.base_url(provider),
            **dict(spec.settings),
        }
        api = HOOKED_CLASSES[spec.api]
        resource = (api if clock is None else with_clock(api, clock))(**{**settings, **overrides})
        assert isinstance(resource, api)
        resource._strict = strict
        resource._test_clock = clock
        return resource

    def _route(self, path: str) -> str | None:
        """The provider a path belongs to: by prefix, or unprefixed `/v1/…` (claude, openai)."""
        for provider, script in self.scripts.items():
            if path == script.prefix + ENDPOINTS[script.wire]:
                return provider
        return {"/v1/messages": "claude", "/v1/chat/completions": "openai"}.get(path)

    def _begin(self, script: ProviderScript, request: RecordedRequest) -> int:
        with self._lock:
            script.requests.append(request)
            script.in_flight += 1
            script.max_in_flight = max(script.max_in_flight, script.in_flight)
            wanted = script.answer_when_in_flight
            if wanted is not None and script.in_flight >= wanted:
                script.concurrency_reached.set()
            return len(script.requests) - 1

    def _end(self, script: ProviderScript) -> None:
        with self._lock:
            script.in_flight -= 1

    def _record_answer(self, script: ProviderScript, index: int, answer: "_Answer") -> None:
        """Recorded before it is sent, so a client that has its answer sees it counted."""
        with self._lock:
            try:
                body: Any = json.loads(answer.body)
            except ValueError:
                body = answer.body
            script.requests[index] = replace(
                script.requests[index],
                status=answer.status,
                response_headers=answer.headers,
                response_body=body,
                answered_at=time.monotonic(),
            )

    def _next_fault(self, script: ProviderScript) -> Fault | None:
        if script.down not in (None, *DOWN_MODES):
            raise ValueError(
                f"{script.name}: down must be one of {DOWN_MODES}, not {script.down!r}"
            )
        with self._lock:
            if script.down == "500":
                return Fault("server_error")
            if script.down == "disconnect":
                return Fault("disconnect")
            if script.faults:
                return script.faults.popleft()
            if script.fault_probability and self._random.random() < script.fault_probability:
                return script.random_fault
            return None

    def _next_batch_fault(self, script: ProviderScript, endpoint: str) -> Fault | None:
        with self._lock:
            if script.down == "500":
                return Fault("server_error")
            if script.down == "disconnect":
                return Fault("disconnect")
            for queue in (script.batch_endpoint_faults.get(endpoint), script.batch_faults):
                if queue:
                    return queue.popleft()
            return None

    def _rate_limited_for(self, script: ProviderScript, now: float) -> float | None:
        """Seconds until a place frees up when the window is full; else None, counting this one."""
        if script.rate_limit is None:
            return None
        with self._lock:
            window = script.accepted_at
            while window and window[0] <= now - script.rate_window_s:
                window.popleft()
            if len(window) >= script.rate_limit:
                return window[0] + script.rate_window_s - now
            window.append(now)
            return None


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    """Serves one request against the scripts of `fake`."""

    fake: FakeProviderServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: pytest shows failures, not every request."""

    def do_GET(self) -> None:
        self._serve_batch("GET", b"")

    def do_DELETE(self) -> None:
        self._serve_batch("DELETE", b"")

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        provider = self.fake._route(self.path.split("?", 1)[0])
        if provider is None:
            self._serve_batch("POST", raw)
            return
        script = self.fake.scripts[provider]
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {name.lower(): value for name, value in self.headers.items()}
        recorded = RecordedRequest(self.path, headers, body, time.monotonic())
        index = self.fake._begin(script, recorded)
        try:
            answer = self._answer(script, headers, body)
            if answer is not None:
                self.fake._record_answer(script, index, answer)
                self._write(answer)
        finally:
            self.fake._end(script)

    def _serve_batch(self, method: str, raw: bytes) -> None:
        """A request to a batch endpoint (`fake_batches.py`), or a 404."""
        found = batch_route(method, self.path.split("?", 1)[0])
        if found is None:
            self._write(_Answer(404, b'{"error": "no such endpoint"}', {}))
            return
        provider, endpoint, target = found
        script = self.fake.scripts[provider]
        wire = script.wire
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = {"bytes": len(raw)}
        recorded = RecordedRequest(self.path, headers, body, time.monotonic(), method=method)
        with self.fake._lock:
            script.batch_requests.append(recorded)
            index = len(script.batch_requests) - 1
        answer = self._batch_answer(script, wire, endpoint, target, headers, raw)
        if answer is None:
            return
        with self.fake._lock:
            script.batch_requests[index] = replace(
                recorded, status=answer.status, answered_at=time.monotonic()
            )
        self._write(answer)

    def _batch_answer(
        self,
        script: ProviderScript,
        wire: str,
        endpoint: str,
        target: str,
        headers: dict[str, str],
        raw: bytes,
    ) -> _Answer | None:
        if not _authorized(headers, script.api_key):
            return _error(wire, "unauthorized", script)
        fault = self.fake._next_batch_fault(script, endpoint)
        if fault is not None and fault.kind == "timeout":
            time.sleep(fault.delay_s)
        elif fault is not None:
            return self._fault(wire, fault, script, None)
        book = self.fake.batch_book
        try:
            body = json.loads(raw) if raw and endpoint != "upload" else None
        except ValueError:
            return _error(wire, "bad_request", script, message="The request body is not JSON.")
        try:
            reply = _dispatch(book, script, wire, endpoint, target, body, headers, raw)
        except BatchRefused as refused:
            return _error(wire, refused.kind, script, message=refused.message)
        return _Answer(reply.status, reply.body, {"content-type": reply.content_type})

    def _answer(self, script: ProviderScript, headers: dict[str, str], body: Any) -> _Answer | None:
        wire = script.wire
        if not _authorized(headers, script.api_key):
            return _error(wire, "unauthorized", script)
        if isinstance(body, dict) and body.get("model") in script.unknown_models:
            return _error(wire, "not_found", script)
        fault = self.fake._next_fault(script)
        if fault is not None:
            return self._fault(wire, fault, script, body)
        wait = self.fake._rate_limited_for(script, time.monotonic())
        if wait is not None:
            return _error(wire, "rate_limit", script, retry_after_s=wait)
        problem = _request_problem(wire, body)
        if problem is not None:
            return _error(wire, "bad_request", script, message=problem)
        if script.latency_s:
            time.sleep(script.latency_s)
        _wait_for_the_test(script)
        if script.before_answer is not None:
            script.before_answer(_prompt(body))
        return _success(wire, script, body)

    def _fault(self, wire: str, fault: Fault, script: ProviderScript, body: Any) -> _Answer | None:
        if fault.kind == "disconnect":
            self.close_connection = True
            return None
        if fault.kind == "timeout":
            time.sleep(fault.delay_s)
            return _success(wire, script, body)
        if fault.kind == "malformed":
            truncated = b'{"id": "msg_trunc", "type": "mess'
            return _Answer(200, truncated, {"content-type": "application/json"})
        if fault.kind == "schema":
            return _json(200, {"unexpected": True}, {})
        if fault.kind == "unreadable":
            return _unreadable(_success(wire, script, body))
        extra: dict[str, str] = {}
        if fault.retry_after is not None:
            extra["retry-after"] = fault.retry_after
        if fault.retry_after_ms is not None:
            extra["retry-after-ms"] = fault.retry_after_ms
        answer = _error(wire, fault.kind, script, message=fault.message)
        return _Answer(answer.status, answer.body, {**answer.headers, **extra})

    def _write(self, answer: _Answer) -> None:
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


BATCH_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/claude/v1/messages/batches()$"), "create"),
    ("GET", re.compile(r"^/claude/v1/messages/batches/([^/]+)$"), "retrieve"),
    ("POST", re.compile(r"^/claude/v1/messages/batches/([^/]+)/cancel$"), "cancel"),
    ("GET", re.compile(r"^/claude/v1/messages/batches/([^/]+)/results$"), "results"),
    ("DELETE", re.compile(r"^/claude/v1/messages/batches/([^/]+)$"), "discard"),
    ("POST", re.compile(r"^/(?:openai|moonshot)/v1/files()$"), "upload"),
    ("GET", re.compile(r"^/(?:openai|moonshot)/v1/files/([^/]+)/content$"), "content"),
    ("DELETE", re.compile(r"^/(?:openai|moonshot)/v1/files/([^/]+)$"), "delete"),
    ("POST", re.compile(r"^/(?:openai|moonshot)/v1/batches()$"), "create"),
    ("GET", re.compile(r"^/(?:openai|moonshot)/v1/batches/([^/]+)$"), "retrieve"),
    ("POST", re.compile(r"^/(?:openai|moonshot)/v1/batches/([^/]+)/cancel$"), "cancel"),
)
BATCH_ENDPOINTS = (
    "create", "retrieve", "cancel", "results", "discard", "upload", "content", "delete",
)  # fmt: skip


def batch_route(method: str, path: str) -> tuple[str, str, str] | None:
    """(provider, endpoint, batch or file id) of a batch endpoint's path, or None."""
    provider = next(
        (name for name, prefix in PREFIXES.items() if path.startswith(prefix + "/")), None
    )
    if provider is None:
        return None
    for wanted, pattern, endpoint in BATCH_ROUTES:
        match = pattern.match(path)
        if wanted == method and match is not None:
            return provider, endpoint, match.group(1)
    return None


def _dispatch(
    book: BatchBook,
    script: ProviderScript,
    wire: str,
    endpoint: str,
    target: str,
    body: Any,
    headers: dict[str, str],
    raw: bytes,
) -> BatchReply:
    anthropic = wire == "anthropic"
    if endpoint == "create":
        if anthropic:
            return book.anthropic_create(script, body)
        return book.openai_create(script, wire, body)
    if endpoint == "upload":
        return book.upload(script, wire, headers.get("content-type", ""), raw)
    handlers = {
        "retrieve": book.anthropic_retrieve if anthropic else book.openai_retrieve,
        "cancel": book.anthropic_cancel if anthropic else book.openai_cancel,
        "results": book.anthropic_results,
        "discard": book.anthropic_delete,
        "content": book.file_content,
        "delete": book.delete_file,
    }
    return handlers[endpoint](script, target)


def _batch_item_answer(
    script: ProviderScript, wire: str, body: Any, fault: str | None
) -> ItemAnswer:
    """A batch item's answer: what a live request with the same body would get."""
    if fault is not None:
        answer = _error(wire, fault, script)
    else:
        problem = _request_problem(wire, body)
        if problem is not None:
            answer = _error(wire, "bad_request", script, message=problem)
        else:
            answer = _success(wire, script, body)
    return ItemAnswer(answer.status, json.loads(answer.body))


HOLD_LIMIT_S = 30.0


def _wait_for_the_test(script: ProviderScript) -> None:
    """Keep the answer until the test releases it or the concurrency it waits for is reached;
    after HOLD_LIMIT_S answer anyway, so a broken client fails the test instead of hanging it."""
    if script.hold is not None:
        script.hold.wait(HOLD_LIMIT_S)
    if script.answer_when_in_flight is not None:
        script.concurrency_reached.wait(HOLD_LIMIT_S)


def _authorized(headers: dict[str, str], key: str | None) -> bool:
    """The key may come as `Authorization: Bearer` (OpenAI, Moonshot, this Anthropic SDK) or
    `x-api-key` (Anthropic's documented header)."""
    if key is None:
        return True
    return headers.get("authorization") == f"Bearer {key}" or headers.get("x-api-key") == key


def _request_problem(wire: str, body: Any) -> str | None:
    """What the real API would reject in the request body, in its words."""
    if not isinstance(body, dict):
        return "The request body is not valid JSON."
    required = ("model", "messages", "max_tokens") if wire == "anthropic" else ("model", "messages")
    missing = [name for name in required if name not in body]
    if missing:
        return f"{missing[0]}: Field required"
    if wire == "openai" and "max_tokens" in body:
        return (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
    if wire == "anthropic" and any(m.get("role") == "system" for m in body["messages"]):
        return (
            'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
            'parameter, not "system" as an input message role.'
        )
    if wire == "anthropic":
        return _anthropic_structure_problem(body)
    return _response_format_problem(body.get("response_format"))


NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")
TOOL_CHOICE_TYPES = ("auto", "any", "tool", "none")
# String and number bounds Anthropic's structured outputs reject (its SDK moves them into the
# description, as `structured_output.strict_schema` does).
ANTHROPIC_UNSUPPORTED_KEYWORDS = ("minLength", "maxLength", "minimum", "maximum", "multipleOf")


def _response_format_problem(response_format: Any) -> str | None:
    """What Chat Completions rejects in `response_format`, in its words; a strict schema must
    be in the strict subset (every object closed and every property required)."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        return "Invalid type for 'response_format': expected an object."
    kind = response_format.get("type")
    if kind not in RESPONSE_FORMAT_TYPES:
        return (
            f"Invalid value: {kind!r}. Supported values are: 'text', 'json_object', and "
            "'json_schema'. (param: response_format.type)"
        )
    if kind != "json_schema":
        return None
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        return "Missing required parameter: 'response_format.json_schema'."
    name = spec.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        return "Invalid 'response_format.json_schema.name': string does not match pattern."
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        return "Invalid type for 'response_format.json_schema.schema': expected an object."
    if spec.get("strict") is True:
        problem = _schema_problem(schema, (), require_all=True, unsupported=())
        if problem is not None:
            return f"Invalid schema for response_format {name!r}: {problem}"
    return None


def _anthropic_structure_problem(body: dict[str, Any]) -> str | None:
    """What the Messages API rejects in `output_config.format`, `tools` and `tool_choice`."""
    config = body.get("output_config")
    if config is not None:
        output_format = config.get("format") if isinstance(config, dict) else None
        if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
            return "output_config.format.type: Input should be 'json_schema'"
        schema = output_format.get("schema")
        if not isinstance(schema, dict):
            return "output_config.format.schema: Input should be a valid dictionary"
        problem = _schema_problem(
            schema, (), require_all=False, unsupported=ANTHROPIC_UNSUPPORTED_KEYWORDS
        )
        if problem is not None:
            return f"output_config.format.schema: {problem}"
    tools = body.get("tools", [])
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    names = []
    for position, tool in enumerate(tools):
        if not isinstance(tool, dict) or not NAME.match(str(tool.get("name", ""))):
            return f"tools.{position}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools.{position}.input_schema.type: Input should be 'object'"
        names.append(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICE_TYPES:
            return "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"
        if choice["type"] == "tool" and choice.get("name") not in names:
            return f"tool_choice: Tool '{choice.get('name')}' not found in tools"
    return None


def _schema_problem(
    node: Any, where: tuple[str, ...], *, require_all: bool, unsupported: tuple[str, ...]
) -> str | None:
    """The first place a structured-output schema leaves the strict subset: an object not
    closed by `additionalProperties: false`, a property missing from `required` (OpenAI's
    strict mode), or a keyword the API does not support."""
    if not isinstance(node, dict):
        return f"In context={where}, schema must be an object."
    for keyword in unsupported:
        if keyword in node:
            return f"In context={where}, the keyword {keyword!r} is not supported."
    if node.get("type") == "object":
        if node.get("additionalProperties") is not False:
            return (
                f"In context={where}, 'additionalProperties' is required to be supplied and "
                "to be false."
            )
        properties = node.get("properties", {})
        missing = [key for key in properties if key not in node.get("required", [])]
        if require_all and missing:
            return (
                f"In context={where}, 'required' is required to be supplied and to be an array "
                f"including every key in properties. Missing {missing[0]!r}."
            )
        for key, value in properties.items():
            problem = _schema_problem(
                value, (*where, "properties", key), require_all=require_all, unsupported=unsupported
            )
            if problem is not None:
                return problem
    children = [("items", node["items"])] if "items" in node else []
    children += [("anyOf", variant) for variant in node.get("anyOf", [])]
    for key, child in children:
        problem = _schema_problem(
            child, (*where, key), require_all=require_all, unsupported=unsupported
        )
        if problem is not None:
            return problem
    return None


def _prompt(body: dict[str, Any]) -> str:
    """The last message: the task part of the prompt, with the symbol's source."""
    content = body["messages"][-1]["content"]
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _draft_text(script: ProviderScript, prompt: str) -> str:
    """The answer: a valid draft of the symbol in the prompt, in this provider's style."""
    if script.answer is not None:
        return script.answer(prompt)
    source = SOURCE_BLOCK.search(prompt)
    symbol = SYMBOL_LINE.search(prompt)
    return offline_answer(
        script.name,
        symbol.group(1).strip() if symbol else "symbol",
        source.group(3) if source else "",
        (source.group(2).strip() or "python") if source else "python",
        script.variant,
    )


def _usage(script: ProviderScript, wire: str, body: dict[str, Any], text: str) -> FixedUsage:
    if script.usage is not None:
        return script.usage
    cache = script.prompt_cache.use(body)
    return FixedUsage(
        input_tokens=max(1, tokens(prompt_text(wire, body))),
        output_tokens=max(1, tokens(text)) + script.reasoning_tokens,
        cached_tokens=cache.read,
        cache_write_tokens=cache.written,
        reasoning_tokens=script.reasoning_tokens,
    )


def _success(wire: str, script: ProviderScript, body: dict[str, Any]) -> _Answer:
    text = _draft_text(script, _prompt(body))
    usage = _usage(script, wire, body, text)
    if wire == "anthropic":
        return _anthropic_message(script, body, text, usage)
    return _chat_completion(wire, script, body["model"], text, usage)


def _forced_tool(body: dict[str, Any]) -> str | None:
    """The tool a Messages request forces (`tool_choice` of type `tool`), or None."""
    choice = body.get("tool_choice")
    return choice["name"] if isinstance(choice, dict) and choice.get("type") == "tool" else None


def _anthropic_message(
    script: ProviderScript, body: dict[str, Any], text: str, usage: FixedUsage
) -> _Answer:
    """A Message answering `body`: the draft as a text block or, when the request forces a
    tool, as that tool's `tool_use` input (an answer that is no JSON object stays text, as a
    scripted misbehaving model's)."""
    content: list[dict[str, Any]] = []
    if usage.reasoning_tokens:
        content.append(
            {"type": "thinking", "thinking": "The signature tells most.", "signature": "c2ln"}
        )
    tool = _forced_tool(body)
    called = _json_object(text) if tool is not None else None
    stop_reason = "end_turn"
    if called is not None:
        tool_id = f"toolu_{secrets.token_hex(12)}"
        content.append({"type": "tool_use", "id": tool_id, "name": tool, "input": called})
        stop_reason = "tool_use"
    else:
        content.append({"type": "text", "text": text, "citations": None})
    message = {
        "id": f"msg_{secrets.token_hex(12)}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": script.finish_reason or stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
            "cache_read_input_tokens": usage.cached_tokens,
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"thinking_tokens": usage.reasoning_tokens},
            "service_tier": "standard",
        },
    }
    return _json(200, message, {"request-id": f"req_{secrets.token_hex(12)}"})


def _unreadable(answer: _Answer) -> _Answer:
    """`answer` billed as it is, with no content a client can read (`without_content`)."""
    value = without_content(json.loads(answer.body))
    return _Answer(answer.status, json.dumps(value).encode(), answer.headers)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _chat_completion(
    wire: str, script: ProviderScript, model: str, text: str, usage: FixedUsage
) -> _Answer:
    total = usage.input_tokens + usage.output_tokens
    if wire == "moonshot":
        reported: dict[str, Any] = {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": total,
            "cached_tokens": usage.cached_tokens,
        }
    else:
        reported = {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": total,
            "prompt_tokens_details": {
                "cached_tokens": usage.cached_tokens,
                "cache_write_tokens": usage.cache_write_tokens,
                "audio_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": usage.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
    refused = script.refusal is not None
    completion = {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None if refused else text,
                    "refusal": script.refusal,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": script.finish_reason or "stop",
            }
        ],
        "usage": reported,
        "system_fingerprint": "fp_fake",
    }
    # Moonshot's answers carry no x-request-id; the resource falls back to the completion id.
    headers = {} if wire == "moonshot" else {"x-request-id": f"req_{secrets.token_hex(12)}"}
    return _json(200, completion, headers)


# (status, Anthropic error type, OpenAI (type, code), Moonshot type, message) per fault kind.
ERRORS: dict[str, tuple[int, str, tuple[str, str | None], str, str]] = {
    "rate_limit": (
        429, "rate_limit_error", ("requests", "rate_limit_exceeded"), "rate_limit_reached_error",
        "Rate limit reached for requests per minute. Please try again later.",
    ),
    "overloaded": (
        529, "overloaded_error", ("server_error", None), "engine_overloaded_error", "Overloaded",
    ),
    "server_error": (
        500, "api_error", ("server_error", None), "server_error",
        "The server had an error while processing your request.",
    ),
    "unavailable": (
        503, "api_error", ("server_error", None), "server_error",
        "The server is overloaded or not ready yet.",
    ),
    "request_timeout": (
        408, "timeout_error", ("timeout", None), "timeout_error", "Request timed out.",
    ),
    "conflict": (409, "conflict_error", ("conflict", None), "conflict_error", "Conflict."),
    "unauthorized": (
        401, "authentication_error", ("invalid_request_error", "invalid_api_key"),
        "invalid_authentication_error", "Invalid Authentication",
    ),
    "bad_request": (
        400, "invalid_request_error", ("invalid_request_error", None), "invalid_request_error",
        "Invalid request.",
    ),
    "forbidden": (
        403, "permission_error", ("invalid_request_error", "model_not_found"),
        "permission_denied_error", "The API key does not have permission to use this model.",
    ),
    "not_found": (
        404, "not_found_error", ("invalid_request_error", "model_not_found"),
        "resource_not_found_error", "The model does not exist or you do not have access to it.",
    ),
    "unprocessable": (
        422, "invalid_request_error", ("invalid_request_error", None), "invalid_request_error",
        "The request could not be processed.",
    ),
}  # fmt: skip


def _error(
    wire: str,
    kind: str,
    script: ProviderScript,
    *,
    message: str | None = None,
    retry_after_s: float | None = None,
) -> _Answer:
    """The provider's own error answer for one kind of fault, body and headers as documented."""
    headers: dict[str, str] = {}
    if retry_after_s is not None:
        headers["retry-after"] = str(max(1, round(retry_after_s + 0.499)))
        if wire != "anthropic":
            headers["retry-after-ms"] = str(round(retry_after_s * 1000))
    if kind == "quota":
        return _quota_error(wire, headers)
    status, anthropic_type, (openai_type, openai_code), moonshot_type, text = ERRORS[kind]
    text = message or text
    if kind == "unauthorized" and wire == "openai" and message is None:
        text = (
            f"Incorrect API key provided: {_masked(script.api_key)}. You can find your API key "
            "at https://platform.openai.com/account/api-keys."
        )
    if wire == "anthropic":
        request_id = f"req_{secrets.token_hex(12)}"
        body = {
            "type": "error",
            "error": {"type": anthropic_type, "message": text},
            "request_id": request_id,
        }
        return _json(status, body, {**headers, "request-id": request_id})
    if wire == "openai":
        body = {"error": {"message": text, "type": openai_type, "param": None, "code": openai_code}}
        return _json(status, body, {**headers, "x-request-id": f"req_{secrets.token_hex(12)}"})
    return _json(status, {"error": {"message": text, "type": moonshot_type}}, headers)


def _quota_error(wire: str, headers: dict[str, str]) -> _Answer:
    """Out of credit, as each provider says it: a 429 that no wait will cure."""
    if wire == "anthropic":
        request_id = f"req_{secrets.token_hex(12)}"
        body = {
            "type": "error",
            "error": {
                "type": "rate_limit_error",
                "message": "Usage blocked until 2026-12-01T00:00:00Z.",
                "details": {"error_code": "enforced_spend_limit_reached"},
            },
            "request_id": request_id,
        }
        return _json(429, body, {**headers, "request-id": request_id})
    if wire == "openai":
        body = {
            "error": {
                "message": "You exceeded your current quota, please check your plan and billing "
                "details. For more information on this error, read the docs: "
                "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        }
        return _json(429, body, {**headers, "x-request-id": f"req_{secrets.token_hex(12)}"})
    body = {
        "error": {
            "message": "Your account org-fake<ak-fake> is suspended, please check your plan "
            "and billing details",
            "type": "exceeded_current_quota_error",
        }
    }
    return _json(429, body, headers)


def _masked(key: str | None) -> str:
    """How OpenAI echoes a wrong key: its first and last characters around stars."""
    if not key:
        return ""
    return f"{key[:3]}{'*' * max(0, len(key) - 7)}{key[-4:]}"


def _json(status: int, body: Any, headers: dict[str, str]) -> _Answer:
    return _Answer(
        status, json.dumps(body).encode(), {"content-type": "application/json", **headers}
    )


def unused_base_url(provider: str) -> str:
    """A base URL on a 127.0.0.1 port nothing listens on: every call is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{PREFIXES.get(provider, f'/{provider}/v1')}"


@pytest.fixture
def fake_providers() -> Iterator[FakeProviderServer]:
    """The fake provider APIs, started for one test: `fake_providers.resource("claude")` is a
    live resource talking to it, `fake_providers.script("claude")` scripts and counts its calls."""
    with FakeProviderServer() as server:
        yield server
