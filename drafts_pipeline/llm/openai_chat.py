"""OpenAI, and OpenAI-compatible APIs such as Moonshot's Kimi, over the official `openai` SDK."""

from drafts_pipeline.llm.resource import LLMProvider


class OpenAIChatProvider(LLMProvider):
    """A provider speaking the Chat Completions API."""
