"""Prompt templates, versioned: a changed template is a new version, so its hash changes.

The templates are Jinja2 files of `prompts/templates/` (one per language and symbol kind, each
setting its name, version, languages, kinds and output schema version at its top), loaded and
checked when this module is imported, so a broken file stops the definitions from loading and
names itself. A task names a template, or `docstring` to have one chosen by its language and
kind (`choose_template`).

A template has two parts. The fixed part (instructions, answer schema, a worked example) names
no task field and goes first, as the system prompt, so the providers can cache it; the task
part (symbol, file, context, code) follows as the user message. A task stores its task part
and the template version; the fixed part comes back from that version here (`fixed_part`).
"""

import ast
import hashlib
import json
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jinja2

from drafts_pipeline.errors import TaskValidationError
from drafts_pipeline.llm.estimate import DEFAULT_CHARS_PER_TOKEN
from drafts_pipeline.llm.structured_output import draft_schema
from drafts_pipeline.prompts import docstring_v2
from drafts_pipeline.prompts.context_budget import (
    PromptLimits,
    chars_for,
    estimated_tokens,
    fit_context,
)
from drafts_pipeline.syntax.grammars import canonical_language

BACKTICK_RUN = re.compile(r"`+")


def fence_for(text: str) -> str:
    """A backtick fence longer than any run of backticks in `text` (three at least), so no line
    of the text can close it and what follows stays inside the block."""
    longest = max((len(run) for run in BACKTICK_RUN.findall(text)), default=0)
    return "`" * max(3, longest + 1)


@dataclass(frozen=True)
class PromptTemplate:
    """One template file of `prompts/templates/`, loaded and checked."""

    name: str
    version: str
    system: str
    """The fixed part, the same in every request of this version."""
    jinja: jinja2.Template
    """Renders the task part (`part="task"`) from the task's fields."""
    languages: tuple[str, ...]
    """The languages it is chosen for (parser names, `canonical_language`); none: any other."""
    kinds: tuple[str, ...]
    """The symbol kinds it is chosen for: `function`, `method`, `class`."""
    output_schema_version: str
    output_schema: dict[str, Any]
    """The JSON schema of the answer (`OUTPUT_SCHEMAS`)."""
    file: str
    context_budget_tokens: int | None = None
    max_prompt_tokens: int | None = None

    def task_part(self, **fields: str) -> str:
        return self.jinja.render(part="task", **fields)


class TemplateLoadError(Exception):
    """A template file that cannot be used; the message names the file."""


TEMPLATE_DIR = Path(__file__).parent / "templates"
# What a task names to have its template chosen by its language and kind.
CHOOSE = "docstring"
KINDS = ("function", "method", "class")
# Below this, the providers would not cache the fixed part (about 1,024 tokens for the default
# models, `llm/prompt_cache.py`), with a margin for the estimate's error.
MIN_FIXED_TOKENS = 1_100
# Each output schema version, and the JSON schema it stands for: `docstring-json-v1` is the
# strict schema of `DocDraft`, the one native structured output sends.
OUTPUT_SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {"docstring-json-v1": draft_schema}
REQUIRED = ("name", "version", "languages", "kinds", "output_schema_version")
# Optional: a template's own context budget and prompt limit, over the settings'.
LIMITS = ("context_budget_tokens", "max_prompt_tokens")
# Task fields a template is checked with when it loads.
PROBE = {
    "language": "python", "symbol": "probe", "source_path": "probe.py",
    "context": "(none)", "context_fence": "```", "code": "def probe():\n    pass",
    "code_fence": "```",
}  # fmt: skip


# Versions from before the template files, still resolvable for prompts stored with them.
LEGACY_VERSIONS = ("docstring-v1", "docstring-v2")


def load_templates(directory: Path = TEMPLATE_DIR) -> dict[str, PromptTemplate]:
    """Every template of `directory` (its `*.j2` files not starting with `_`), by name.

    Raises `TemplateLoadError` naming the file when one does not parse, lacks a setting, names
    an unknown output schema, has a fixed part too short to be cached, or has a task part
    without the `Symbol:` line and the `The symbol's source:` block.
    """
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    loaded: dict[str, PromptTemplate] = {}
    for path in sorted(directory.glob("*.j2")):
        if path.name.startswith("_"):
            continue
        try:
            template = _load(environment, directory, path.name)
        except (jinja2.TemplateError, OSError, ValueError, TypeError) as error:
            where = f" line {error.lineno}" if isinstance(error, jinja2.TemplateSyntaxError) else ""
            name = getattr(error, "filename", None) or path.name
            raise TemplateLoadError(
                f"prompt template {path.name}: {type(error).__name__} in "
                f"{Path(name).name}{where}: {error}"
            ) from error
        if template.name in loaded:
            raise TemplateLoadError(
                f"prompt template {path.name}: its name {template.name!r} is also the name of "
                f"{loaded[template.name].file}"
            )
        # Stored prompts find their fixed part by version: two templates with one version
        # would draft one's tasks with the other's instructions.
        same = [t.file for t in loaded.values() if t.version == template.version]
        if same or template.version in LEGACY_VERSIONS:
            taken = same[0] if same else "an earlier built-in template"
            raise TemplateLoadError(
                f"prompt template {path.name}: its version {template.version!r} is also the "
                f"version of {taken}; give each template a version of its own"
            )
        loaded[template.name] = template
    if not loaded:
        raise TemplateLoadError(f"no prompt templates in {directory}")
    catch_all = [t.file for t in loaded.values() if not t.languages]
    if len(catch_all) != 1:
        raise TemplateLoadError(
            f"prompt templates in {directory}: {len(catch_all)} templates without languages "
            f"({', '.join(catch_all) or 'none'}); exactly one must take the other languages"
        )
    return loaded


def _load(environment: jinja2.Environment, directory: Path, file: str) -> PromptTemplate:
    template = environment.get_template(file)
    module = template.make_module({"part": "settings"})
    found: dict[str, Any] = {key: getattr(module, key, None) for key in (*REQUIRED, *LIMITS)}
    missing = [key for key in REQUIRED if found[key] is None]
    if missing:
        raise ValueError(f"it sets no {', '.join(missing)} (`{{% set ... %}}` at its top)")
    for key in ("languages", "kinds"):
        if not isinstance(found[key], list) or not all(isinstance(v, str) for v in found[key]):
            raise ValueError(f"its {key} is not a list of names")
    for key in LIMITS:
        if found[key] is not None and (not isinstance(found[key], int) or found[key] <= 0):
            raise ValueError(f"its {key} is not a positive whole number")
    unknown = set(found["kinds"]) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    schema_of = OUTPUT_SCHEMAS.get(found["output_schema_version"])
    if schema_of is None:
        raise ValueError(
            f"unknown output schema {found['output_schema_version']!r}; known: "
            f"{', '.join(OUTPUT_SCHEMAS)}"
        )
    # Blocks and includes leave runs of blank lines: one blank line between paragraphs.
    system = re.sub(r"\n{3,}", "\n\n", template.render(part="system")).strip()
    if estimated_tokens(system) < MIN_FIXED_TOKENS:
        raise ValueError(
            f"its fixed part is about {estimated_tokens(system)} tokens, under the "
            f"{MIN_FIXED_TOKENS} a provider caches"
        )
    probe = template.render(part="task", **PROBE)
    if not SYMBOL_LINE.search(probe) or "\nThe symbol's source:\n```" not in probe:
        raise ValueError("its task part lacks the `Symbol:` line or `The symbol's source:` block")
    return PromptTemplate(
        name=str(found["name"]),
        version=str(found["version"]),
        system=system,
        jinja=template,
        languages=tuple(found["languages"]),
        kinds=tuple(found["kinds"]),
        output_schema_version=str(found["output_schema_version"]),
        output_schema=schema_of(),
        file=file,
        context_budget_tokens=found["context_budget_tokens"],
        max_prompt_tokens=found["max_prompt_tokens"],
    )


SYMBOL_LINE = re.compile(r"^Symbol: .+$", re.MULTILINE)
TEMPLATES = load_templates()
FALLBACK = next(t for t in TEMPLATES.values() if not t.languages)

# The fixed part of every version a stored prompt may carry. `docstring-v1` sent its whole
# prompt as the user message: a task still holding a v1 prompt (stored before v2, and not
# rebuilt since by `pending_tasks`) is drafted as it was then, without a system prompt.
# `docstring-v2` was the one template before the template files (`docstring_v2.py`).
FIXED_PARTS = {"docstring-v1": "", "docstring-v2": docstring_v2.SYSTEM} | {
    t.version: t.system for t in TEMPLATES.values()
}
# The output schema each version asked for (v1's is not recorded).
OUTPUT_SCHEMA_VERSIONS: dict[str, str | None] = {
    "docstring-v1": None,
    "docstring-v2": "docstring-json-v1",
} | {t.version: t.output_schema_version for t in TEMPLATES.values()}


def known_template(name: str) -> bool:
    """Whether a task may name `name`: a template's name, or `docstring` (chosen for it)."""
    return name == CHOOSE or name in TEMPLATES


def template_names() -> list[str]:
    return sorted([CHOOSE, *TEMPLATES])


def output_schema_version(template_version: str | None) -> str | None:
    """The output schema version of the template version a prompt was built with."""
    return OUTPUT_SCHEMA_VERSIONS.get(template_version or "")


def symbol_kind(code: str, language: str, symbol: str) -> str:
    """`function`, `method` or `class`, as templates are chosen by it.

    Python reads the code with `ast`: a class is a class; a function whose first parameter is
    `self` or `cls`, that is a `staticmethod` or `classmethod`, or whose code is indented (a
    method's code keeps its class's indentation) is a method. A dotted symbol alone does not
    decide: imported tasks may name a function by its module (`shop.orders.total`). Other
    languages have one template for functions and methods, so the symbol decides: dotted
    (`Shelf.add`, `Shelf#add`, `Shelf::add`) is a method.
    """
    if canonical_language(language) == "python":
        try:
            body = ast.parse(textwrap.dedent(code)).body
        except SyntaxError:
            body = []
        node = body[0] if body else None
        if isinstance(node, ast.ClassDef):
            return "class"
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            positional = [*node.args.posonlyargs, *node.args.args]
            receiver = bool(positional) and positional[0].arg in ("self", "cls")
            decorated = any(
                isinstance(d, ast.Name) and d.id in ("staticmethod", "classmethod")
                for d in node.decorator_list
            )
            indented = code[:1] in (" ", "\t")
            return "method" if receiver or decorated or indented else "function"
    return "method" if re.search(r"[.#]|::", symbol) else "function"


def choose_template(
    task_id: str, template: str, language: str, symbol: str, code: str
) -> PromptTemplate:
    """The template a task names, or for `docstring` the one for its language and kind (the
    fallback template `any-symbol` for a language without one)."""
    if template != CHOOSE:
        chosen = TEMPLATES.get(template)
        if chosen is None:
            raise TaskValidationError(
                f"task {task_id}: unknown template {template!r}; known: "
                f"{', '.join(template_names())}"
            )
        return chosen
    name = canonical_language(language)
    kind = symbol_kind(code, name, symbol)
    for candidate in TEMPLATES.values():
        if name in candidate.languages and kind in candidate.kinds:
            return candidate
    return FALLBACK


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


def prompt_for(task: PromptSource, limits: PromptLimits | None = None) -> BuiltPrompt:
    """`build_prompt` with the fields of a stored task."""
    return build_prompt(
        task_id=task.id, template=task.template, language=task.language, symbol=task.symbol,
        source_path=task.source_path, code=task.code, context=task.context, limits=limits,
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
    limits: PromptLimits | None = None,
) -> BuiltPrompt:
    """The prompt for one task, its two parts and their hash, with its context cut to the
    budget (`context_budget.fit_context`). A symbol whose prompt goes over the limit without
    any context is refused (`TaskValidationError`) before any call."""
    chosen = choose_template(task_id, template, language, symbol, code)
    if not code.strip():
        raise TaskValidationError(
            f"task {task_id}: its code is empty; re-import it with the source"
        )
    limits = limits or PromptLimits.from_environment()
    budget = chosen.context_budget_tokens or limits.context_budget_tokens
    limit = chosen.max_prompt_tokens or limits.max_prompt_tokens
    code = code.rstrip()
    fields = {
        "language": language, "symbol": symbol, "source_path": source_path or "(unknown)",
        "code": code, "code_fence": fence_for(code),
    }  # fmt: skip
    bare = chosen.task_part(**fields, context="(none)", context_fence="```")
    without_context = estimated_tokens(chosen.system) + estimated_tokens(bare)
    if without_context > limit:
        source = (
            f"template {chosen.name}'s max_prompt_tokens"
            if chosen.max_prompt_tokens
            else f"DRAFTS_MAX_PROMPT_TOKENS, template {chosen.name}"
        )
        raise TaskValidationError(
            f"task {task_id}: its code alone makes a prompt of about {without_context:,} tokens "
            f"({len(code):,} characters of code; {DEFAULT_CHARS_PER_TOKEN} characters a token), "
            f"over the limit of {limit:,} ({source}); "
            "document it by hand or raise the limit"
        )
    allowed = chars_for(min(budget, limit - without_context))
    context = fit_context(context.strip(), code, allowed).strip() or "(none)"
    text = chosen.task_part(**fields, context=context, context_fence=fence_for(context))
    return BuiltPrompt(
        system=chosen.system,
        text=text,
        prompt_hash=prompt_hash(chosen.version, chosen.system, text),
        template_version=chosen.version,
    )
