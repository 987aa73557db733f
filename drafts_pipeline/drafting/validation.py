"""Schema-first validation of a provider's answer, and the docstring voters read."""

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drafts_pipeline.drafting.blindness import blindness_leaks
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


def _check(ok: bool, reason: str = "") -> dict[str, Any]:
    return {"ok": ok, "reason": reason}


def _strip_fences(text: str) -> str:
    fenced = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", text, re.DOTALL)
    return fenced.group(1) if fenced else text.strip()


def validate_draft(
    text: str,
    finish_reason: str | None,
    facts: SymbolFacts | None,
    code: str = "",
    model_ids: frozenset[str] = frozenset(),
) -> DraftValidation:
    """Check the answer against the schema, the symbol's real parameters, its completeness
    and blindness; render the docstring when it parses.

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

    draft: DocDraft | None = None
    try:
        draft = DocDraft.model_validate(json.loads(_strip_fences(text)))
        checks["schema"] = _check(True)
    except json.JSONDecodeError as error:
        checks["schema"] = _check(False, f"not JSON: {error.msg} at character {error.pos}")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "answer"
        checks["schema"] = _check(
            False, f"{where}: {first['msg']} ({error.error_count()} error(s))"
        )

    if draft is not None and facts is not None:
        problems = facts.parameter_problems([p.name for p in draft.parameters])
        checks["parameters"] = _check(not problems, "; ".join(problems))

    content = render_docstring(draft) if draft else ""
    leaks = blindness_leaks(content or text, code, model_ids)
    checks["blind"] = _check(not leaks, "; ".join(map(str, leaks)))

    status = "valid" if all(c["ok"] for c in checks.values()) else "invalid"
    return DraftValidation(status, checks, content)


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
