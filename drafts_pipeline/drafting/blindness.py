"""Blindness: whether a draft's text would tell a voter which provider or model wrote it.

Draft validation and the voting-ready set's check both call `blindness_leaks`, so a draft is
judged by one rule wherever it is looked at. The names it knows are those of
`model_families` (one list: vendors, products, model families) and of the model ids it is
given. Two kinds of leak, over normalised text (case, Unicode forms, curly quotes, dashes,
spacing and camel case folded away):

- **Self-identification** (`rules`): the text speaks as a model or its vendor ("As Claude,
  …", "I'm ChatGPT", "I am Gemini", "made by Anthropic", "Google trained me", "Claude here",
  "as an AI language model"). Always a leak: nothing in the task's code or context excuses
  it. Names that are also ordinary words count only in first-person forms (`rules` says
  which).
- **Names** (`MENTIONS`, and the model ids given): any provider, vendor or model name (an
  ordinary word only in a model-like form: "Sonnet 4.5", "llama-3.1-70b"), unless the
  symbol's own code uses that name in an identifier or an identifier-like string
  (`build_openai_client`, `anthropic_client`, `"gpt-6.2-sol"`, `parse_haiku`). Every
  provider's draft of such code names the vendor alike, so the word tells no author apart.
  The task's context, and the code's comments and prose, exempt nothing.
"""

import functools
import io
import re
import textwrap
import tokenize
import unicodedata
from dataclasses import dataclass

from drafts_pipeline.drafting.model_families import (
    FAMILIES,
    MODEL_TAIL,
    ORDINARY_MODEL_WORDS,
    ORDINARY_VENDOR_WORDS,
    STRONG_MODEL,
    STRONG_VENDOR,
    Family,
    alternatives,
    derived_words,
)

# What an assistant calls itself without a brand.
AI = r"(?:ai|a\.i\.|artificial intelligence)"
BRANDED_AI = rf"{AI}(?:[ -](?:language model|model|assistant|chatbot|system|program))?"
AI_KIND = rf"(?:{BRANDED_AI}|(?:large )?language model|llm|chatbot)"
SELF_AS_AI = rf"an? (?:{AI_KIND}|(?:virtual |digital )?assistant)\b"
I_AM = r"\b(?:i am|i ?' ?m|im|i am called|i'm called|my name is|call me|i go by)"
HEDGE = r"(?:just |only |merely |simply |actually |really )?"
CLAUSE_START = r"(?:^|[.!?;:,(] ?)"
SENTENCE_START = r"(?:^|[.!?] )"
CLAUSE_END = r"(?=\s*(?:[,.;:!?)]|$))"
GREETING = r"(?:(?:hi|hello|hey)[,!]? )"
# What follows a self-introduction: a break, or the speaker ("As Claude, I ...").
THEN_SELF = r"(?=\s*(?:[,:;-]|$)| (?:i|i'm|i've|i'll|we|my|me)\b)"
# What follows an ordinary word spoken as a name: the speaker only ("As Gemini, I ...").
THEN_I = r",? (?:i|i'm|i've|i'll|my|me)\b"
MAKES = r"(?:made|created|built|developed|trained|designed|programmed)"
WRITES = r"(?:written|drafted|authored|composed)"
ROLE = r"(?:creator|maker|developer|vendor|provider|author|company)"
NOT_POSSESSIVE = r"\b(?!')"
WHOLE = r"(?![\w-])"


@dataclass(frozen=True)
class Rules:
    """The self-identification patterns by rule, each behind its trigger (a few words without
    which the rule cannot match, searched first because it is cheap), and `any_name`: every
    model or vendor word they know (without one, no code needs reading)."""

    self_identification: dict[str, tuple[re.Pattern[str], re.Pattern[str]]]
    any_name: re.Pattern[str]


# Per rule, words one of which each of its patterns needs.
TRIGGERS = {
    "speaks as a model": r"\b(?:i|i'm|im|my|call me|this is|you|you're)\b",
    "writes as a model": r"\b(?:as|speaking|writing|answering|responding|acting)\b",
    "names its maker": rf"\b(?:me|my|{MAKES} by)\b",
    "names its author": r"\bby\b",
    "signs as a model": r"\b(?:here|speaking|signing off)\b|(?:^|[.!?] )-",
    "speaks as an AI": r"\b(?:ai|a\.i|artificial|language model|llm|chatbot|assistant)\b",
}


@functools.lru_cache(maxsize=32)
def rules(extra_models: tuple[str, ...] = ()) -> Rules:
    """The patterns over `model_families`, with `extra_models` (words derived from the
    configured model ids) as more ordinary model words.

    Distinct names and the model-like forms of ordinary ones (`STRONG_*`) count in every
    context below; ordinary words ("Gemini", "Sonnet", "Google", "Meta") only where the text
    speaks in the first person or to its reader, without an article, and never in the
    third-person "made by" / "written by" forms, where they are everyday prose ("a format
    made by Google")."""
    model, vendor = STRONG_MODEL, STRONG_VENDOR
    name = rf"(?>{model}|{vendor})"
    any_model = rf"(?>{alternatives([model, *ORDINARY_MODEL_WORDS, *extra_models])}){MODEL_TAIL}"
    any_vendor = alternatives([vendor, *ORDINARY_VENDOR_WORDS])
    any_name = rf"(?>{any_model}|{any_vendor})"
    as_model = (
        rf"(?:an? )?(?:{name}(?:'s)?(?: [\w-]+){{0,2}} (?:model|assistant|ai|chatbot|llm)\b"
        rf"|{model}\b|{vendor}\b{CLAUSE_END})"
    )
    as_any = (
        rf"(?:{as_model}|(?:an? )?{any_name}(?:'s)?(?: [\w-]+){{0,2}} "
        rf"(?:model|assistant|ai|chatbot|llm)\b"
        rf"|{any_model}{WHOLE}|{any_vendor}{WHOLE}{CLAUSE_END})"
    )
    by_rule = {
        # "I'm ChatGPT", "I am Gemini", "my name is Claude", "This is Claude.", "I, Llama, ..."
        "speaks as a model": [
            rf"{I_AM} {HEDGE}{as_any}",
            rf"\bi, {any_model},",
            rf"{SENTENCE_START}{GREETING}?this is {model}{CLAUSE_END}",
            rf"\b{GREETING}this is {any_model}{CLAUSE_END}",
            rf"\byou(?: are|'re) (?:talking|chatting|speaking) (?:to|with) {as_any}",
        ],
        # "As Claude, ...", "Sure, as ChatGPT I ...", "As Gemini, I ...", "speaking as Kimi"
        "writes as a model": [
            rf"{CLAUSE_START}as {as_model}{THEN_SELF}",
            rf"{CLAUSE_START}as {any_name}{WHOLE}{THEN_I}",
            rf"\b(?:speaking|writing|answering|responding|acting) as {as_model}",
        ],
        # "made by Anthropic", "created by Moonshot AI", "Google trained me", "I was built by
        # Meta", "OpenAI is my creator"
        "names its maker": [
            rf"\b{MAKES} by {name}{NOT_POSSESSIVE}",
            rf"\b(?:i|we) (?:was|were|am|are|have been) {MAKES} by {any_name}",
            rf"\b{any_name} {MAKES} me\b",
            rf"\bmy {ROLE} is {any_name}",
            rf"\b{any_name} is my {ROLE}\b",
        ],
        # "this was written by Claude", "This docstring was generated by ChatGPT", "Drafted by
        # Gemini."
        "names its author": [
            rf"\b{WRITES} by {name}{NOT_POSSESSIVE}",
            rf"\b{WRITES} by {any_model}{CLAUSE_END}",
            rf"\bthis (?:[\w-]+ ){{0,3}}(?:was|is|has been) (?:[\w-]+ )?"
            rf"(?:generated|produced|created|made) by (?:{name}{NOT_POSSESSIVE}"
            rf"|{any_model}{CLAUSE_END})",
        ],
        # "Claude here", "Hello, Gemini here.", "ChatGPT speaking", "... - Llama" at the end
        "signs as a model": [
            rf"{SENTENCE_START}{GREETING}?{model} here\b",
            rf"{SENTENCE_START}{GREETING}?{any_model} here{CLAUSE_END}",
            rf"\b{model} (?:speaking|signing off)\b",
            rf"{CLAUSE_START}{any_model} (?:speaking|signing off)\b",
            rf"{SENTENCE_START}-+ ?{any_model}\W*$",
        ],
        # "as an AI language model", "I'm just an AI", "As a large language model, I ..."
        "speaks as an AI": [
            rf"{I_AM} {HEDGE}{SELF_AS_AI}",
            rf"{CLAUSE_START}as {SELF_AS_AI}{THEN_SELF}",
            rf"\bas an? {BRANDED_AI}(?:{CLAUSE_END}| (?:i|we|my)\b)",
        ],
    }
    return Rules(
        {
            rule: (re.compile(TRIGGERS[rule]), re.compile("|".join(patterns)))
            for rule, patterns in by_rule.items()
        },
        re.compile(rf"\b{any_name}"),
    )


# Each family's mentions: any provider, vendor or model name anywhere (left-anchored, so
# "OpenAIClient" counts), for the ordinary words in their model-like forms only.
MENTIONS: tuple[tuple[Family, re.Pattern[str]], ...] = tuple(
    (family, re.compile(rf"\b(?:{family.mention})"))
    for family in FAMILIES
    if family.mention is not None
)

_QUOTE_MARKS = re.compile(r"[\"`*~\u201c\u201d\u201e\u00ab\u00bb]")
_APOSTROPHES = re.compile(r"[\u2018\u2019\u201b\u02bc\u2032\u00b4\uff07]")
_DASHES = re.compile(r"[\u2010-\u2015\u2212\ufe58\ufe63\uff0d]")
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200d\u2060\ufeff]")
# "OpenAIClient" -> "Open AI Client", "Version2Client" -> "Version2 Client"; not "7B", "GPT4".
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z0-9])(?=[A-Z][a-z])")
_LONE_QUOTE = re.compile(r"(?<![a-z0-9])'|'(?![a-z])")
# Family names in a casing camel case would split: "LLaMA", "GeMini".
_ODD_CASE = re.compile(
    r"\b(?i:{})\b".format("|".join(f.word for f in FAMILIES if f.word.isalpha()))
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_LIKE = re.compile(r"[\w.:/-]+")


def normalise(text: str) -> str:
    """Text as the patterns read it: one case, one apostrophe, one dash, single spaces, camel
    case and snake case split into words, quotation and emphasis marks dropped."""
    text = unicodedata.normalize("NFKC", _INVISIBLE.sub("", text))
    text = _APOSTROPHES.sub("'", text)
    text = _DASHES.sub("-", text)
    text = _ODD_CASE.sub(lambda word: word.group(0).lower(), text)
    text = _CAMEL.sub(" ", text).replace("_", " ")
    text = _QUOTE_MARKS.sub("", text).casefold()
    text = _LONE_QUOTE.sub("", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class CodeTerms:
    """The words a symbol's code itself uses: its identifiers and its identifier-like string
    literals (`"gpt-6.2-sol"`), never its comments or prose."""

    identifiers: frozenset[str]
    words: frozenset[str]

    def carries(self, name: str) -> bool:
        """Whether a name (`openai`, `open ai`, `gpt-6`) is part of one of the code's words."""
        key = _name_key(name)
        return any(key in word for word in self.words)


@functools.lru_cache(maxsize=256)
def code_terms(code: str) -> CodeTerms:
    """The identifiers and identifier-like literals of `code`: Python's tokens where it
    tokenises, else every identifier-shaped word of it (comments included)."""
    identifiers: set[str] = set()
    literals: set[str] = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(textwrap.dedent(code)).readline):
            if token.type == tokenize.NAME:
                identifiers.add(token.string)
            elif token.type == tokenize.STRING:
                literals.update(_identifier_like_literal(token.string))
    except (tokenize.TokenError, SyntaxError):
        identifiers = set(_IDENTIFIER.findall(code))
    words = {_name_key(term) for term in identifiers | literals}
    return CodeTerms(frozenset(identifiers), frozenset(words))


def _identifier_like_literal(token: str) -> list[str]:
    body = token.lstrip("rRbBuUfF")[1:-1].strip("'\"")
    return [body] if body and _WORD_LIKE.fullmatch(body) else []


def _name_key(name: str) -> str:
    """`OpenAI`, `open ai`, `open-ai`, `Open_AI` -> `openai`; `GPT-4o` -> `gpt4o`."""
    return re.sub(r"[\s_\-.:/]", "", normalise(name))


def _model_key(name: str) -> str:
    """What the code must use for a model id named in a draft to be excused: its family's key
    when a family names it (`gpt-6.2` -> `gpt`), else the id itself."""
    plain = normalise(name)
    for family, pattern in MENTIONS:
        if pattern.match(plain):
            return family.key_of(plain)
    return _name_key(name)


@dataclass(frozen=True)
class BlindnessLeak:
    """One phrase that would tell a voter who wrote a draft, and the rule it broke."""

    rule: str
    phrase: str

    def __str__(self) -> str:
        if self.rule == "names a provider or model":
            return f"names a provider or model its code does not use: {self.phrase!r}"
        return f"{self.rule}: {self.phrase!r}"


def blindness_leaks(
    text: str, code: str = "", model_ids: frozenset[str] | set[str] = frozenset()
) -> list[BlindnessLeak]:
    """Every phrase of `text` that speaks as a model or vendor, or names a provider or model
    that the symbol's `code` does not itself use; `model_ids` are more names to look for (the
    models the drafts came from), and their leading words more model family words. The task's
    context is deliberately not an argument."""
    plain = normalise(text)
    known = rules(_derived_words(frozenset(model_ids)))
    has_name = known.any_name.search(plain) is not None
    named: list[tuple[str, str]] = []
    if has_name:
        named = [
            (match.group(0), family.key_of(match.group(0)))
            for match, family in sorted(
                (
                    (match, family)
                    for family, pattern in MENTIONS
                    for match in pattern.finditer(plain)
                ),
                key=lambda found: found[0].start(),
            )
        ]
    for model_id in sorted(model_ids):
        wanted, pattern = _model_id_pattern(model_id)
        if wanted and pattern.search(plain):
            named.append((wanted, _model_key(wanted)))
    if not named and not has_name:
        return _self_identification(known, plain)
    terms = code_terms(code)
    spoken = normalise(_mask_quoted_identifiers(text, terms.identifiers, known.any_name))
    leaks = _self_identification(known, spoken)
    leaks += [
        BlindnessLeak("names a provider or model", phrase)
        for phrase, key in dict.fromkeys(named)
        if not terms.carries(key)
    ]
    return leaks


# The same few model ids are looked for in every draft: their words and patterns once each.
@functools.lru_cache(maxsize=64)
def _derived_words(model_ids: frozenset[str]) -> tuple[str, ...]:
    return derived_words(model_ids)


@functools.lru_cache(maxsize=256)
def _model_id_pattern(model_id: str) -> tuple[str, re.Pattern[str]]:
    """A model id as the patterns read it, and the pattern finding it as a word of its own."""
    wanted = normalise(model_id)
    return wanted, re.compile(rf"(?<![\w-]){re.escape(wanted)}(?![\w-])")


def _self_identification(known: Rules, spoken: str) -> list[BlindnessLeak]:
    return [
        BlindnessLeak(rule, match.group(0).strip(" .,;:!?(-"))
        for rule, (trigger, pattern) in known.self_identification.items()
        if trigger.search(spoken)
        for match in pattern.finditer(spoken)
    ]


def _mask_quoted_identifiers(
    text: str, identifiers: frozenset[str], any_name: re.Pattern[str]
) -> str:
    """`text` with each code identifier that holds a model or vendor name and is quoted in
    backticks (`` `claude` ``) replaced by a neutral word: a reference to the code is never the
    draft speaking of itself."""

    def masked(match: re.Match[str]) -> str:
        quoted = match.group(1)
        in_code = set(quoted.split(".")) <= identifiers
        return "`identifier`" if in_code and any_name.search(normalise(quoted)) else match.group(0)

    return re.sub(r"`([A-Za-z_][A-Za-z0-9_.]*)`", masked, text)
