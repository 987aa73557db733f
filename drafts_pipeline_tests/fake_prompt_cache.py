"""The prompt caches of the fake provider server: what each API reads from its cache and writes
to it for one request, as its documentation describes, with tokens counted as the server counts
them (four characters a token, of the system prompt and the messages in order).

- Anthropic: the prefix up to the system block marked `cache_control` is written the first
  time (`cache_creation_input_tokens`) and read after (`cache_read_input_tokens`), for the same
  model, while it lives: five minutes from its last use. A prefix below the model's minimum is
  neither (the minimums of `llm/prompt_cache.py`).
- OpenAI, a request without cache fields (models before GPT-5.6): a prompt of 1,024 tokens or
  more reads the longest prefix an earlier prompt of the same model had, in 128-token blocks,
  1,024 at least; nothing is reported as written.
- OpenAI, a request with `prompt_cache_breakpoint`s or `prompt_cache_options` (GPT-5.6 and
  later): each breakpoint of 1,024 tokens or more, and the end of the prompt unless the mode is
  `explicit`, is a cache entry for 30 minutes, matched exactly: the longest live one is read,
  and the tokens past it up to the longest breakpoint are written (`cache_write_tokens`).
- Moonshot: repeated prefixes are read by themselves, in 256-token blocks (the step a public
  study of Kimi's cache measured), reported as `usage.cached_tokens`; writes are not reported.

Entries become readable as soon as a request writes them, not when its answer ends: concurrent
first requests read what the first one wrote, where the real APIs would have them all write.
"""

import hashlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drafts_pipeline.llm.prompt_cache import anthropic_min_cacheable_tokens

CHARS_PER_TOKEN = 4
ANTHROPIC_TTL_S = 300.0
OPENAI_BREAKPOINT_TTL_S = 1800.0
OPENAI_MIN_TOKENS = 1024
OPENAI_BLOCK_TOKENS = 128
OPENAI_PREFIX_TTL_S = 600.0
MOONSHOT_BLOCK_TOKENS = 256
MOONSHOT_TTL_S = 300.0


def tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN


@dataclass(frozen=True)
class CacheUse:
    """Tokens of one request read from the cache and written to it."""

    read: int = 0
    written: int = 0


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def _parts(wire: str, body: dict[str, Any]) -> list[tuple[str, bool]]:
    """The prompt in order, as (text, whether a cache mark ends it here)."""
    parts: list[tuple[str, bool]] = []
    if wire == "anthropic":
        system = body.get("system") or []
        blocks = [{"text": system}] if isinstance(system, str) else system
        parts += [(block.get("text", ""), "cache_control" in block) for block in blocks]
    for message in body.get("messages", []):
        content = message.get("content", "")
        if isinstance(content, str):
            parts.append((content, False))
            continue
        parts += [
            (part.get("text", ""), "prompt_cache_breakpoint" in part)
            for part in content
            if isinstance(part, dict)
        ]
    return parts


def prompt_text(wire: str, body: dict[str, Any]) -> str:
    """Everything the model reads of a request: system prompt, then the messages."""
    return "".join(text for text, _ in _parts(wire, body))


def _marked_prefixes(wire: str, body: dict[str, Any]) -> list[str]:
    """The prompt up to the end of each part that carries a cache mark."""
    prefixes, seen = [], ""
    for text, marked in _parts(wire, body):
        seen += text
        if marked:
            prefixes.append(seen)
    return prefixes


@dataclass
class FakePromptCache:
    """One provider's cache; `clock` (seconds) is what entries expire by."""

    wire: str
    clock: Callable[[], float] = time.monotonic
    entries: dict[tuple[str, bytes], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def use(self, body: dict[str, Any]) -> CacheUse:
        model = str(body.get("model", ""))
        with self._lock:
            if self.wire == "anthropic":
                return self._anthropic(model, body)
            if self.wire == "openai" and (
                "prompt_cache_options" in body or _marked_prefixes(self.wire, body)
            ):
                return self._breakpoints(model, body)
            if self.wire == "openai":
                return self._blocks(model, body, OPENAI_BLOCK_TOKENS, OPENAI_MIN_TOKENS)
            return self._blocks(model, body, MOONSHOT_BLOCK_TOKENS, MOONSHOT_BLOCK_TOKENS)

    def _live(self, key: tuple[str, bytes]) -> bool:
        return self.entries.get(key, float("-inf")) > self.clock()

    def _anthropic(self, model: str, body: dict[str, Any]) -> CacheUse:
        marked = _marked_prefixes(self.wire, body)
        if not marked or tokens(marked[-1]) < anthropic_min_cacheable_tokens(model):
            return CacheUse()
        key = (model, hashlib.sha256(marked[-1].encode()).digest())
        hit = self._live(key)
        self.entries[key] = self.clock() + ANTHROPIC_TTL_S
        size = tokens(marked[-1])
        return CacheUse(read=size) if hit else CacheUse(written=size)

    def _breakpoints(self, model: str, body: dict[str, Any]) -> CacheUse:
        points = _marked_prefixes(self.wire, body)
        if body.get("prompt_cache_options", {}).get("mode") != "explicit":
            points.append(prompt_text(self.wire, body))
        eligible = [point for point in points if tokens(point) >= OPENAI_MIN_TOKENS]
        keys = {point: (model, hashlib.sha256(point.encode()).digest()) for point in eligible}
        read = max((tokens(p) for p in eligible if self._live(keys[p])), default=0)
        longest = max((tokens(point) for point in eligible), default=0)
        for key in keys.values():
            self.entries[key] = self.clock() + OPENAI_BREAKPOINT_TTL_S
        return CacheUse(read=read, written=max(0, longest - read))

    def _blocks(self, model: str, body: dict[str, Any], block: int, minimum: int) -> CacheUse:
        """The longest earlier prefix, in whole blocks, once the prompt reaches `minimum`."""
        text = prompt_text(self.wire, body)
        if tokens(text) < minimum:
            return CacheUse()
        size = block * CHARS_PER_TOKEN
        running = hashlib.sha256()
        keys = []
        for start in range(0, len(text) - size + 1, size):
            running.update(text[start : start + size].encode())
            keys.append((model, running.copy().digest()))
        hits = sum(1 for _ in itertools.takewhile(self._live, keys))
        ttl = OPENAI_PREFIX_TTL_S if self.wire == "openai" else MOONSHOT_TTL_S
        for key in keys:
            self.entries[key] = self.clock() + ttl
        read = hits * block
        return CacheUse(read=read if read >= minimum else 0)
