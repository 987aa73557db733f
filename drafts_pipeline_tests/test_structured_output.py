"""Native structured output: the strict schema derived from `DocDraft`, the form each model gets,
the exact request fields per provider (checked against the SDKs' request types and the fake
server's checks of the real APIs' rules), the tool-use answer read as a draft, batch items, and
the settings hash."""

import json
from collections.abc import Iterator
from typing import Any, get_type_hints

import anthropic
import openai
import pytest
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from pydantic import BaseModel, TypeAdapter

from drafts_pipeline.drafting.validation import DocDraft, validate_draft
from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.llm.provider import DraftRequest, LiveProvider, settings_hash
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS, ProviderSpec, provider_resource
from drafts_pipeline.llm.structured_output import (
    SCHEMA_NAME,
    TOOL_NAME,
    draft_schema,
    strict_schema,
    structured_output_for,
)
from drafts_pipeline.prompts.code_facts import symbol_facts
from drafts_pipeline.prompts.templates import build_prompt
from drafts_pipeline_tests.fake_clock import FakeTime
from drafts_pipeline_tests.fake_providers import WIRES, FakeProviderServer

CODE = """def parse_config(path: str, strict: bool = False) -> dict:
    if not path:
        raise ValueError("empty path")
    return {"path": path, "strict": strict}
"""
SPECS = {spec.name: spec for spec in SHIPPED_PROVIDERS}
SDK_TYPES: dict[str, Any] = {
    "anthropic-messages": MessageCreateParamsNonStreaming,
    "openai-chat": CompletionCreateParamsNonStreaming,
}


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


def draft_request(position: int = 0) -> DraftRequest:
    symbol = f"cfg.parse_config_{position}"
    prompt = build_prompt(
        task_id=symbol,
        template="docstring",
        language="python",
        symbol=symbol,
        source_path="cfg.py",
        code=CODE,
        context='"""Configuration."""',
    )
    return DraftRequest(
        task_id=symbol, prompt=prompt.text, symbol=symbol, code=CODE, system=prompt.system
    )


def live(fake: FakeProviderServer, name: str, **overrides: Any) -> LiveProvider:
    return fake.resource(name, strict=WIRES[name] != "moonshot", clock=FakeTime(), **overrides)


def sent(fake: FakeProviderServer, name: str) -> dict[str, Any]:
    body: dict[str, Any] = fake.script(name).requests[-1].body
    return body


def check_sdk_type(spec: ProviderSpec, body: dict[str, Any]) -> None:
    """The body validates as the SDK's own request type, and names no field the type lacks."""
    params = SDK_TYPES[spec.api]
    TypeAdapter(params).validate_python(body)
    assert set(body) <= set(get_type_hints(params))


def objects_in(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield node
        for value in node.values():
            yield from objects_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from objects_in(value)


# --- the strict schema -----------------------------------------------------------------------


class Step(BaseModel):
    name: str
    note: str | None = None


class Plan(BaseModel):
    title: str = "untitled"
    steps: list[Step] = []
    owner: Step | None = None
    weight: int | str = 0


def test_the_strict_schema_closes_every_object_and_requires_every_property() -> None:
    schema = strict_schema(Plan)

    assert "$defs" not in json.dumps(schema) and "$ref" not in json.dumps(schema)
    assert schema["required"] == ["title", "steps", "owner", "weight"]
    step = schema["properties"]["steps"]["items"]
    assert step == {
        "type": "object",
        "properties": {"name": {"type": "string"}, "note": {"type": ["string", "null"]}},
        "required": ["name", "note"],
        "additionalProperties": False,
    }
    # A nullable model is the model's object with null beside it; other unions stay anyOf.
    assert schema["properties"]["owner"] == {**step, "type": ["object", "null"]}
    assert schema["properties"]["weight"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert all(node["additionalProperties"] is False for node in objects_in(schema))
    assert "title" not in schema["properties"]["title"] and "default" not in json.dumps(schema)


def test_the_draft_schema_is_doc_draft_in_the_strict_subset() -> None:
    schema = draft_schema()

    assert set(schema["properties"]) == set(DocDraft.model_fields)
    assert schema["required"] == list(DocDraft.model_fields)
    for node in objects_in(schema):
        assert node["additionalProperties"] is False
        assert node["required"] == list(node["properties"])
    assert schema["properties"]["returns"]["type"] == ["string", "null"]
    # Length bounds are said, not constrained (Anthropic rejects them); validation checks them.
    summary = schema["properties"]["summary"]
    assert "maxLength" not in summary and "200" in summary["description"]
    assert draft_schema() is not draft_schema()


@pytest.mark.parametrize(
    ("api", "model", "form"),
    [
        ("openai", "gpt-6.2-sol", "schema"),
        ("openai", "gpt-4o-mini", "schema"),
        ("openai", "gpt-4o-2024-05-13", "json"),
        ("openai", "gpt-4-0613", "json"),
        ("openai", "gpt-4.1", "schema"),
        ("openai", "o3-mini", "schema"),
        ("openai", "kimi-k3", "json"),
        ("openai", "moonshot-v1-8k", "json"),
        ("openai", "some-local-model", "json"),
        ("anthropic", "claude-sonnet-5-5", "schema"),
        ("anthropic", "claude-sonnet-4-5-20250929", "schema"),
        ("anthropic", "claude-sonnet-4-20250514", "tool"),
        ("anthropic", "claude-opus-4-0", "tool"),
        ("anthropic", "claude-3-5-haiku-latest", "tool"),
    ],
)
def test_each_model_gets_its_form(api: str, model: str, form: str) -> None:
    assert structured_output_for(api, model, None) == form


def test_the_setting_overrides_the_model_and_a_form_the_api_lacks_is_refused() -> None:
    assert structured_output_for("openai", "gpt-6.2-sol", " JSON ") == "json"
    assert structured_output_for("anthropic", "claude-sonnet-5-5", "tool") == "tool"
    assert structured_output_for("openai", "kimi-k3", "off") == "off"
    with pytest.raises(ValueError, match="one of schema, tool, off"):
        structured_output_for("anthropic", "claude-sonnet-5-5", "json")
    with pytest.raises(ValueError, match="one of schema, json, off"):
        structured_output_for("openai", "gpt-6.2-sol", "tool")


def test_a_bad_setting_in_the_environment_fails_the_run_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRAFTS_CLAUDE_STRUCTURED_OUTPUT", "json")
    resource = provider_resource(SPECS["claude"], "live")
    assert isinstance(resource, LiveProvider) and resource.structured_output == "json"

    with pytest.raises(ConfigurationError, match="DRAFTS_CLAUDE_STRUCTURED_OUTPUT"):
        resource.setup_for_execution(None)  # type: ignore[arg-type]


# --- request shapes against the fake server --------------------------------------------------


def test_openai_asks_for_the_strict_draft_schema(fake: FakeProviderServer) -> None:
    generation = live(fake, "openai").generate(draft_request())

    body = sent(fake, "openai")
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "schema": strict_schema(DocDraft), "strict": True},
    }
    check_sdk_type(SPECS["openai"], body)
    assert validate_draft(generation.text, generation.finish_reason, None).status == "valid"


def test_kimi_asks_for_a_json_object(fake: FakeProviderServer) -> None:
    live(fake, "kimi").generate(draft_request())

    body = sent(fake, "kimi")
    assert body["response_format"] == {"type": "json_object"}
    check_sdk_type(SPECS["kimi"], body)


def test_kimi_set_to_schema_sends_the_schema(fake: FakeProviderServer) -> None:
    live(fake, "kimi", structured_output="schema").generate(draft_request())

    assert sent(fake, "kimi")["response_format"]["json_schema"]["schema"] == draft_schema()


def test_claude_asks_for_the_draft_schema_as_output_config(fake: FakeProviderServer) -> None:
    generation = live(fake, "claude").generate(draft_request())

    body = sent(fake, "claude")
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": draft_schema()}}
    assert "tools" not in body and "tool_choice" not in body
    check_sdk_type(SPECS["claude"], body)
    assert generation.finish_reason == "end_turn"


def test_claude_in_tool_form_forces_one_tool_and_its_input_is_the_draft(
    fake: FakeProviderServer,
) -> None:
    generation = live(fake, "claude", structured_output="tool").generate(draft_request())

    body = sent(fake, "claude")
    assert body["tools"] == [
        {
            "name": TOOL_NAME,
            "description": "Record the documentation drafted for the symbol.",
            "input_schema": draft_schema(),
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    assert "output_config" not in body
    check_sdk_type(SPECS["claude"], body)
    (block,) = fake.script("claude").requests[-1].response_body["content"]
    assert block["type"] == "tool_use" and block["name"] == TOOL_NAME
    # The tool's input, as JSON text, is the answer validated as any other.
    assert json.loads(generation.text) == block["input"]
    assert generation.finish_reason == "tool_use"
    verdict = validate_draft(
        generation.text, generation.finish_reason, symbol_facts(CODE, "python"), CODE
    )
    assert verdict.status == "valid", verdict.reasons
    assert verdict.checks["json"]["strict_json_ok"] is True
    assert "Args:\n    path:" in verdict.content


@pytest.mark.parametrize("name", list(SPECS))
def test_off_sends_the_request_as_before(fake: FakeProviderServer, name: str) -> None:
    live(fake, name, structured_output="off").generate(draft_request())

    body = sent(fake, name)
    assert not {"response_format", "output_config", "tools", "tool_choice"} & set(body)


@pytest.mark.parametrize("name", list(SPECS))
def test_a_batch_item_carries_the_same_fields(fake: FakeProviderServer, name: str) -> None:
    provider = live(fake, name)
    api = provider.batch_api()

    submission = api.submit([draft_request(0), draft_request(1)])
    assert api.state(submission.batch_id).ended
    items = list(api.results(submission.batch_id))

    (batch,) = fake.script(name).batches
    bodies = [body for _, body in batch.items]
    assert bodies == [provider.request_body(draft_request(p)) for p in (0, 1)]
    field = "output_config" if SPECS[name].api == "anthropic-messages" else "response_format"
    assert all(body[field] == bodies[0][field] for body in bodies) and bodies[0][field]
    assert [item.kind for item in items] == ["succeeded", "succeeded"]


def test_a_tool_form_batch_item_is_read_as_a_draft(fake: FakeProviderServer) -> None:
    api = live(fake, "claude", structured_output="tool").batch_api()

    submission = api.submit([draft_request()])
    assert api.state(submission.batch_id).ended
    (item,) = api.results(submission.batch_id)

    assert item.reply is not None and item.reply.finish_reason == "tool_use"
    assert validate_draft(item.reply.text, "tool_use", None).status == "valid"


# --- the fake refuses what the real APIs refuse ----------------------------------------------

MESSAGES = [{"role": "user", "content": "Document it as JSON."}]
OPEN_OBJECT = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
BOUNDED = {
    **OPEN_OBJECT,
    "properties": {"a": {"type": "string", "minLength": 1}},
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("response_format", "said"),
    [
        ({"type": "xml"}, "Supported values"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}, "name"),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": OPEN_OBJECT, "strict": True},
            },
            "'additionalProperties' is required",
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "x",
                    "schema": {**OPEN_OBJECT, "additionalProperties": False, "required": []},
                    "strict": True,
                },
            },
            "Missing 'a'",
        ),
    ],
)
def test_a_malformed_response_format_is_a_400(
    fake: FakeProviderServer, response_format: dict[str, Any], said: str
) -> None:
    client = openai.OpenAI(
        api_key=fake.script("openai").api_key, base_url=fake.base_url("openai"), max_retries=0
    )
    with pytest.raises(openai.BadRequestError, match=said):
        client.chat.completions.create(
            model="gpt-6.2-sol",
            messages=MESSAGES,  # type: ignore[arg-type]
            response_format=response_format,  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"output_config": {"format": {"type": "json_object"}}}, "json_schema"),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": OPEN_OBJECT}}},
            "additionalProperties",
        ),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": BOUNDED}}},
            "'minLength' is not supported",
        ),
        (
            {
                "tools": [{"name": "t", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "tool", "name": "other"},
            },
            "not found in tools",
        ),
    ],
)
def test_malformed_structured_fields_on_messages_are_a_400(
    fake: FakeProviderServer, fields: dict[str, Any], said: str
) -> None:
    client = anthropic.Anthropic(
        api_key=fake.script("claude").api_key, base_url=fake.base_url("claude"), max_retries=0
    )
    with pytest.raises(anthropic.BadRequestError, match=said):
        client.messages.create(
            model="claude-sonnet-5-5",
            max_tokens=100,
            messages=MESSAGES,  # type: ignore[arg-type]
            extra_body=fields,
        )


# --- the settings hash -----------------------------------------------------------------------


def test_the_settings_hash_follows_the_request_shape(fake: FakeProviderServer) -> None:
    spec = SPECS["openai"]
    hashes = {
        form: live(fake, "openai", structured_output=form).settings_hash()
        for form in ("schema", "json", "off")
    }

    assert len(set(hashes.values())) == 3
    # `off` is the request as before structured output: drafts made then keep their hash.
    assert hashes["off"] == settings_hash(spec.default_model, 8192, None)
    assert live(fake, "openai").settings_hash() == hashes["schema"]
