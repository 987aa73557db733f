"""Every vendor, product and model family name the blindness rules know: the one list to keep.

Patterns are over text as `blindness.normalise` leaves it: lower case, one apostrophe, one
dash, single spaces, camel case split ("OpenAI" reads "open ai", "DeepSeek" "deep seek").

Two kinds of name:

- **distinct** names are no ordinary word nor common identifier (Claude, ChatGPT, GPT-4o,
  Kimi, Qwen, DeepSeek, Anthropic, OpenAI, Moonshot): any mention names a model or vendor;
- **ordinary** names are also English words or everyday identifiers ("a sonnet", "haiku",
  `meta`, `llama_index`, the Gemini protocol, the mistral wind, Google Cloud): a mention names
  a model only in a model-like form, `mention` (a version, "Sonnet 4.5", "llama-3.1-70b",
  "gemini-2.5-pro"; after Claude, "Claude 3 Opus"; with a model noun, "Mistral AI", "Meta
  AI"), while the bare word counts only where a text speaks of itself in the first person
  ("I am Gemini", "As Llama, I", "Google trained me").

The o-series (o1, o3, o4-mini ...) is ordinary in that sense: "o1" alone is a variable name; it
names a model with a suffix ("o3-mini"), after OpenAI or ChatGPT ("OpenAI o3"), or spoken.

A configured provider's model ids are passed to the rules as they are (exact names), and the
leading word of each id that no family here knows counts as an ordinary model name
(`derived_words`), so a new provider's family ("I am Grok") is caught before this list learns it.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass

# A model version after a family word: "3", "3.1", "-2.5", "-3.1-70b", "v2", "7b".
VERSION = r"[ -]?v?\d+(?:[.-]\d+)*[a-z]?\b"
# Anthropic's short versions ("4", "4.5", "-4-5", a dated "-4-5-20250929"); not "Sonnet 18" or
# the haiku's "5-7-5".
SHORT_VERSION = r"[ -]?\d(?:[.-]\d)?(?:-\d{8})?(?![\w-]|\.\d)"
CLAUDE_BEFORE = r"claude(?:[ -]\d+(?:\.\d+)?)*[ -]"
# Version and size words after a model name when it speaks: "Claude 3.5", "Kimi K2",
# "gpt-4.1-mini", "Gemini 2.5 Pro".
MODEL_TAIL = (
    r"(?:-[a-z0-9.]+|[ -]?v?[a-z]?\d[\w.]*"
    r"| (?:pro|flash|mini|max|turbo|large|small|medium|nano|lite|ultra|instruct|preview))*"
)
MODEL_NOUN = r"(?:model|llm|ai|assistant|chatbot)s?\b"
O_SERIES = r"o[1-9]"


@dataclass(frozen=True)
class Family:
    """One vendor, product or model family.

    `key` is what the symbol's code must use (in an identifier or an identifier-like string)
    for a mention to be excused; `word` the name as spoken; `mention` the forms that name it
    wherever they occur (None: never by mention alone)."""

    key: str
    word: str
    mention: str | None
    vendor: bool = False
    ordinary: bool = False

    def key_of(self, phrase: str) -> str:
        """The key a mention is excused by: the family's, or for the o-series its own ("o3")."""
        if self.key == "o-series":
            found = re.search(rf"\b{O_SERIES}", phrase)
            return found.group(0) if found else self.key
        return self.key


def distinct(key: str, word: str, mention: str | None = None, vendor: bool = False) -> Family:
    return Family(key, word, mention or word, vendor=vendor)


def ordinary(key: str, word: str, mention: str | None, vendor: bool = False) -> Family:
    return Family(key, word, mention, vendor=vendor, ordinary=True)


def _anthropic_tier(word: str) -> Family:
    """Sonnet, Opus, Haiku: after Claude, or with a short version."""
    return ordinary(
        word, word, rf"{CLAUDE_BEFORE}{word}(?:{SHORT_VERSION}|\b)|{word}{SHORT_VERSION}"
    )


FAMILIES: tuple[Family, ...] = (
    # Vendors.
    distinct("anthropic", r"anthropic", vendor=True),
    distinct("openai", r"open[ -]?ai", vendor=True),
    distinct("moonshot", r"moonshot(?:[ -]ai)?", vendor=True),
    distinct("deepmind", r"(?:google )?deep[ -]?mind", vendor=True),
    ordinary("google", r"google", r"google(?:'s)?[ -](?:ai\b|gemini\b)", vendor=True),
    ordinary("meta", r"meta", r"meta(?:'s)?[ -](?:ai\b|llama\b)", vendor=True),
    ordinary("alibaba", r"alibaba(?: cloud)?", None, vendor=True),
    # Models and products (Mistral is both: its vendor's name is "Mistral AI").
    distinct("claude", r"claude"),
    distinct("chatgpt", r"chat[ -]?gpt"),
    distinct("gpt", r"gpt(?:[ -]?\d\w*(?:\.\w+)*)?", r"gpt[ -]?\d\w*(?:\.\w+)*"),
    ordinary(
        "o-series",
        rf"{O_SERIES}(?:-[a-z]+)*",
        rf"{O_SERIES}(?:-(?:mini|pro|preview|high|low|deep-research))+\b"
        rf"|(?:open[ -]?ai|chat[ -]?gpt)(?:'s)? {O_SERIES}\b",
    ),
    distinct("kimi", r"kimi"),
    distinct("qwen", r"qwen\w*(?:\.\w+)*"),
    distinct("deepseek", r"deep[ -]?seek"),
    distinct("mixtral", r"mixtral"),
    _anthropic_tier("sonnet"),
    _anthropic_tier("opus"),
    _anthropic_tier("haiku"),
    ordinary(
        "gemini", r"gemini", rf"gemini(?:{VERSION}|[ -](?:pro|flash|ultra|nano)\b| {MODEL_NOUN})"
    ),
    ordinary("llama", r"llama", rf"llama(?:{VERSION}| {MODEL_NOUN})"),
    ordinary(
        "mistral",
        r"mistral(?:[ -]ai)?",
        rf"mistral(?:[ -]ai\b|{VERSION}|[ -](?:large|medium|small|nemo|tiny)\b| {MODEL_NOUN})",
    ),
)


def alternatives(patterns: Iterable[str]) -> str:
    return "(?:" + "|".join(patterns) + ")"


# What the rules below build on (each an alternation, no anchors).
# The longer, model-like forms come first: the rules read names in atomic groups, which keep
# the first alternative that matches ("claude 3 opus" before "claude").
STRONG_MODEL = alternatives(
    [f.mention for f in FAMILIES if not f.vendor and f.ordinary and f.mention]
    + [f.word for f in FAMILIES if not f.vendor and not f.ordinary]
)
"""A model named so that no ordinary text reads the same: "Claude", "GPT-4o", "Sonnet 4.5"."""
STRONG_VENDOR = alternatives(
    [f.mention for f in FAMILIES if f.vendor and f.ordinary and f.mention]
    + [f.word for f in FAMILIES if f.vendor and not f.ordinary]
)
"""A vendor named so: "Anthropic", "Moonshot AI", "Meta AI", "Google DeepMind"."""
ORDINARY_MODEL_WORDS = [f.word for f in FAMILIES if not f.vendor and f.ordinary]
ORDINARY_VENDOR_WORDS = [f.word for f in FAMILIES if f.vendor and f.ordinary]

_KNOWN_WORD = re.compile(rf"^(?:{alternatives(f.word for f in FAMILIES)})$")
# Leading words of model ids that name no family: "text-embedding-3", "offline-claude" (this
# project's offline drafts), "model-7".
GENERIC_LEADS = frozenset({"model", "text", "chat", "code", "offline", "local", "test"})


def derived_words(model_ids: Iterable[str]) -> tuple[str, ...]:
    """The leading word of each model id that no family knows ("grok" of "grok-5"), escaped
    for a pattern; generic words and words under three letters are left out."""
    words = set()
    for model_id in model_ids:
        leading = re.match(r"[a-z]+", model_id.casefold())
        word = leading.group(0) if leading else ""
        if len(word) >= 3 and word not in GENERIC_LEADS and not _KNOWN_WORD.match(word):
            words.add(re.escape(word))
    return tuple(sorted(words))
