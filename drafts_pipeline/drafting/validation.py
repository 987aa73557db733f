"""Schema-first validation of a provider's answer, and the docstring voters read."""

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drafts_pipeline.drafting.answer_json import REPAIRED, JsonReading, read_json
from drafts_pipeline.drafting.blindness import blindness_leaks
from drafts_pipeline.drafting.not_drafts import not_a_draft
from drafts_pipeline.prompts.code_facts import SymbolFacts

INCOMPLETE_FINISH_REASONS = {"max_tokens", "length", "model_context_window_exceeded"}
REFUSAL_FINISH_REASONS = {"refusal", "content_filter"}


class ParameterDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)


class RaisesDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exception: str = Field(min_length=1)
    when: str = Field(min_length=1)


class DocDraft(BaseModel):
    """What a provider must answer: the prompt template asks for exactly this shape."""

    model_config = ConfigDict(extra="forbid")
    summary: str = Field(min_length=1, max_length=200)
    description: str = ""
    parameters: list[ParameterDoc] = []
    returns: str | None = None
    raises: list[RaisesDoc] = []
    example: str | None = None


@dataclass(frozen=True)
class DraftValidation:
    """The verdict: `valid`, or `invalid` with the failing checks; `checks` is stored as JSON."""

    status: str
    checks: dict[str, dict[str, Any]]
    content: str

    @property
    def reasons(self) -> list[str]:
        return failed_checks(self.checks)


def failed_checks(checks: dict[str, dict[str, Any]]) -> list[str]:
    """`name: reason` of each failed check of a verdict (a stored draft's `validation` too)."""
    return [f"{name}: {c['reason']}" for name, c in checks.items() if not c["ok"]]


def problem_in(status: str, checks: dict[str, dict[str, Any]]) -> str | None:
    """Why a stored draft is not valid (its failed checks); None when it is valid."""
    if status == "valid":
        return None
    return "; ".join(failed_checks(checks)) or status


def leak_in(checks: dict[str, dict[str, Any]]) -> str | None:
    """Why a verdict failed blindness (the draft names a provider or model); None if it did not."""
    blind = checks.get("blind")
    return None if blind is None or blind["ok"] else str(blind["reason"])


def repair_in(checks: dict[str, Any]) -> str | None:
    """What was repaired in a stored draft's answer to read its JSON (`json-repair`); None
    when it was read strictly or from a fenced block (or before answers were read leniently)."""
    reading = checks.get("json")
    if not isinstance(reading, dict) or reading.get("read_as") != REPAIRED:
        return None
    return str(reading["reason"])


def _check(ok: bool, reason: str = "") -> dict[str, Any]:
    return {"ok": ok, "reason": reason}


def _json_check(reading: JsonReading) -> dict[str, Any]:
    """How the answer's JSON was read: passed when it was, with the way (`read_as`) and the
    seed's two flags; a repaired answer passes, its reason says what was mended."""
    return {
        **_check(reading.lenient_ok, reading.note),
        "read_as": reading.read_as,
        "strict_json_ok": reading.strict_ok,
        "lenient_json_ok": reading.lenient_ok,
    }


def validate_draft(
    text: str,
    finish_reason: str | None,
    facts: SymbolFacts | None,
    code: str = "",
    model_ids: frozenset[str] = frozenset(),
) -> DraftValidation:
    """Check the answer against the schema, the symbol's real parameters, its completeness
    and blindness; render the docstring when it parses.

    The answer's JSON is read strictly, else from a fenced block, else repaired (`read_json`);
    the `json` check records which. An answer cut by the token limit stays invalid however
    well its JSON could be mended. An answer that is a question, a refusal or the draft of
    another symbol fails the `answer` check (`not_a_draft`).

    Blindness is judged on what would be stored and shown (the rendered docstring, else the
    raw answer) by `blindness_leaks`, the rule the voting-ready set's check applies too: only
    the symbol's own `code` can make a vendor name acceptable, never the task's context.
    """
    checks: dict[str, dict[str, Any]] = {}
    if finish_reason in INCOMPLETE_FINISH_REASONS:
        checks["complete"] = _check(
            False, f"cut by the token limit (finish reason {finish_reason})"
        )
    elif finish_reason in REFUSAL_FINISH_REASONS:
        checks["complete"] = _check(False, f"refused (finish reason {finish_reason})")
    else:
        checks["complete"] = _check(True)

    reading = read_json(text)
    parsed: dict[str, dict[str, Any]] = {"json": _json_check(reading)}
    draft: DocDraft | None = None
    if reading.lenient_ok:
        try:
            draft = DocDraft.model_validate(reading.value)
            parsed["schema"] = _check(True)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "answer"
            parsed["schema"] = _check(
                False, f"{where}: {first['msg']} ({error.error_count()} error(s))"
            )
    if draft is None:
        off_task = not_a_draft(_words_of(reading.value, text), None, facts, code)
    else:
        prose = "\n\n".join([draft.summary, draft.description, draft.returns or ""])
        off_task = not_a_draft(prose, [p.name for p in draft.parameters], facts, code)
    checks["answer"] = _check(off_task is None, off_task or "")
    checks |= parsed

    if draft is not None and facts is not None:
        problems = facts.parameter_problems([p.name for p in draft.parameters])
        checks["parameters"] = _check(not problems, "; ".join(problems))

    content = render_docstring(draft) if draft else ""
    leaks = blindness_leaks(content or text, code, model_ids)
    checks["blind"] = _check(not leaks, "; ".join(map(str, leaks)))

    status = "valid" if all(c["ok"] for c in checks.values()) else "invalid"
    return DraftValidation(status, checks, content)


def _words_of(value: Any, text: str) -> str:
    """The prose of an answer that is no draft: the strings of the object read from it (a
    question put in a JSON field of its own), else the whole answer."""
    if isinstance(value, dict):
        return "\n\n".join(item for item in value.values() if isinstance(item, str))
    return text


def render_docstring(draft: DocDraft) -> str:
    """The draft as a Google-style docstring: what voters read side by side."""
    parts = [draft.summary.strip()]
    if draft.description.strip():
        parts.append(draft.description.strip())
    if draft.parameters:
        parts.append(
            "Args:\n" + "\n".join(f"    {p.name}: {p.description}" for p in draft.parameters)
        )
    if draft.returns:
        parts.append(f"Returns:\n    {draft.returns}")
    if draft.raises:
        parts.append("Raises:\n" + "\n".join(f"    {r.exception}: {r.when}" for r in draft.raises))
    if draft.example:
        example = "\n".join(f"    {line}" for line in draft.example.strip().splitlines())
        parts.append(f"Example:\n{example}")
    return "\n\n".join(parts)
