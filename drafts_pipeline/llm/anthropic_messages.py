"""Claude over the official `anthropic` SDK (Messages API)."""

from drafts_pipeline.llm.resource import LLMProvider


class AnthropicMessagesProvider(LLMProvider):
    """A provider speaking Anthropic's Messages API."""
