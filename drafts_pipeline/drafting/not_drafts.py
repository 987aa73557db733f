"""Answers that are not drafts: a clarifying question, a refusal written as text, or the
documentation of another symbol than the task's.

Each would otherwise pass as a draft: a question or a refusal fits the schema once a model puts
it in the summary, and a draft of another function fits it too. The rules read the draft's
prose (summary, description, returns), or the whole answer when no draft could be read, and
look for what a docstring never says:

- **a question to the requester**: a sentence ending in "?" that speaks to "you" ("Could you
  share more context?"), a request for more input ("Please provide the full code", "I need more
  context"). A question that documents ("Is the path a file?") has no "you"; quoted text ("asks
  'Do you want to continue?'") is left out, as it is what the code says, not the model;
- **a refusal**: an apology ("I'm sorry, but ...", "Sorry, ..."), or the model saying in the
  first person that it cannot or will not do the work ("I cannot help with that", "I'm unable
  to document this"). "Return None when the file cannot be read" has no "I" and passes;
- **another symbol**: the prose names, in code form (`` `parse_config` ``, `parse_config()`,
  `parse_config`), a function that is neither the task's symbol nor any identifier of its code,
  never names the task's symbol, and documents parameters the symbol does not take. Both
  signs are needed: naming a related function, or renaming a parameter, happens in good drafts.
"""

import builtins
import keyword
import re
from collections.abc import Sequence

from drafts_pipeline.drafting.blindness import code_terms, normalise
from drafts_pipeline.prompts.code_facts import SymbolFacts

# Quoted text is what the code says (a prompt, a message), not the model speaking.
_QUOTED = re.compile(
    r"\"[^\"\n]*\"|(?<!\w)'[^'\n]*'(?!\w)|`[^`\n]*`|\u201c[^\u201d\n]*\u201d|\u2018[^\u2019\n]*\u2019(?!\w)"
)

_CLAUSE = r"(?:^|[.!?;:,(] |\b(?:but|so|and|however|unfortunately|sorry|afraid) )"
_CANNOT = (
    r"(?:cannot|can ?not|can't|could not|couldn't|won't|will not|unable to|not able to"
    r"|must decline to|have to decline|decline to)"
)
_WORK = (
    r"(?:help|assist|comply|document|provide|write|complete|fulfil|fulfill|do|answer|generate"
    r"|create|describe|continue|process|see|access|view|determine|tell|infer|produce|give"
    r"|share|draft|work|support|read|run|execute|verify)"
)

QUESTION = re.compile(
    "|".join(
        [
            # "Could you share more context?", "Which function do you mean?"
            r"(?:^|(?<=[.!?] ))[^.!?]*\byou(?:r|'re|'d|'ll)?\b[^.!?]*\?",
            # "Please provide the full code.", "Please share more context", "Please clarify"
            r"\bplease (?:provide|share|send|paste|give|include|upload)(?: me| us)?(?: with)?"
            r"(?: (?:the|some|more|additional|further|full|complete|entire|whole|actual"
            r"|remaining|rest|of))* (?:context|code|source|details|information|definition"
            r"|implementation|function|file|module|snippet)s?\b",
            r"\bplease (?:clarify|let me know)\b",
            # "I need more context", "I would need the full source"
            r"\bi (?:need|would need|'d need|require|would require)\b[^.!?]{0,40}?"
            r"\b(?:more|additional|further|the full|the complete|the rest|the actual"
            r"|the entire|the source|the code|context)\b",
        ]
    )
)

REFUSAL = re.compile(
    "|".join(
        [
            # "I'm sorry, but ...", "I am afraid I ...", "Sorry, ...", "I apologise"
            r"\b(?:i'm|i am|im) (?:sorry|afraid)\b",
            r"(?:^|[.!?] )(?:sorry|apologies)\b",
            r"\bi apologi[sz]e\b",
            # "I cannot help with that", "I'm unable to document this", "I won't write it"
            rf"{_CLAUSE}i(?: am|'m)? {_CANNOT}(?: (?:really|currently|fully|properly))? {_WORK}\b",
            # "Unable to help with that request."
            r"\b(?:cannot|can't|unable to) (?:help|assist) (?:you )?with (?:that|this|your)\b",
        ]
    )
)

_CODE_NAME = re.compile(
    r"`(?P<quoted>[A-Za-z_][\w.]*)(?:\(\))?`"
    r"|(?P<called>\b[A-Za-z_][\w.]*)\("
    r"|(?P<snake>\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b)"
)
_NOT_SYMBOLS = frozenset(dir(builtins)) | frozenset(keyword.kwlist)


def not_a_draft(
    prose: str,
    documented: Sequence[str] | None,
    facts: SymbolFacts | None,
    code: str = "",
) -> str | None:
    """Why an answer is not a draft of the task's symbol; None when nothing says so.

    `prose` is the draft's summary, description and returns (the whole answer when no draft
    was read), `documented` the parameter names the draft documents (None: no draft)."""
    spoken = normalise(_QUOTED.sub(" ", prose))
    if question := QUESTION.search(spoken):
        return f"a clarifying question, not a draft: {_quote(question.group(0))}"
    if refusal := REFUSAL.search(spoken):
        return f"a refusal, not a draft: {_quote(refusal.group(0))}"
    if documented is not None and facts is not None:
        return _another_symbol(prose, documented, facts, code)
    return None


def _another_symbol(
    prose: str, documented: Sequence[str], facts: SymbolFacts, code: str
) -> str | None:
    unknown = [name for name in documented if name not in facts.parameters]
    if not unknown or re.search(rf"\b{re.escape(facts.name)}\b", prose):
        return None
    known = code_terms(code).identifiers | {facts.name, *facts.parameters, *documented}
    named = [
        name
        for match in _CODE_NAME.finditer(prose)
        if (name := (match.group("quoted") or match.group("called") or match.group("snake")))
        and (name := name.rsplit(".", 1)[-1])
        and name not in known
        and name not in _NOT_SYMBOLS
    ]
    if not named:
        return None
    return (
        f"documents `{named[0]}`, not the task's `{facts.name}`: "
        f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not in its signature"
    )


def _quote(phrase: str) -> str:
    return repr(phrase.strip(" .,;:!(")[:120])
