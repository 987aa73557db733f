"""When a request's fixed part (the system prompt) can be cached, and how much of the input was.

Each API caches a prompt prefix only from a minimum length on, and says nothing when a prefix
is shorter: the request is billed in full. The wire classes ask here whether to mark the fixed
part for caching:

- Anthropic caches what a `cache_control` breakpoint marks, from a minimum that depends on the
  model (the table below); a mark on a shorter prefix is ignored, without error or charge.
- OpenAI caches prompts of 1,024 tokens or more by itself. Models before the GPT-5.6 family
  reuse the longest cached prefix, in 128-token steps. From GPT-5.6 on, a prompt is matched only
  at a cache breakpoint and a cache write costs 1.25 times the input rate; the implicit
  breakpoint OpenAI places by default sits at the end of the newest message, which for a
  one-message task is the task itself: written at the higher rate, never read again. So for
  those models the request marks the end of the fixed part as its one explicit breakpoint and
  turns the implicit one off.
- Moonshot (Kimi) caches repeated prefixes by itself, with no marker; nothing to decide here.

Lengths are estimated from characters, conservatively: four characters a token, which the
tokenizers of the current models beat on English prose (they make more tokens of the same
text), so a prefix estimated at the minimum is at least that long.
"""

import re

CHARS_PER_TOKEN = 4

# Smallest cacheable prefix in tokens, by model family (the longest matching id prefix wins).
# Sources, read 2026-11: Anthropic's prompt caching guide (platform.claude.com/docs/en/
# build-with-claude/prompt-caching) as quoted in anthropic-sdk-python issue 1194, and LiteLLM's
# prompt caching page (updated 2026-10-07): 512 for Opus 5; 1,024 for Sonnet 5, Sonnet 4.5,
# Opus 4.1 and 4; 4,096 for Opus 4.6, Opus 4.5 and Haiku 4.5. Sonnet 5.5 and Opus 5.5 are not
# listed yet and are taken as their families' (Sonnet 5, Opus 5).
ANTHROPIC_MIN_CACHEABLE_TOKENS: dict[str, int] = {
    "claude-opus-5": 512,
    "claude-sonnet-5": 1024,
    "claude-sonnet-4-5": 1024,
    "claude-opus-4-1": 1024,
    "claude-opus-4-5": 4096,
    "claude-opus-4-6": 4096,
    "claude-haiku-4-5": 4096,
}
# A Claude model the table does not know: the minimum of most of them. Too low a guess costs
# nothing (the mark is ignored); too high a one would forgo the discount.
ANTHROPIC_DEFAULT_MIN_CACHEABLE_TOKENS = 1024

# OpenAI's prompt caching guide (developers.openai.com/api/docs/guides/prompt-caching, read
# 2026-11) and the `prompt_cache_options` documentation of the openai SDK.
OPENAI_MIN_CACHEABLE_TOKENS = 1024
OPENAI_BREAKPOINTS_FROM = (5, 6)
GPT_VERSION = re.compile(r"^gpt-(\d+)(?:\.(\d+))?(?:\D|$)")


def estimated_tokens(text: str) -> int:
    """Tokens in `text`, estimated low (see the module's docstring)."""
    return len(text) // CHARS_PER_TOKEN


def anthropic_min_cacheable_tokens(model: str) -> int:
    """The smallest prefix `model` caches, in tokens."""
    families = [family for family in ANTHROPIC_MIN_CACHEABLE_TOKENS if model.startswith(family)]
    if not families:
        return ANTHROPIC_DEFAULT_MIN_CACHEABLE_TOKENS
    return ANTHROPIC_MIN_CACHEABLE_TOKENS[max(families, key=len)]


def anthropic_caches(model: str, system: str) -> bool:
    """Whether a `cache_control` mark on `system` makes `model` cache it."""
    return estimated_tokens(system) >= anthropic_min_cacheable_tokens(model)


def openai_takes_breakpoints(model: str) -> bool:
    """Whether `model` is of the GPT-5.6 family or a later one, which match cached prompts at
    explicit breakpoints (older models and other vendors' models reject the fields)."""
    found = GPT_VERSION.match(model)
    if found is None:
        return False
    version = (int(found.group(1)), int(found.group(2) or 0))
    return version >= OPENAI_BREAKPOINTS_FROM


def openai_breakpoint_after(model: str, system: str) -> bool:
    """Whether the request marks the end of `system` as its cache breakpoint."""
    return (
        openai_takes_breakpoints(model) and estimated_tokens(system) >= OPENAI_MIN_CACHEABLE_TOKENS
    )


def cache_hit_rate(cached_tokens: int, input_tokens: int) -> float | None:
    """The share of input tokens read from a cache; None when there was no input."""
    return cached_tokens / input_tokens if input_tokens else None
