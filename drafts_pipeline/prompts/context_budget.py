"""How much of a task's context a prompt carries: the context has a token budget, the code has
none (it is always sent whole), and the whole prompt has a limit.

Tokens are estimated without a tokenizer, as `llm/estimate.py` does before it has calibrated:
characters divided by `DEFAULT_CHARS_PER_TOKEN` (3.5), rounded up. That ratio overcounts code
(by about a quarter against OpenAI's o200k_base tokenizer), so a budget errs on the small side.

A context over its budget is cut by lines (`fit_context`): the enclosing signatures are kept
first, then the lines nearest the symbol, and each run of lines left out becomes one marker
line saying how many.
"""

import math
from dataclasses import dataclass

from drafts_pipeline.llm.estimate import DEFAULT_CHARS_PER_TOKEN
from drafts_pipeline.settings import Settings


def estimated_tokens(text: str) -> int:
    """Tokens of `text` at `DEFAULT_CHARS_PER_TOKEN` characters a token, rounded up."""
    return math.ceil(len(text) / DEFAULT_CHARS_PER_TOKEN)


def chars_for(tokens: int) -> int:
    """The most characters that estimate at `tokens` tokens or fewer."""
    return max(0, math.floor(tokens * DEFAULT_CHARS_PER_TOKEN))


@dataclass(frozen=True)
class PromptLimits:
    """`DRAFTS_CONTEXT_BUDGET_TOKENS` and `DRAFTS_MAX_PROMPT_TOKENS`, unless a template sets its
    own (its `context_budget_tokens` / `max_prompt_tokens`)."""

    context_budget_tokens: int = Settings.context_budget_tokens
    max_prompt_tokens: int = Settings.max_prompt_tokens

    @classmethod
    def from_settings(cls, settings: Settings) -> "PromptLimits":
        return cls(settings.context_budget_tokens, settings.max_prompt_tokens)

    @classmethod
    def from_environment(cls) -> "PromptLimits":
        """The limits as the environment sets them; a bad value fails naming its variable."""
        settings = Settings.from_environment().require("context_budget_tokens", "max_prompt_tokens")
        return cls.from_settings(settings)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def marker(count: int) -> str:
    """The line that stands for `count` lines left out."""
    return f"... ({count} line{'s' if count != 1 else ''} left out)"


# Room for one marker line and its line break (a count of up to seven digits).
MARKER_CHARS = len(marker(9_999_999)) + 1


# Lines before a definition's signature that many definitions share.
NOT_SIGNATURE = ("@", "#", "//", "/*", "*")


def fit_context(context: str, code: str, max_chars: int) -> str:
    """`context` cut to at most `max_chars` characters, by whole lines.

    The symbol's place in the context is the last line equal to the code's signature line,
    its first line that is not a decorator, an annotation or a comment (the context may hold
    the symbol itself), else just past the context's end (the context comes before the
    symbol, as `tasks discover` builds it). Kept first: the enclosing signatures,
    the lines above that place each less indented than every line after it (a class header,
    a module or namespace line), nearest first. Then the lines nearest the place, the nearer
    first and, at equal distance, the one above it; growth stops at the first line that does
    not fit, so the kept lines around the symbol are contiguous. Each run of lines left out
    becomes one marker line (`marker`), whose room is set aside first.
    """
    if len(context) <= max_chars:
        return context
    lines = context.split("\n")
    code_lines = [line for line in code.split("\n") if line.strip()]
    # The signature line: decorators, annotations and comments recur across definitions.
    signature = [line for line in code_lines if not line.strip().startswith(NOT_SIGNATURE)]
    first = (signature or code_lines or [""])[0]
    matches = [i for i, line in enumerate(lines) if first.strip() and line.strip() == first.strip()]
    anchor = matches[-1] if matches else len(lines)
    level = _indent(lines[anchor]) if matches else _indent(first)

    enclosing: list[int] = []
    for index in range(anchor - 1, -1, -1):
        line = lines[index]
        if line.strip() and _indent(line) < level:
            enclosing.append(index)
            level = _indent(line)
            if level == 0:
                break

    # Every kept enclosing line outside the window may sit between two runs left out.
    room = max_chars - MARKER_CHARS * (len(enclosing) + 2)
    kept: set[int] = set()
    for index in enclosing:
        cost = len(lines[index]) + 1
        if cost > room:
            break
        kept.add(index)
        room -= cost

    for index in _nearest_first(anchor, len(lines), bool(matches)):
        if index in kept:
            continue
        cost = len(lines[index]) + 1
        if cost > room:
            break
        kept.add(index)
        room -= cost

    out: list[str] = []
    skipped = 0
    for index, line in enumerate(lines):
        if index in kept:
            if skipped:
                out.append(marker(skipped))
                skipped = 0
            out.append(line)
        else:
            skipped += 1
    if skipped:
        out.append(marker(skipped))
    return "\n".join(out)


def _nearest_first(anchor: int, count: int, inside: bool) -> list[int]:
    """Line indexes by distance from `anchor`: the anchor line itself when the symbol is in
    the context, then the line above and the line below, and so on outwards."""
    order = [anchor] if inside else []
    for distance in range(1, count + 1):
        order += [anchor - distance, anchor + distance]
    return [i for i in order if 0 <= i < count]
