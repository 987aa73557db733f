"""Prompt templates as files: each renders for a task of its language, a broken file fails
loading with its name, the template is chosen by language and kind, and the context budget
cuts a long context around the symbol while the code goes whole or not at all."""

import re
import shutil
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from drafts_pipeline.defs.drafting.assets import pending_tasks
from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME
from drafts_pipeline.errors import TaskValidationError
from drafts_pipeline.llm.structured_output import draft_schema
from drafts_pipeline.prompts import templates
from drafts_pipeline.prompts.context_budget import PromptLimits, estimated_tokens, fit_context
from drafts_pipeline.prompts.templates import (
    TEMPLATE_DIR,
    TEMPLATES,
    TemplateLoadError,
    build_prompt,
    fixed_part,
    load_templates,
    output_schema_version,
    prompt_for,
)
from drafts_pipeline.store import DraftStore
from drafts_pipeline.tasks.discover import discover_tasks
from drafts_pipeline_tests.factories import make_task
from drafts_pipeline_tests.fake_providers import SOURCE_BLOCK, SYMBOL_LINE

SAMPLES = Path(__file__).parent / "samples"
SAMPLE_PROJECT = Path(templates.__file__).parents[1] / "sample_project"

# A discovered task of each sample, and the template it must get.
SAMPLE_TASKS = [
    (SAMPLE_PROJECT, "python", "python-function", lambda t: "." not in t.symbol),
    (SAMPLE_PROJECT, "python", "python-method", lambda t: "." in t.symbol),
    (SAMPLES / "javascript", "javascript", "javascript-function", lambda t: True),
    (SAMPLES / "typescript", "typescript", "javascript-function", lambda t: True),
    (SAMPLES / "ruby", "ruby", "ruby-method", lambda t: True),
    (SAMPLES / "go", "go", "go-function", lambda t: True),
    (SAMPLES / "java", "java", "java-method", lambda t: True),
]
LIMITS = PromptLimits()


@pytest.mark.parametrize(
    ("root", "language", "expected", "wanted"),
    SAMPLE_TASKS,
    ids=[f"{language}-{expected}" for _, language, expected, _ in SAMPLE_TASKS],
)
def test_each_template_renders_for_a_sample_task_of_its_language(
    root: Path, language: str, expected: str, wanted: object
) -> None:
    tasks = [t for t in discover_tasks(root).tasks if t.language == language]
    task = next(t for t in tasks if wanted(t))  # type: ignore[operator]

    built = prompt_for(task, LIMITS)

    template = TEMPLATES[expected]
    assert built.template_version == template.version
    assert built.system == template.system == fixed_part(task.id, built.template_version)
    title = template.jinja.make_module({"part": "settings"}).language_title
    assert f"# {title} conventions" in built.system
    # What the fake provider server (and a reader of a stored prompt) finds the symbol by.
    source = SOURCE_BLOCK.search(built.text)
    symbol = SYMBOL_LINE.search(built.text)
    assert source is not None and source.group(3) == task.code.rstrip()
    assert symbol is not None and symbol.group(1) == task.symbol
    assert "{{" not in built.text and "{%" not in built.system
    assert output_schema_version(built.template_version) == "docstring-json-v1"


def test_every_template_but_the_fallback_is_chosen_for_a_sample() -> None:
    chosen = {expected for _, _, expected, _ in SAMPLE_TASKS}
    assert chosen == set(TEMPLATES) - {"any-symbol"}


def test_old_template_versions_stay_resolvable() -> None:
    assert fixed_part("t.a", "docstring-v2").startswith("You write reference documentation")
    assert output_schema_version("docstring-v2") == "docstring-json-v1"
    assert output_schema_version("docstring-v1") is None
    with pytest.raises(TaskValidationError, match=r"'docstring-v9'"):
        fixed_part("t.a", "docstring-v9")


def test_every_template_has_its_output_schema() -> None:
    for template in TEMPLATES.values():
        schema = template.output_schema
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        # The keys the fixed part's prose asks for are the schema's keys.
        answer = template.system.split("It has these keys and no others:")[1]
        asked = re.findall(r'^  "(\w+)":', answer.split("Rules for the fields")[0], re.M)
        assert asked == list(schema["properties"]) == schema["required"]
        assert schema == draft_schema()


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIR, folder)
    return folder


def test_the_template_folder_loads_as_shipped(tmp_path: Path) -> None:
    loaded = load_templates(_copy(tmp_path))

    assert {name: t.system for name, t in loaded.items()} == {
        name: t.system for name, t in TEMPLATES.items()
    }


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        (
            "ruby_method.j2",
            "{% endblock %}",
            "",
            r"ruby_method\.j2: TemplateSyntaxError in ruby_method\.j2 line \d+",
        ),
        (
            "go_function.j2",
            '{% set version = "go-function-v1" %}',
            "",
            r"go_function\.j2: it sets no version",
        ),
        (
            "java_method.j2",
            '{% set output_schema_version = "docstring-json-v1" %}',
            '{% set output_schema_version = "docstring-json-v9" %}',
            r"java_method\.j2: .*unknown output schema 'docstring-json-v9'",
        ),
        (
            "python_function.j2",
            '{% set kinds = ["function"] %}',
            '{% set kinds = ["lambda"] %}',
            r"python_function\.j2: .*unknown kinds \['lambda'\]",
        ),
        (
            "_task.j2",
            "Symbol: {{ symbol }}",
            "Name: {{ symbol }}",
            r"any_symbol\.j2: .*`Symbol:` line",
        ),
        (
            "_style_guide.j2",
            "# What to avoid",
            "# What to avoid {% if %}",
            r"any_symbol\.j2: TemplateSyntaxError in _style_guide\.j2 line \d+",
        ),
    ],
    ids=["syntax", "no version", "unknown schema", "unknown kind", "no symbol line", "include"],
)
def test_a_broken_template_file_fails_loading_with_its_name(
    tmp_path: Path, file: str, old: str, new: str, message: str
) -> None:
    folder = _copy(tmp_path)
    path = folder / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))

    with pytest.raises(TemplateLoadError, match=message):
        load_templates(folder)


def test_a_fixed_part_too_short_to_be_cached_fails_loading(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "_style_guide.j2").write_text("Document the symbol.\n")

    with pytest.raises(TemplateLoadError, match=r"any_symbol\.j2: .*fixed part is about \d+"):
        load_templates(folder)


def _chosen(language: str, symbol: str, code: str, template: str = "docstring") -> str:
    built = build_prompt(
        task_id="t.a", template=template, language=language, symbol=symbol,
        source_path=None, code=code, context="", limits=LIMITS,
    )  # fmt: skip
    return built.template_version.removesuffix("-v1")


@pytest.mark.parametrize(
    ("language", "symbol", "code", "expected"),
    [
        ("python", "area", "def area(r):\n    return r * r", "python-function"),
        ("Python", "Shelf.add", "    def add(self, b):\n        pass", "python-method"),
        ("python", "make", "@staticmethod\ndef make(a):\n    return a", "python-method"),
        ("python", "build", "def build(cls, a):\n    return cls(a)", "python-method"),
        ("python", "Shelf.size", "    def size():\n        return 0", "python-method"),
        ("python", "shop.orders.total", "def total(a):\n    return a", "python-function"),
        ("python", "Shelf", "class Shelf:\n    pass", "python-method"),
        ("python", "broken", "def broken(:\n", "python-function"),
        ("JS", "total", "function total(a) { return a }", "javascript-function"),
        ("ts", "Cart.add", "add(a: number) { return a }", "javascript-function"),
        ("rb", "Shop::Shelf#add", "def add(a)\n  a\nend", "ruby-method"),
        ("golang", "Open", "func Open(p string) error { return nil }", "go-function"),
        ("java", "Shelf.add", "void add(String a) {}", "java-method"),
        ("rust", "area", "fn area(r: f64) -> f64 { r * r }", "any-symbol"),
    ],
)
def test_the_template_is_chosen_by_language_and_kind(
    language: str, symbol: str, code: str, expected: str
) -> None:
    assert _chosen(language, symbol, code) == expected


def test_a_task_may_name_its_template() -> None:
    code = "def area(r):\n    return r * r"
    assert _chosen("python", "area", code, template="any-symbol") == "any-symbol"
    with pytest.raises(TaskValidationError, match=r"task t\.a: unknown template 'haiku'"):
        _chosen("python", "area", code, template="haiku")


def _long_class_context() -> tuple[str, str]:
    """A module of 600 lines before a class of 600 lines, then the method."""
    module = ["import os", *(f"SETTING_{i} = {i}" for i in range(600))]
    body = [f"    attribute_{i} = {i}" for i in range(600)]
    return "\n".join(
        [*module, "class Shelf(Base):", *body]
    ), "    def add(self, book):\n        return book"


def _context_of(text: str) -> str:
    return text.split("Surrounding context (")[1].split("\n```python\n")[1].split("\n```\n")[0]


def test_a_long_context_is_cut_around_the_symbol_with_the_code_intact() -> None:
    context, code = _long_class_context()
    assert estimated_tokens(context) > 3 * LIMITS.context_budget_tokens

    built = build_prompt(
        task_id="t.a", template="docstring", language="python", symbol="Shelf.add",
        source_path="shelf.py", code=code, context=context, limits=LIMITS,
    )  # fmt: skip

    sent = _context_of(built.text)
    assert estimated_tokens(sent) <= LIMITS.context_budget_tokens
    lines = sent.split("\n")
    # The enclosing signature, far from the symbol, and the lines just above the symbol.
    assert "class Shelf(Base):" in lines
    assert lines[-1] == "    attribute_599 = 599"
    assert "    attribute_0 = 0" not in lines and "import os" not in lines
    assert lines[0] == "... (601 lines left out)"
    kept = [line for line in lines if line.startswith("    attribute_")]
    assert kept == [f"    attribute_{i} = {i}" for i in range(600 - len(kept), 600)]
    assert SOURCE_BLOCK.search(built.text).group(3) == code  # type: ignore[union-attr]


def test_a_symbol_inside_its_context_keeps_the_lines_on_both_sides() -> None:
    above = [f"    x_{i} = {i}" for i in range(300)]
    below = [f"    y_{i} = {i}" for i in range(300)]
    code = "    def add(self, book):\n        return book"
    context = "\n".join(["class Shelf:", *above, "    def add(self, book):", *below])

    sent = fit_context(context, code, 700)

    lines = sent.split("\n")
    assert len(sent) <= 700
    assert lines[0] == "class Shelf:" and "    def add(self, book):" in lines
    assert "    x_299 = 299" in lines and "    y_0 = 0" in lines
    assert "    x_0 = 0" not in lines and "    y_299 = 299" not in lines


def test_a_short_context_is_sent_as_it_is() -> None:
    assert fit_context("import os\nclass A:", "def f(): pass", 100) == "import os\nclass A:"


def test_a_template_may_set_its_own_context_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    context, code = _long_class_context()
    small = replace(TEMPLATES["python-method"], context_budget_tokens=100)
    monkeypatch.setitem(TEMPLATES, "python-method", small)

    built = build_prompt(
        task_id="t.a", template="docstring", language="python", symbol="Shelf.add",
        source_path="shelf.py", code=code, context=context, limits=LIMITS,
    )  # fmt: skip

    assert estimated_tokens(_context_of(built.text)) <= 100


def test_oversize_code_is_refused_before_any_call() -> None:
    code = "def big():\n" + "    x = 1\n" * 8_000

    with pytest.raises(TaskValidationError, match=r"task t\.a: its code alone .*limit of 16,000"):
        build_prompt(
            task_id="t.a", template="docstring", language="python", symbol="big",
            source_path=None, code=code, context="", limits=LIMITS,
        )  # fmt: skip


def test_pending_tasks_fails_a_task_whose_code_is_over_the_prompt_limit(
    store: DraftStore, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRAFTS_MAX_PROMPT_TOKENS", "3000")
    big = make_task("shop.big", code="def big():\n" + "    x = 1\n" * 600)
    small = make_task("shop.orders.compute_total")
    store.add_tasks([big, small])
    instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, [big.id, small.id])

    for key in (big.id, small.id):
        dg.materialize(
            [pending_tasks], instance=instance, resources={"store": store}, partition_key=key
        )

    found = store.tasks_by_id([big.id, small.id])
    assert found[big.id].status == "failed"
    assert "code alone" in (found[big.id].last_error or "")
    assert "DRAFTS_MAX_PROMPT_TOKENS" in (found[big.id].last_error or "")
    assert found[small.id].status == "drafting" and found[small.id].prompt


def test_two_templates_with_one_version_fail_loading(tmp_path: Path) -> None:
    """A copied template that keeps its original's version would give the original's tasks its
    fixed part: loading refuses it, naming both files."""
    folder = _copy(tmp_path)
    text = (folder / "go_function.j2").read_text()
    copy = text.replace("go-function", "go-method", 1)
    assert copy != text
    (folder / "go_method.j2").write_text(copy.replace("go-method-v1", "go-function-v1"))

    with pytest.raises(TemplateLoadError, match=r"go_method\.j2.*also the version of"):
        load_templates(folder)


def test_the_cut_centres_on_the_signature_not_on_a_shared_decorator() -> None:
    """`@property` opens both methods: the place is found by `def x`, so class A stays."""
    filler_a = "".join(f"    a{i} = {i}\n" for i in range(30))
    filler_b = "".join(f"    b{i} = {i}\n" for i in range(30))
    context = (
        f"class A:\n{filler_a}    @property\n    def x(self):\n        return 1\n\n"
        f"class B:\n{filler_b}    @property\n    def z(self):\n        return 2\n"
    )
    kept = fit_context(context, "@property\ndef x(self):\n    return 1", 300)
    assert "    def x(self):" in kept and "    a29 = 29" in kept
    assert "    def z(self):" not in kept
