"""Native structured output: the draft's JSON schema as each API takes it, and which form to ask.

Every request asks its API for an answer in the shape of `DocDraft` (the prompt asks in prose
too; validation reads the answer as before, whatever the form):

- `schema`: the API constrains the answer to the schema. OpenAI and Kimi: `response_format`
  of type `json_schema`, `strict`; Anthropic: `output_config.format` of type `json_schema`.
- `json`: the answer is any JSON object (`response_format` of type `json_object`); OpenAI and
  Kimi only (Anthropic has no such mode).
- `tool`: Anthropic only: one tool whose `input_schema` is the schema, forced by `tool_choice`;
  the reply's `tool_use` input is the answer.
- `off`: the request as before structured output: the answer's shape asked in prose only.

The form is picked per model (`structured_output_for`), unless the provider's
`structured_output` setting (`DRAFTS_<PROVIDER>_STRUCTURED_OUTPUT`) names one.

Strict schemas (OpenAI's `strict: true`, Anthropic's structured outputs) take a subset of JSON
Schema: every property listed in `required`, `additionalProperties: false` on every object, a
nullable field as a type union, and no length bounds (Anthropic rejects them). `strict_schema`
derives that subset from the pydantic model, so the schema sent never drifts from the one
validation applies; the length bounds go into the field's description and stay checked by
validation.
"""

import copy
import functools
import json
from typing import Any

from pydantic import BaseModel

from drafts_pipeline.drafting.validation import DocDraft

SCHEMA = "schema"
JSON = "json"
TOOL = "tool"
OFF = "off"
FORMS = (SCHEMA, JSON, TOOL, OFF)
FORMS_BY_API = {"openai": (SCHEMA, JSON, OFF), "anthropic": (SCHEMA, TOOL, OFF)}

SCHEMA_NAME = "doc_draft"
TOOL_NAME = "record_doc_draft"
TOOL_DESCRIPTION = "Record the documentation drafted for the symbol."

# Which form each model takes, by model id prefix (the longest matching prefix wins).
# Sources, read 2026-11: OpenAI's Structured Outputs guide (json_schema from gpt-4o-2024-08-06
# and gpt-4o-mini on, the o-series reasoning models and every later family; json_object for
# gpt-3.5-turbo and gpt-4/gpt-4-turbo); Moonshot's "Use Kimi API's JSON Mode" guide
# (platform.moonshot.ai/docs/guide/use-json-mode-feature-of-kimi-api), which documents
# `json_object` only: its API reference lists no `json_schema` type, so Kimi models get `json`
# until Moonshot documents more (a deployment can set `schema` for a model that takes it);
# Anthropic's structured outputs guide (platform.claude.com/docs/en/build-with-claude/
# structured-outputs) and Vertex AI's page on it: `output_config.format` on Sonnet 4.5, Opus
# 4.1 and later and Haiku 4.5; the Claude 3 models, Sonnet 4 and Opus 4 use the tool form.
OPENAI_FORMS: dict[str, str] = {
    "gpt-3.5": JSON,
    "gpt-4": JSON,
    "gpt-4-turbo": JSON,
    "gpt-4o": SCHEMA,
    "gpt-4o-2024-05-13": JSON,
    "gpt-4.1": SCHEMA,
    "gpt-4.5": SCHEMA,
    "gpt-5": SCHEMA,
    "gpt-6": SCHEMA,
    "gpt-7": SCHEMA,
    "o1": SCHEMA,
    "o1-mini": JSON,
    "o1-preview": JSON,
    "o3": SCHEMA,
    "o4": SCHEMA,
    "kimi-": JSON,
    "moonshot-": JSON,
}
# A chat model the table does not know (an OpenAI-compatible server's): a JSON object, which
# nearly every such server takes; `off` for one that rejects `response_format`.
OPENAI_DEFAULT_FORM = JSON

ANTHROPIC_FORMS: dict[str, str] = {
    "claude-3": TOOL,
    "claude-sonnet-4": TOOL,
    "claude-sonnet-4-5": SCHEMA,
    "claude-sonnet-4-6": SCHEMA,
    "claude-opus-4": TOOL,
    "claude-opus-4-1": SCHEMA,
    "claude-opus-4-5": SCHEMA,
    "claude-opus-4-6": SCHEMA,
    "claude-opus-4-7": SCHEMA,
}
# Every later Claude model takes `output_config.format`.
ANTHROPIC_DEFAULT_FORM = SCHEMA


def structured_output_for(api: str, model: str, setting: str | None) -> str:
    """The form a request to `model` over `api` (`openai` or `anthropic`) takes: the setting
    when given, else the model's by the tables above. A setting the API cannot take is a
    `ValueError` naming the forms it can."""
    allowed = FORMS_BY_API[api]
    if setting is not None and setting.strip():
        chosen = setting.strip().lower()
        if chosen not in allowed:
            raise ValueError(f"structured_output={setting!r} must be one of {', '.join(allowed)}")
        return chosen
    table, default = (
        (ANTHROPIC_FORMS, ANTHROPIC_DEFAULT_FORM)
        if api == "anthropic"
        else (OPENAI_FORMS, OPENAI_DEFAULT_FORM)
    )
    prefixes = [prefix for prefix in table if _matches(model, prefix)]
    return table[max(prefixes, key=len)] if prefixes else default


def _matches(model: str, prefix: str) -> bool:
    """`model` is `prefix` or continues it at a word break (`gpt-4` is not a prefix of
    `gpt-4o`, but is of `gpt-4-0613`)."""
    if not model.startswith(prefix):
        return False
    rest = model[len(prefix) :]
    return not rest or prefix.endswith("-") or not rest[0].isalnum()


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of `model` in the strict subset (the module's docstring): references
    inlined, titles and defaults dropped, every property required, no extra properties,
    `X | None` as a type union, length bounds said in the description."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})
    return _strict(schema, definitions)


def _strict(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _strict(copy.deepcopy(definitions[name]), definitions)
    node = {key: value for key, value in node.items() if key not in ("title", "default")}
    variants = node.pop("anyOf", None)
    if variants is not None:
        node = {**_union(variants, definitions), **node}
    bounds = [
        f"{label} {node.pop(key)}"
        for key, label in (("minLength", "at least"), ("maxLength", "at most"))
        if key in node
    ]
    if bounds:
        said = f"Length: {' and '.join(bounds)} characters."
        node["description"] = f"{node['description']} {said}" if "description" in node else said
    if node.get("type") == "object":
        properties = {
            name: _strict(value, definitions) for name, value in node["properties"].items()
        }
        node["properties"] = properties
        node["required"] = list(properties)
        node["additionalProperties"] = False
    if "items" in node:
        node["items"] = _strict(node["items"], definitions)
    return node


def _union(variants: list[dict[str, Any]], definitions: dict[str, Any]) -> dict[str, Any]:
    """`X | None`: X with `null` added to its type. Other unions stay `anyOf`."""
    others = [variant for variant in variants if variant.get("type") != "null"]
    if len(others) == 1 and len(others) < len(variants):
        single = _strict(others[0], definitions)
        if isinstance(single.get("type"), str):
            return {**single, "type": [single["type"], "null"]}
    return {"anyOf": [_strict(variant, definitions) for variant in variants]}


@functools.cache
def _draft_schema_json() -> str:
    return json.dumps(strict_schema(DocDraft))


def draft_schema() -> dict[str, Any]:
    """The strict schema of `DocDraft`, a fresh copy each call (a body may be changed)."""
    result: dict[str, Any] = json.loads(_draft_schema_json())
    return result


def openai_response_format(form: str) -> dict[str, Any] | None:
    """The Chat Completions `response_format` of a form; None for `off`."""
    if form == SCHEMA:
        return {
            "type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "schema": draft_schema(), "strict": True},
        }
    if form == JSON:
        return {"type": "json_object"}
    return None


def anthropic_fields(form: str) -> dict[str, Any]:
    """The Messages API body fields of a form: `output_config`, or `tools` and `tool_choice`."""
    if form == SCHEMA:
        return {"output_config": {"format": {"type": "json_schema", "schema": draft_schema()}}}
    if form == TOOL:
        tool = {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": draft_schema()}
        return {"tools": [tool], "tool_choice": {"type": "tool", "name": TOOL_NAME}}
    return {}
