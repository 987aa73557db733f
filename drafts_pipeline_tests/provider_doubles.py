"""Test doubles of the provider side that need no server: live resources with the tests' hooks
(strict answer validation, a fake clock) kept out of their config, a provider that is always
down, and a call log that records what it is told."""

import threading
from typing import Any, cast

import httpx2
import openai
from pydantic import PrivateAttr

from drafts_pipeline.llm.anthropic_messages import AnthropicMessagesProvider
from drafts_pipeline.llm.calling import Clock, ProviderReply
from drafts_pipeline.llm.generation import CallAttempt
from drafts_pipeline.llm.openai_chat import OpenAIChatProvider
from drafts_pipeline.llm.provider import DraftRequest, LiveProvider


class HookedAnthropicProvider(AnthropicMessagesProvider):
    """The live Claude resource with the tests' hooks, none of them in its config."""

    _strict: bool = PrivateAttr(default=True)
    _test_clock: Clock | None = PrivateAttr(default=None)

    def _sdk_options(self, api_key: str) -> dict[str, Any]:
        return {**super()._sdk_options(api_key), "_strict_response_validation": self._strict}

    def _clock(self) -> Clock:
        return self._test_clock or super()._clock()


class HookedOpenAIProvider(OpenAIChatProvider):
    """The live Chat Completions resource with the tests' hooks, none of them in its config."""

    _strict: bool = PrivateAttr(default=True)
    _test_clock: Clock | None = PrivateAttr(default=None)

    def _sdk_options(self, api_key: str) -> dict[str, Any]:
        return {**super()._sdk_options(api_key), "_strict_response_validation": self._strict}

    def _clock(self) -> Clock:
        return self._test_clock or super()._clock()


HOOKED_CLASSES: dict[str, type[HookedAnthropicProvider] | type[HookedOpenAIProvider]] = {
    "anthropic-messages": HookedAnthropicProvider,
    "openai-chat": HookedOpenAIProvider,
}


def with_clock(cls: type[LiveProvider], clock: Clock) -> type[LiveProvider]:
    """`cls` whose every instance takes its time from `clock`, the copies Dagster makes of a
    resource for a run included: a copy keeps the class and the config, not private
    attributes."""
    return cast(
        type[LiveProvider], type(f"{cls.__name__}WithClock", (cls,), {"_clock": lambda _: clock})
    )


class DownProvider(LiveProvider):
    """A live provider whose every attempt gets the SDK's 503, through the real retry loop, call
    log and limiter: a provider that is down, without a server."""

    def _build_client(self, api_key: str) -> None:
        return None

    def _send(self, client: None, request: DraftRequest) -> ProviderReply:
        response = httpx2.Response(503, request=httpx2.Request("POST", "http://down.invalid/v1"))
        raise openai.InternalServerError("service unavailable", response=response, body=None)


def down_provider(name: str, max_attempts: int = 1) -> DownProvider:
    """A provider `name` that fails for good after `max_attempts` attempts, none waiting."""
    return DownProvider(
        name=name,
        model=f"{name}-model",
        api_key="down-provider-key",
        api_key_env_var=f"{name.upper()}_API_KEY",
        max_attempts=max_attempts,
        initial_delay_s=0.0,
        max_delay_s=0.0,
        input_usd_per_mtok=0.0,
        output_usd_per_mtok=0.0,
    )


class RecordingCallLog:
    """A `CallLog` that keeps what it was told, in order: ("sent", task id, attempt) and
    ("finished", task id, attempt), a withdrawn attempt's "sent" taken out again; `fail_on_send`
    makes `call_sent` raise it."""

    def __init__(self, fail_on_send: Exception | None = None) -> None:
        self.events: list[tuple[str, str, CallAttempt]] = []
        self.fail_on_send = fail_on_send
        self._lock = threading.Lock()

    def call_sent(self, task_id: str, call: CallAttempt) -> object:
        if self.fail_on_send is not None:
            raise self.fail_on_send
        with self._lock:
            self.events.append(("sent", task_id, call))
        return task_id

    def call_finished(self, handle: object, call: CallAttempt) -> None:
        with self._lock:
            self.events.append(("finished", str(handle), call))

    def call_withdrawn(self, handle: object) -> None:
        with self._lock:
            last_sent = max(i for i, (kind, task_id, _) in enumerate(self.events)
                            if kind == "sent" and task_id == handle)  # fmt: skip
            del self.events[last_sent]
