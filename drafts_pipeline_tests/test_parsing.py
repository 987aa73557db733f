"""Reading a provider's answer: strict JSON, a fenced block in prose, a repaired object, two
objects, a cut answer; and answers that are no draft (a question, a refusal, another symbol's
documentation), each with its verdict and reason, and the cases that must stay valid."""

import json
from pathlib import Path

import dagster as dg
import pytest

from drafts_pipeline.drafting.answer_json import read_json, top_level_objects
from drafts_pipeline.drafting.validation import DraftValidation, repair_in, validate_draft
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.prompts.code_facts import symbol_facts
from drafts_pipeline.store import DraftStore
from drafts_pipeline_tests.factories import make_task
from drafts_pipeline_tests.fake_providers import FakeProviderServer
from drafts_pipeline_tests.graph_runs import FAST, latest_metadata, materialize_tasks

LOAD_CONFIG = (
    "def load_config(path, strict=False):\n"
    "    text = read_text(path)\n"
    "    return parse(text, strict=strict)\n"
)


def answer(summary: str = "Load the configuration file at `path`.", **fields: object) -> str:
    """A draft of `load_config` as JSON, documenting both its parameters unless told."""
    body: dict[str, object] = {
        "summary": summary,
        "description": "",
        "parameters": [
            {"name": "path", "description": "Where the file is."},
            {"name": "strict", "description": "Refuse unknown keys."},
        ],
        "returns": "The settings, by name.",
    }
    return json.dumps(body | fields)


def verdict(text: str, finish_reason: str = "stop", code: str = LOAD_CONFIG) -> DraftValidation:
    return validate_draft(text, finish_reason, symbol_facts(code), code)


def reading(result: DraftValidation) -> tuple[str | None, bool, bool]:
    check = result.checks["json"]
    return check["read_as"], check["strict_json_ok"], check["lenient_json_ok"]


# Reading the JSON.


def test_a_strict_answer_is_read_as_it_is() -> None:
    result = verdict(answer())

    assert result.status == "valid", result.reasons
    assert reading(result) == ("strict", True, True)
    assert result.checks["json"] == {
        "ok": True,
        "reason": "",
        "read_as": "strict",
        "strict_json_ok": True,
        "lenient_json_ok": True,
    }
    assert repair_in(result.checks) is None


@pytest.mark.parametrize(
    "text",
    [
        f"Here is the documentation:\n\n```json\n{answer()}\n```\n\nLet me know if it helps!",
        f"```json\n{answer()}\n```",
        f"Sure.\n~~~\n{answer()}\n~~~",
        f"Example:\n```python\nload_config('a.toml')\n```\nThe draft:\n```JSON\n{answer()}```",
    ],
    ids=["prose-around", "fence-only", "tildes", "second-block"],
)
def test_a_fenced_block_in_prose_is_read_and_the_draft_is_valid(text: str) -> None:
    result = verdict(text)

    assert result.status == "valid", result.reasons
    assert reading(result) == ("fenced", False, True)
    assert result.checks["json"]["reason"] == "read from a fenced block"
    assert result.content.startswith("Load the configuration file at `path`.")
    assert repair_in(result.checks) is None


@pytest.mark.parametrize(
    ("text", "defect"),
    [
        (answer()[:-1] + ",}", "Expecting property name enclosed in double quotes"),
        (answer().replace('keys."}]', 'keys."},]'), "Expecting value"),
        (answer().replace('"', "'"), "Expecting property name enclosed in double quotes"),
        (answer()[:-1], "Expecting ',' delimiter"),
        (f"The draft: {answer()} Hope this helps.", "Expecting value (character 0)"),
        (f"```json\n{answer()[:-1]},}}\n```", "in the fenced block"),
    ],
    ids=["trailing-comma", "comma-in-list", "single-quotes", "no-closing-brace", "bare-in-prose",
         "fenced-trailing-comma"],
)  # fmt: skip
def test_a_mendable_answer_is_repaired_valid_and_marked(text: str, defect: str) -> None:
    result = verdict(text)

    assert result.status == "valid", result.reasons
    assert reading(result) == ("repaired", False, True)
    repair = repair_in(result.checks)
    assert repair is not None and repair.startswith("repaired with json-repair; strictly not JSON")
    assert defect in repair
    assert result.content.startswith("Load the configuration file at `path`.")


def test_a_truncated_answer_stays_invalid_though_its_json_could_be_closed() -> None:
    cut = answer()[:120]
    assert read_json(cut).read_as == "repaired"  # json-repair would close it ...

    for finish_reason in ("length", "max_tokens"):
        result = verdict(cut, finish_reason)  # ... but the provider said it ran out of tokens

        assert result.status == "invalid"
        assert result.reasons[0] == (
            f"complete: cut by the token limit (finish reason {finish_reason})"
        )
        assert reading(result) == ("repaired", False, True)


@pytest.mark.parametrize(
    ("text", "count", "what"),
    [
        (answer() + "\n" + answer("Load the settings."), 2, "JSON objects"),
        (answer() + answer("Load the settings.") + answer("Read it."), 3, "JSON objects"),
        (
            f"Short:\n```json\n{answer()}\n```\nLonger:\n```json\n{answer('Load it.')}\n```",
            2,
            "fenced JSON objects",
        ),
        (f"```json\n{answer()}\n{answer('Load it.')}\n```", 2, "JSON objects"),
        (answer()[:-1] + ",}\n" + answer("Load it."), 2, "JSON objects"),
    ],
    ids=["side-by-side", "three", "two-blocks", "one-block", "one-broken"],
)
def test_two_json_objects_are_ambiguous_and_invalid(text: str, count: int, what: str) -> None:
    """Either object may be the draft the model meant: none is picked. json-repair alone would
    keep the last of two objects with the same keys, read as an update of the first."""
    result = verdict(text)

    assert result.status == "invalid"
    assert result.checks["json"]["reason"] == (
        f"ambiguous: the answer holds {count} {what}, and any of them may be the draft"
    )
    assert reading(result) == (None, False, False)
    assert "schema" not in result.checks
    assert result.content == ""


def test_an_answer_without_json_is_invalid_with_the_strict_error() -> None:
    result = verdict("The function loads the configuration.")

    assert result.status == "invalid"
    assert result.reasons == ["json: not JSON: Expecting value (character 0)"]
    assert reading(result) == (None, False, False)


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ('{"summary": "Adds.", "returns": ' + "9" * 4400 + "}", "integer string conversion"),
        ("[" * 100_000 + "]" * 100_000, "recursion"),
        ("```json\n" + "[" * 100_000 + "]" * 100_000 + "\n```", "recursion"),
    ],
    ids=["a-4400-digit-number", "nesting-past-the-recursion-limit", "the-same-fenced"],
)
def test_json_python_will_not_read_is_an_invalid_draft_not_an_error(answer: str, said: str) -> None:
    """Valid JSON syntax that `json.loads` refuses with another error than a decode error: the
    draft is invalid, with the reason, and the step goes on."""
    result = verdict(answer)

    assert result.status == "invalid"
    [reason] = result.reasons
    assert reason.startswith("json: not readable as JSON: ") and said in reason


def test_json_that_is_no_draft_fails_the_schema() -> None:
    result = verdict(json.dumps({"doc": "Load the configuration."}))

    assert reading(result) == ("strict", True, True)
    assert result.reasons == ["schema: summary: Field required (2 error(s))"]


def test_objects_are_counted_at_the_top_level_only() -> None:
    assert top_level_objects('{"a": {"b": "}{"}, "c": "\\"{"}') == 1
    assert top_level_objects('Set {x} then {"a": 1}') == 2
    assert top_level_objects("{'a': 1") == 0


# Answers that are no draft.


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "Could you share more context about where this function is called?",
            "a clarifying question, not a draft: "
            "'could you share more context about where this function is called?'",
        ),
        ("Which module is `parse` from? Do you have its code?", "a clarifying question"),
        ("Please provide the full source of the module.", "a clarifying question"),
        ("I need more context to document this function.", "a clarifying question"),
        (answer("Could you tell me what `strict` is for?"), "a clarifying question"),
        (json.dumps({"question": "Can you paste the caller?"}), "a clarifying question"),
    ],
)
def test_a_clarifying_question_is_invalid(text: str, reason: str) -> None:
    result = verdict(text)

    assert result.status == "invalid"
    assert result.reasons[0].startswith(f"answer: {reason}"), result.reasons


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("I cannot help with that.", "i cannot help"),
        ("I'm sorry, but I can't document this function.", "i'm sorry"),
        ("Sorry, that is not something I can do.", "sorry"),
        ("Unfortunately I am unable to write it.", "unfortunately i am unable to write"),
        ("I won\u2019t produce documentation for this.", "i won't produce"),
        (answer("I apologise, but I cannot describe this function."), "i apologise"),
        (answer("Load it.", description="I'm afraid the code is incomplete."), "i'm afraid"),
    ],
)  # fmt: skip
def test_a_refusal_in_text_is_invalid(text: str, phrase: str) -> None:
    result = verdict(text)

    assert result.status == "invalid"
    assert result.checks["answer"] == {
        "ok": False,
        "reason": f"a refusal, not a draft: {phrase!r}",
    }


def test_another_symbols_documentation_is_invalid() -> None:
    """The model documented `parse_config` from the context: it names it, never names
    `load_config`, and documents a parameter `load_config` does not take."""
    text = answer(
        "Parse configuration text with `parse_config()`.",
        parameters=[
            {"name": "text", "description": "The configuration text."},
            {"name": "strict", "description": "Refuse unknown keys."},
        ],
    )
    result = verdict(text)

    assert result.status == "invalid"
    assert result.reasons[0] == (
        "answer: documents `parse_config`, not the task's `load_config`: "
        "text is not in its signature"
    )
    assert result.checks["parameters"]["reason"] == "missing path; not in the signature: text"


@pytest.mark.parametrize(
    ("summary", "code"),
    [
        ("Return None when the file cannot be read.", LOAD_CONFIG),
        ("Load the settings; keys that cannot be parsed raise ValueError.", LOAD_CONFIG),
        ("Load the settings; I/O errors are not caught.", LOAD_CONFIG),
        ("Please provide an absolute `path`; relative ones are not resolved.", LOAD_CONFIG),
        ("Load the settings the way `parse_config` does, from a file.", LOAD_CONFIG),
        ("Read the file with `read_text()` and `parse()` it.", LOAD_CONFIG),
        ("Is `path` a configuration file?", "def load_config(path, strict=False): ..."),
        (
            "Ask 'Do you want to continue?' and return the answer.",
            "def load_config(path, strict=False):\n    return input('Do you want to continue?')\n",
        ),
    ],
    ids=["cannot-be-read", "cannot-be-parsed", "i/o", "please-provide-a-path", "names-another",
         "names-callees", "predicate-question", "quoted-question"],
)  # fmt: skip
def test_a_real_draft_that_sounds_like_one_stays_valid(summary: str, code: str) -> None:
    result = verdict(answer(summary), code=code)

    assert result.status == "valid", result.reasons
    assert result.checks["answer"] == {"ok": True, "reason": ""}


def test_a_renamed_parameter_is_a_parameter_problem_not_another_symbol() -> None:
    """Naming another function and renaming a parameter each happen in drafts of the right
    symbol: alone, neither makes the answer another symbol's."""
    renamed = [
        {"name": "file_path", "description": "Where the file is."},
        {"name": "strict", "description": "Refuse unknown keys."},
    ]
    for summary in ("Load the configuration file.", "Load `load_config` input like `dump`."):
        result = verdict(answer(summary, parameters=renamed))

        assert result.status == "invalid"
        assert result.checks["answer"]["ok"], result.reasons
        assert result.reasons == ["parameters: missing path; not in the signature: file_path"]


# The pipeline: a repaired draft is stored valid and shown as repaired.


def test_a_repaired_draft_is_stored_valid_and_its_partition_says_so(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
) -> None:
    task_id = "settings.load_config"
    store.add_tasks([make_task(task_id, code=LOAD_CONFIG, context="")])
    answers = {
        "claude": answer()[:-1] + ",}",
        "openai": f"Here you are:\n```json\n{answer()}\n```",
        "kimi": "Could you share the code of `parse`?",
    }
    for spec in SHIPPED_PROVIDERS:
        fake_providers.script(spec.name).answer = lambda _prompt, text=answers[spec.name]: text
    providers = {
        spec.resource_key: fake_providers.resource(spec.name, **FAST) for spec in SHIPPED_PROVIDERS
    }

    result = materialize_tasks(instance, store.database_url, [task_id], providers=providers)

    assert result.success
    drafts = {
        spec.name: store.latest_drafts([task_id], spec.name)[task_id] for spec in SHIPPED_PROVIDERS
    }
    assert {name: draft.status for name, draft in drafts.items()} == {
        "claude": "valid", "openai": "valid", "kimi": "invalid"
    }  # fmt: skip
    assert drafts["claude"].validation["json"]["read_as"] == "repaired"
    assert drafts["claude"].content.startswith("Load the configuration file")
    assert store.task_ids("voting") == [task_id]
    shown = {
        spec.name: latest_metadata(instance, spec.asset_name, task_id) for spec in SHIPPED_PROVIDERS
    }
    assert {name: metadata["answer_json"] for name, metadata in shown.items()} == {
        "claude": "repaired", "openai": "fenced", "kimi": "unreadable"
    }  # fmt: skip
    assert "problem" not in shown["claude"]
    assert str(shown["kimi"]["problem"]).startswith("answer: a clarifying question")
