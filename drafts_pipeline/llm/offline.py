"""Offline drafts: deterministic, local, plausible answers built from the symbol's code.

`OfflineProvider` is the provider resource `DRAFTS_LLM_MODE=offline` picks: no network, no key,
zero cost, model `offline-<provider>`; for the demo, dry runs and graph tests. Its answers follow
the same JSON schema as a live answer, so validation, ballots and the voting-ready set run
unchanged. Each provider writes in its own style, so the drafts of a ballot differ: the three
shipped ones in theirs, any other in a generic style told apart by its variant.
"""

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import dagster as dg
from pydantic import Field

from drafts_pipeline.llm.budget import DailyBudget
from drafts_pipeline.llm.calling import NoCallLog, OnStart
from drafts_pipeline.llm.generation import CallAttempt, CallLog, Generation, TokenUsage
from drafts_pipeline.llm.limits import PaceBook
from drafts_pipeline.llm.pricing import ModelPrice, table_price
from drafts_pipeline.llm.prompt_cache import estimated_tokens
from drafts_pipeline.llm.provider import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    DraftRequest,
    Outcome,
    settings_hash,
)
from drafts_pipeline.prompts.code_facts import SymbolFacts, symbol_facts

VERBS = {
    "get", "load", "build", "parse", "compute", "create", "make", "check", "validate", "find",
    "read", "write", "add", "remove", "update", "format", "render", "run", "convert", "send",
    "fetch", "save", "delete", "merge", "split", "count", "apply", "register", "resolve", "scale",
    "normalize", "filter", "sort", "open", "close", "start", "stop", "wait", "collect", "clean",
}  # fmt: skip
PREPOSITIONS = {"by", "for", "from", "to", "in", "with", "of", "on", "at"}
STYLES = ("claude", "openai", "kimi")
# Any other provider writes in the generic style, its summary ending and its description's
# opening chosen by its variant: 30 providers of the generic style, each drafting its own text.
GENERIC_ENDINGS = (
    " as asked.", " in one call.", " on request.", " and hand back what it finds.",
    " for whoever calls it.", " step by step.",
)  # fmt: skip
GENERIC_OPENINGS = ("Takes", "Expects", "Reads", "Needs", "Is given")
CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _words(name: str) -> list[str]:
    """`parse_config`, `parseConfig` and `ParseConfig` -> ['parse', 'config']; a Ruby name's
    `?` or `!` dropped."""
    spaced = CAMEL_HUMP.sub("_", name.strip("_?!"))
    return [_lower_hump(w) for w in spaced.split("_") if w] or [name]


def _lower_hump(word: str) -> str:
    """`Book` (from `findBook`) -> `book`; an acronym such as `URL` stays."""
    return word.lower() if word[1:].islower() else word


def _phrase(name: str) -> tuple[str, str]:
    """('Parse', 'the config') from 'parse_config'; ('Handle', 'the widget') otherwise."""
    words = _words(name)
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


def offline_answer(
    provider: str, symbol: str, code: str, language: str = "python", variant: int = 0
) -> str:
    """The JSON answer an offline provider gives for one symbol written in `language`: in
    the provider's own style for the three shipped ones, else in the generic style of
    `variant` (0 to 29)."""
    generic = provider not in STYLES
    style = len(STYLES) - 1 if generic else STYLES.index(provider)
    ending = GENERIC_ENDINGS[variant % len(GENERIC_ENDINGS)]
    opening = GENERIC_OPENINGS[variant // len(GENERIC_ENDINGS) % len(GENERIC_OPENINGS)]
    facts = symbol_facts(code, language)
    name = facts.name if facts else symbol.rsplit(".", 1)[-1]
    verb, thing = _phrase(name)
    summary = (
        f"{verb} {thing}.",
        f"{verb} {thing} and report the outcome.",
        f"{verb} {thing}{ending}" if generic else f"{verb} {thing} for the caller.",
    )[style]
    answer: dict[str, object] = {"summary": summary, "description": "", "parameters": []}
    if facts is not None:
        kind = "coroutine" if facts.is_async else ("generator" if facts.yields else "function")
        inputs = ", ".join(f"`{p}`" for p in facts.parameters) or "no arguments"
        answer["description"] = (
            f"A {kind} of {inputs}.",
            f"Works on {inputs} and keeps no state between calls.",
            f"{opening} {inputs}." if generic else f"Call it with {inputs}.",
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


class OfflineProvider(dg.ConfigurableResource):
    """A provider that drafts locally, one request at a time; each draft is recorded as one
    attempt in the call log, as a live one is."""

    name: str = Field(description="Provider name as stored on drafts, e.g. `claude`.")
    variant: int = Field(
        default=0,
        description="Which generic style a provider other than the shipped three writes in "
        "(its place among them in the providers file), so that no two write alike.",
    )
    model: str | None = Field(
        default=None,
        description="A regenerate's model override, recorded as `offline-<provider>:<model>`; "
        "None for `offline-<provider>`.",
    )

    @property
    def effective_model(self) -> str:
        own = f"offline-{self.name}"
        return own if self.model is None else f"{own}:{self.model}"

    def with_model(self, model: str) -> "OfflineProvider":
        """This provider drafting as if asked `model` (a regenerate's override, offline)."""
        return OfflineProvider(name=self.name, variant=self.variant, model=model.strip())

    def settings_hash(self) -> str:
        return settings_hash(self.effective_model, DEFAULT_MAX_OUTPUT_TOKENS, None)

    def require_key(self) -> None:
        """Offline needs no key."""

    def share_pace(self, book: PaceBook) -> None:
        """Offline sends nothing to pace."""

    def price(self) -> ModelPrice | None:
        """Offline drafts cost nothing."""
        return table_price(self.effective_model)

    def daily_budget(self) -> Decimal | None:
        """No cap: offline drafts cost nothing."""
        return None

    def generate(
        self,
        request: DraftRequest,
        *,
        on_start: OnStart | None = None,
        call_log: CallLog | None = None,
        budget: DailyBudget | None = None,
    ) -> Generation:
        """One draft. `budget` is not asked: an offline draft costs nothing, so no cap ever
        stops it."""
        log = call_log or NoCallLog()
        sent = CallAttempt(self.name, self.effective_model, 1, datetime.now(UTC))
        handle = log.call_sent(request.task_id, sent)
        if on_start is not None:
            on_start()
        began = time.perf_counter()
        text = offline_answer(
            self.name, request.symbol, request.code, request.language, self.variant
        )
        latency_ms = round((time.perf_counter() - began) * 1000)
        usage = TokenUsage(
            input_tokens=estimated_tokens(request.system) + estimated_tokens(request.prompt),
            output_tokens=estimated_tokens(text),
        )
        call = CallAttempt(
            provider=sent.provider,
            model=sent.model,
            attempt=1,
            started_at=sent.started_at,
            latency_ms=latency_ms,
            status_code=200,
            usage=usage,
            cost_usd=Decimal(0),
        )
        log.call_finished(handle, call)
        return Generation(
            provider=self.name,
            model=self.effective_model,
            text=text,
            finish_reason="stop",
            request_id=None,
            usage=usage,
            cost_usd=Decimal(0),
            latency_ms=latency_ms,
            attempts=1,
            calls=(call,),
        )

    def generate_each(
        self,
        requests: list[DraftRequest],
        on_start: OnStart | None = None,
        call_log: CallLog | None = None,
        budget: DailyBudget | None = None,
    ) -> Iterator[Outcome]:
        for request in requests:
            yield request.task_id, self.generate(request, on_start=on_start, call_log=call_log)
