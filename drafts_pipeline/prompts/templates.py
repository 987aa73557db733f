"""Prompt templates, versioned: a changed template is a new version, so its hash changes.

A template has two parts. The fixed part (instructions, answer schema, a worked example) names
no task field and goes first, as the system prompt, so the providers can cache it; the task
part (symbol, file, context, code) follows as the user message. A task stores its task part
and the template version; the fixed part comes back from that version here (`fixed_part`).
"""

import hashlib
import json
import re
from dataclasses import dataclass
from string import Template
from typing import Protocol

from drafts_pipeline.errors import TaskValidationError
from drafts_pipeline.prompts import docstring_v2

BACKTICK_RUN = re.compile(r"`+")


def fence_for(text: str) -> str:
    """A backtick fence longer than any run of backticks in `text` (three at least), so no line
    of the text can close it and what follows stays inside the block."""
    longest = max((len(run) for run in BACKTICK_RUN.findall(text)), default=0)
    return "`" * max(3, longest + 1)


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    system: str
    """The fixed part, the same in every request of this version."""
    body: Template
    """The task part, filled from the task's fields."""


TEMPLATES = {
    "docstring": PromptTemplate("docstring", "docstring-v2", docstring_v2.SYSTEM, docstring_v2.TASK)
}

# The fixed part of every version a stored prompt may carry. `docstring-v1` sent its whole
# prompt as the user message: a task still holding a v1 prompt (stored before v2, and not
# rebuilt since by `pending_tasks`) is drafted as it was then, without a system prompt.
FIXED_PARTS = {"docstring-v1": ""} | {t.version: t.system for t in TEMPLATES.values()}


def fixed_part(task_id: str, template_version: str | None) -> str:
    """The fixed part of the prompt version a task's stored prompt was built with."""
    if template_version not in FIXED_PARTS:
        raise TaskValidationError(
            f"task {task_id}: its prompt was built with template version "
            f"{template_version!r}, which this code does not know "
            f"({', '.join(sorted(FIXED_PARTS))}); materialise pending_tasks for it to rebuild "
            "the prompt"
        )
    return FIXED_PARTS[template_version]


def full_prompt(system: str, text: str) -> str:
    """The whole prompt as the model reads it: the fixed part, a blank line, the task part."""
    return f"{system}\n\n{text}" if system else text


@dataclass(frozen=True)
class BuiltPrompt:
    system: str
    """The fixed part, sent first as the system prompt."""
    text: str
    """The task part, sent as the user message; what a task stores as its prompt."""
    prompt_hash: str
    template_version: str

    @property
    def full_text(self) -> str:
        return full_prompt(self.system, self.text)


class PromptSource(Protocol):
    """What a prompt is built from: a stored task, or anything with its fields."""

    id: str
    template: str
    language: str
    symbol: str
    source_path: str | None
    code: str
    context: str


def prompt_for(task: PromptSource) -> BuiltPrompt:
    """`build_prompt` with the fields of a stored task."""
    return build_prompt(
        task_id=task.id, template=task.template, language=task.language, symbol=task.symbol,
        source_path=task.source_path, code=task.code, context=task.context,
    )  # fmt: skip


def prompt_hash(template_version: str, system: str, text: str) -> str:
    """What reuse keys on: the template version, the fixed part and the task part."""
    return hashlib.sha256(json.dumps([template_version, system, text]).encode()).hexdigest()


def build_prompt(
    *,
    task_id: str,
    template: str,
    language: str,
    symbol: str,
    source_path: str | None,
    code: str,
    context: str,
) -> BuiltPrompt:
    """The prompt for one task, its two parts and their hash."""
    chosen = TEMPLATES.get(template)
    if chosen is None:
        raise TaskValidationError(
            f"task {task_id}: unknown template {template!r}; known: {', '.join(sorted(TEMPLATES))}"
        )
    if not code.strip():
        raise TaskValidationError(
            f"task {task_id}: its code is empty; re-import it with the source"
        )
    context = context.strip() or "(none)"
    code = code.rstrip()
    text = chosen.body.substitute(
        language=language,
        symbol=symbol,
        source_path=source_path or "(unknown)",
        context=context,
        context_fence=fence_for(context),
        code=code,
        code_fence=fence_for(code),
    )
    return BuiltPrompt(
        system=chosen.system,
        text=text,
        prompt_hash=prompt_hash(chosen.version, chosen.system, text),
        template_version=chosen.version,
    )
