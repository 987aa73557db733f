"""Prompt templates, versioned: a changed template is a new version, so its hash changes."""

import hashlib
import json
import re
from dataclasses import dataclass
from string import Template
from typing import Protocol

from drafts_pipeline.errors import TaskValidationError

DOCSTRING_V1 = Template(
    """You are writing reference documentation for one $language symbol.

Symbol: $symbol
File: $source_path

Surrounding context (the enclosing class or module header):
$context_fence$language
$context
$context_fence

The symbol's source:
$code_fence$language
$code
$code_fence

Answer with one JSON object and nothing else, of this shape:
{"summary": "one sentence, at most 120 characters, imperative mood",
 "description": "a short paragraph on behaviour and intent, may be empty",
 "parameters": [{"name": "<each parameter except self/cls, in order>", "description": "..."}],
 "returns": "what it returns, or null when it returns nothing",
 "raises": [{"exception": "ExceptionName", "when": "..."}],
 "example": "a short usage example, or null"}

Describe only what the code does. Do not mention yourself, your vendor or your model."""
)


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
    body: Template


TEMPLATES = {"docstring": PromptTemplate("docstring", "docstring-v1", DOCSTRING_V1)}


@dataclass(frozen=True)
class BuiltPrompt:
    text: str
    prompt_hash: str
    template_version: str


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
    """The prompt for one task; its hash covers the template version and the text."""
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
    digest = hashlib.sha256(json.dumps([chosen.version, text]).encode()).hexdigest()
    return BuiltPrompt(text=text, prompt_hash=digest, template_version=chosen.version)
