"""Claude over the official `anthropic` SDK (Messages API)."""

import json
from typing import TYPE_CHECKING, Any

import anthropic
from anthropic.types import Message

from drafts_pipeline.llm.calling import ProviderReply, answer_request_id
from drafts_pipeline.llm.generation import TokenUsage
from drafts_pipeline.llm.pricing import token_count
from drafts_pipeline.llm.prompt_cache import anthropic_caches
from drafts_pipeline.llm.provider import DraftRequest, LiveProvider
from drafts_pipeline.llm.retry import MalformedResponseError, read_or_malformed
from drafts_pipeline.llm.structured_output import TOOL_NAME, anthropic_fields

if TYPE_CHECKING:
    from drafts_pipeline.llm.batches import BatchAPI


class AnthropicMessagesProvider(LiveProvider):
    """A provider speaking Anthropic's Messages API.

    `temperature` is sent only when configured, and then as a raw body field: the SDK no longer
    offers it because current Claude models reject sampling parameters other than their default.
    """

    structured_api = "anthropic"

    def _build_client(self, api_key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(**self._sdk_options(api_key))

    def request_body(self, request: DraftRequest, model: str | None = None) -> dict[str, Any]:
        """The Messages API body of one draft's request, as sent live and as a Message Batch
        item's `params`, to `model` (a fallback) or the configured model. The fixed part goes
        as the system prompt, one text block, marked for caching when it is long enough for
        that model to cache it. The answer's shape goes as `output_config.format` (the draft's
        JSON schema) or as one forced tool whose input is the draft, by that model
        (`structured_output.py`)."""
        model = model or self.model
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": self.max_output_tokens,
            "messages": [{"role": "user", "content": request.prompt}],
        }
        if request.system:
            block: dict[str, Any] = {"type": "text", "text": request.system}
            if anthropic_caches(model, request.system):
                block["cache_control"] = {"type": "ephemeral"}
            body["system"] = [block]
        body |= anthropic_fields(self.structured_output_form_for(model))
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def batch_api(self) -> "BatchAPI":
        """Message Batches on this resource's client: the same bodies at the batch price."""
        from drafts_pipeline.llm.batches import AnthropicMessageBatches  # imports this module

        return AnthropicMessageBatches(self)

    def _send(
        self, client: anthropic.Anthropic, request: DraftRequest, model: str | None = None
    ) -> ProviderReply:
        body = self.request_body(request, model)
        # What the SDK no longer takes as an argument goes as a raw body field.
        extra_body = {name: body.pop(name) for name in ("temperature",) if name in body}
        message = client.messages.create(**body, extra_body=extra_body or None)
        return messages_reply(message)


ANSWER = "Messages API answer"


def messages_reply(message: Any) -> ProviderReply:
    """The reply in a Messages API answer: its text blocks (thinking blocks are not the answer),
    or, when the draft came as the forced tool's call, that call's input as JSON text (read and
    validated as any answer); its raw `stop_reason`; and usage made whole (`input_tokens`
    excludes cache reads and writes). Usage is read first: an answer whose content cannot be
    read raises `MalformedResponseError` carrying the tokens it was billed for."""
    if not isinstance(message, Message):
        raise MalformedResponseError(
            f"expected a Messages API object, got {type(message).__name__}"
        )
    request_id = answer_request_id(message)
    with read_or_malformed(ANSWER, request_id=request_id):
        tokens = _usage(message.usage)
    with read_or_malformed(ANSWER, usage=tokens, request_id=request_id):
        calls = [
            block.input
            for block in message.content
            if block.type == "tool_use" and block.name == TOOL_NAME
        ]
        if calls:
            text = json.dumps(calls[0], ensure_ascii=False)
        else:
            text = "".join(block.text for block in message.content if block.type == "text")
        return ProviderReply(
            text=text,
            model=message.model,
            finish_reason=message.stop_reason,
            request_id=request_id,
            usage=tokens,
        )


def _usage(usage: Any) -> TokenUsage:
    cache_read = token_count(usage.cache_read_input_tokens)
    cache_write = token_count(usage.cache_creation_input_tokens)
    details = usage.output_tokens_details
    return TokenUsage(
        input_tokens=token_count(usage.input_tokens) + cache_read + cache_write,
        output_tokens=token_count(usage.output_tokens),
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=token_count(details.thinking_tokens) if details is not None else 0,
    )
