"""Offline drafts: deterministic, local, plausible answers built from the symbol's code.

They follow the same JSON schema as a live answer, so validation, ballots and the voting-ready
set run unchanged. Each provider writes in its own style, so the drafts of a ballot differ.
"""

import json

from drafts_pipeline.prompts.code_facts import SymbolFacts, symbol_facts

VERBS = {
    "get", "load", "build", "parse", "compute", "create", "make", "check", "validate", "find",
    "read", "write", "add", "remove", "update", "format", "render", "run", "convert", "send",
    "fetch", "save", "delete", "merge", "split", "count", "apply", "register", "resolve", "scale",
    "normalize", "filter", "sort", "open", "close", "start", "stop", "wait", "collect", "clean",
}  # fmt: skip
PREPOSITIONS = {"by", "for", "from", "to", "in", "with", "of", "on", "at"}
STYLES = ("claude", "openai", "kimi")


def _phrase(name: str) -> tuple[str, str]:
    """('Parse', 'the config') from 'parse_config'; ('Handle', 'the widget') otherwise."""
    words = [w for w in name.strip("_").split("_") if w] or [name]
    if words[0].lower() in VERBS:
        verb, rest = words[0].capitalize(), words[1:]
    elif words[0].lower() in ("is", "has", "can", "should"):
        return "Tell whether", " ".join(words)
    elif words[0].lower() == "to" and len(words) > 1:
        return "Convert", f"the value to {' '.join(words[1:])}"
    else:
        verb, rest = "Handle", words
    if rest and rest[0].lower() in PREPOSITIONS:
        return verb, "the entries " + " ".join(rest)
    return verb, ("the " + " ".join(rest)) if rest else "the request"


def _parameter_text(facts: SymbolFacts, name: str, style: int) -> str:
    kind = facts.annotations.get(name)
    readable = name.replace("_", " ").strip() or name
    typed = f" ({kind})" if kind else ""
    return (
        f"The {readable} to use{typed}.",
        f"{readable.capitalize()}{typed}; used as given.",
        f"Input value `{name}`{typed}.",
    )[style]


def offline_answer(provider: str, symbol: str, code: str) -> str:
    """The JSON answer an offline provider gives for one symbol."""
    style = STYLES.index(provider) if provider in STYLES else len(provider) % len(STYLES)
    facts = symbol_facts(code)
    name = facts.name if facts else symbol.rsplit(".", 1)[-1]
    verb, thing = _phrase(name)
    summary = (
        f"{verb} {thing}.",
        f"{verb} {thing} and report the outcome.",
        f"{verb} {thing} for the caller.",
    )[style]
    answer: dict[str, object] = {"summary": summary, "description": "", "parameters": []}
    if facts is not None:
        kind = "coroutine" if facts.is_async else ("generator" if facts.yields else "function")
        inputs = ", ".join(f"`{p}`" for p in facts.parameters) or "no arguments"
        answer["description"] = (
            f"A {kind} of {inputs}.",
            f"Works on {inputs} and keeps no state between calls.",
            f"Call it with {inputs}.",
        )[style]
        answer["parameters"] = [
            {"name": p, "description": _parameter_text(facts, p, style)} for p in facts.parameters
        ]
        if facts.returns_value or facts.yields:
            produced = facts.return_annotation or ("the values" if facts.yields else "the result")
            answer["returns"] = (
                f"{produced} computed from the arguments.",
                f"The resulting {produced}.",
                f"{produced}.",
            )[style]
        answer["raises"] = [
            {"exception": e, "when": "When the input cannot be handled."} for e in facts.raises
        ]
        arguments = ", ".join(facts.parameters)
        answer["example"] = f"{name}({arguments})" if style == 0 else None
    return json.dumps(answer, indent=None if style else 2)
