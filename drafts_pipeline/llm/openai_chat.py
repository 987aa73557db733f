"""OpenAI, and OpenAI-compatible APIs such as Moonshot's Kimi, over the official `openai` SDK."""

from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import openai
from openai.types.chat import ChatCompletion
from pydantic import Field

from drafts_pipeline.llm.calling import ProviderReply, answer_request_id
from drafts_pipeline.llm.generation import TokenUsage
from drafts_pipeline.llm.pricing import token_count
from drafts_pipeline.llm.prompt_cache import openai_breakpoint_after
from drafts_pipeline.llm.provider import DraftRequest, LiveProvider
from drafts_pipeline.llm.retry import MalformedResponseError, read_or_malformed
from drafts_pipeline.llm.structured_output import openai_response_format

if TYPE_CHECKING:
    from drafts_pipeline.llm.batches import BatchAPI

OPENAI_HOST = "api.openai.com"
TOKEN_LIMIT_PARAMETERS = ("max_completion_tokens", "max_tokens")


class OpenAIChatProvider(LiveProvider):
    """A provider speaking the Chat Completions API.

    The answer's length limit goes out as `max_completion_tokens` to OpenAI itself, which rejects
    `max_tokens` for its reasoning models, and as `max_tokens` to any other server (Moonshot and
    most OpenAI-compatible servers document only that one). `token_limit_parameter` overrides
    the choice, e.g. for a proxy in front of OpenAI.
    """

    structured_api = "openai"

    token_limit_parameter: str | None = Field(
        default=None,
        description="`max_completion_tokens` or `max_tokens`; None picks by base_url: the "
        "first for OpenAI (base_url unset or api.openai.com), the second elsewhere.",
    )

    @property
    def token_limit_key(self) -> str:
        chosen = self.token_limit_parameter
        if chosen is not None:
            if chosen not in TOKEN_LIMIT_PARAMETERS:
                raise ValueError(f"token_limit_parameter must be one of {TOKEN_LIMIT_PARAMETERS}")
            return chosen
        if self.base_url is None or urlparse(self.base_url).hostname == OPENAI_HOST:
            return "max_completion_tokens"
        return "max_tokens"

    def _check_settings(self) -> None:
        """An unknown `token_limit_parameter` fails the run at its start, not every call."""
        _ = self.token_limit_key

    def _build_client(self, api_key: str) -> openai.OpenAI:
        return openai.OpenAI(**self._sdk_options(api_key))

    def request_body(self, request: DraftRequest, model: str | None = None) -> dict[str, Any]:
        """The Chat Completions body of one draft's request, as sent live and as a line of a
        Batch input file, to `model` (a fallback) or the configured model, each choice below
        made for that model. The fixed part goes first, as a system message: a prefix identical in
        every request, which OpenAI and Moonshot cache by themselves. For OpenAI's GPT-5.6 and
        later families, its end is marked as the request's only cache breakpoint
        (`prompt_cache.py` says why). The answer's shape goes as `response_format`, the draft's
        strict JSON schema or a JSON object by the model (`structured_output.py`)."""
        model = model or self.model
        messages: list[dict[str, Any]] = []
        breakpoint_after_system = openai_breakpoint_after(model, request.system)
        if breakpoint_after_system:
            part = {
                "type": "text",
                "text": request.system,
                "prompt_cache_breakpoint": {"mode": "explicit"},
            }
            messages.append({"role": "system", "content": [part]})
        elif request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            self.token_limit_key: self.max_output_tokens,
        }
        if breakpoint_after_system:
            body["prompt_cache_options"] = {"mode": "explicit"}
        response_format = openai_response_format(self.structured_output_form_for(model))
        if response_format is not None:
            body["response_format"] = response_format
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def batch_api(self) -> "BatchAPI":
        """The Files and Batches endpoints (OpenAI's, or Moonshot's) on this resource's client."""
        from drafts_pipeline.llm.batches import OpenAIBatches  # imports this module

        return OpenAIBatches(self)

    def _send(
        self, client: openai.OpenAI, request: DraftRequest, model: str | None = None
    ) -> ProviderReply:
        body = self.request_body(request, model)
        return chat_reply(client.chat.completions.create(**body))


ANSWER = "Chat Completions answer"


def chat_reply(completion: Any) -> ProviderReply:
    """The reply in a Chat Completions answer.

    A refusal (`message.refusal`) is reported as finish reason `refusal` whatever the raw
    `finish_reason`, so validation marks it. `prompt_tokens` already includes cached tokens and
    `completion_tokens` reasoning tokens; Moonshot reports cached tokens as `usage.cached_tokens`.
    The request id is the `x-request-id` header, else the completion id.
    """
    if not isinstance(completion, ChatCompletion):
        raise MalformedResponseError(
            f"expected a Chat Completions object, got {type(completion).__name__}"
        )
    # Usage first: an answer whose content cannot be read was billed all the same.
    request_id = answer_request_id(completion)
    with read_or_malformed(ANSWER, request_id=request_id):
        usage = _usage(completion.usage)
    with read_or_malformed(ANSWER, usage=usage, request_id=request_id):
        if not completion.choices:
            raise MalformedResponseError(
                "Chat Completions answer without choices", usage=usage, request_id=request_id
            )
        choice = completion.choices[0]
        message = choice.message
        refused = bool(message.refusal)
        return ProviderReply(
            text=message.content or "",
            model=completion.model,
            finish_reason="refusal" if refused else choice.finish_reason,
            request_id=request_id,
            usage=usage,
        )


def _usage(usage: Any) -> TokenUsage | None:
    if usage is None:
        return None
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    cached = prompt.cached_tokens if prompt is not None else None
    if cached is None:
        cached = getattr(usage, "cached_tokens", None)
    cache_writes = prompt.cache_write_tokens if prompt is not None else None
    reasoning = completion.reasoning_tokens if completion is not None else None
    return TokenUsage(
        input_tokens=token_count(usage.prompt_tokens),
        output_tokens=token_count(usage.completion_tokens),
        cached_tokens=token_count(cached),
        cache_write_tokens=token_count(cache_writes),
        reasoning_tokens=token_count(reasoning),
    )
