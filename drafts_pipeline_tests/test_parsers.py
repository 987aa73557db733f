"""Symbol facts and discovery beside Python: JavaScript, TypeScript, Ruby, Go and Java read with
tree-sitter, on the small sample files in `samples/<language>/`."""

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from drafts_pipeline.drafting.validation import validate_draft
from drafts_pipeline.llm.offline import offline_answer
from drafts_pipeline.prompts.code_facts import Parameter, symbol_facts
from drafts_pipeline.store import DraftStore, TaskInput
from drafts_pipeline.tasks.discover import discover_tasks
from drafts_pipeline.voting_set import voting_ready_frame
from drafts_pipeline_tests.graph_runs import materialize_tasks

SAMPLES = Path(__file__).parent / "samples"
SAMPLE_PROJECT = Path(__file__).parents[1] / "drafts_pipeline" / "sample_project"


def sample_tasks(language: str) -> dict[str, TaskInput]:
    """The tasks discovery makes of one language's sample folder, by symbol."""
    return {task.symbol: task for task in discover_tasks(SAMPLES / language).tasks}


def signature(task: TaskInput) -> list[tuple[str, str, str | None]]:
    facts = symbol_facts(task.code, task.language)
    assert facts is not None, task.code
    return [(p.name, p.kind, p.default) for p in facts.signature]


# Discovery: which definitions become tasks, in file order.

DISCOVERED = {
    "javascript": [
        ("legacy.joinPath", "joinPath"),
        ("legacy.loadShelf", "loadShelf"),
        ("legacy.saveShelf", "saveShelf"),
        ("shelf.findBook", "findBook"),
        ("shelf.countBooks", "countBooks"),
        ("shelf.eachTitle", "eachTitle"),
        ("shelf.restock", "restock"),
        ("shelf.Shelf.add", "Shelf.add"),
        ("shelf.Shelf.size", "Shelf.size"),
        ("shelf.Shelf.fromTitles", "Shelf.fromTitles"),
    ],
    "typescript": [
        ("catalog.search", "search"),
        ("catalog.overloaded", "overloaded"),
        ("catalog.Catalog.lookup", "Catalog.lookup"),
        ("catalog.Catalog.refresh", "Catalog.refresh"),
        ("catalog.Catalog.reload", "Catalog.reload"),
        ("catalog.Catalog.size", "Catalog.size"),
    ],
    "ruby": [
        ("shelf.Bookshop.Shelf.add", "Bookshop::Shelf#add"),
        ("shelf.Bookshop.Shelf.self.from_titles", "Bookshop::Shelf.from_titles"),
        (None, "Bookshop::Shelf#available?"),
        ("shelf.Bookshop.Shelf.each_title", "Bookshop::Shelf#each_title"),
        ("shelf.Bookshop.Shelf.clear", "Bookshop::Shelf#clear"),
        ("shelf.Bookshop.Shelf.fetch", "Bookshop::Shelf#fetch"),
        ("shelf.Bookshop.Shelf.self.registry", "Bookshop::Shelf.registry"),
        ("shelf.Bookshop.Shelf.outer", "Bookshop::Shelf#outer"),
        ("shelf.Bookshop.self.version", "Bookshop.version"),
        ("shelf.top_level", "top_level"),
    ],
    "go": [
        ("shelf.New", "New"),
        ("shelf.Shelf.Add", "Shelf.Add"),
        ("shelf.Shelf.Len", "Shelf.Len"),
        ("shelf.Shelf.MustGet", "Shelf.MustGet"),
        ("shelf.Directive", "Directive"),
    ],
    "java": [
        ("Shelf.Shelf.add", "Shelf.add"),
        (None, "Shelf.find(String)"),
        (None, "Shelf.find(String, int)"),
        ("Shelf.Shelf.of", "Shelf.of"),
        ("Shelf.Shelf.sort", "Shelf.sort"),
        ("Shelf.Shelf.printer", "Shelf.printer"),
        ("Shelf.Shelf.Listener.added", "Shelf.Listener.added"),
    ],
}


@pytest.mark.parametrize("language", sorted(DISCOVERED))
def test_public_undocumented_definitions_become_tasks(language: str) -> None:
    discovery = discover_tasks(SAMPLES / language)

    assert discovery.skipped == []
    assert [task.symbol for task in discovery.tasks] == [s for _, s in DISCOVERED[language]]
    for (expected_id, _), task in zip(DISCOVERED[language], discovery.tasks, strict=True):
        if expected_id is None:  # not a safe partition key (`available?`, `find(String)`)
            assert task.id.startswith(f"{task.source_path.split('.')[0]}.") and "-" in task.id
        else:
            assert task.id == expected_id
        assert task.language == language
        assert task.template == "docstring"
    assert len({task.id for task in discovery.tasks}) == len(discovery.tasks)


def test_what_is_not_public_or_already_documented_is_no_task() -> None:
    everything = {
        task.symbol.split("(")[0]
        for language in DISCOVERED
        for task in discover_tasks(SAMPLES / language).tasks
    }
    left_out = {
        # JavaScript: JSDoc, not exported from a module, `_`/`#` names, a constructor, a setter
        # beside its getter, a nested function; TypeScript: private, overload signatures,
        # interfaces, a constructor.
        "documented", "notExported", "Shelf.clear", "Shelf._internal", "Shelf.#secret",
        "Shelf.constructor", "nested", "_privateHelper", "local", "Catalog.drop", "Finder.find",
        # Ruby: a comment, `initialize`, every way of going private, `:nodoc:`, a nested def.
        "Bookshop::Shelf#documented", "Bookshop::Shelf#initialize", "Bookshop::Shelf#secret",
        "Bookshop::Shelf#quiet", "Bookshop::Shelf#hidden", "Bookshop::Shelf#internals",
        "Bookshop::Shelf#inner",
        # Go: a doc comment above a directive, unexported names, a method of an unexported type,
        # a test file.
        "Flagged", "Documented", "Shelf.grow", "index.Lookup", "helper", "TestNew",
        # Java: Javadoc (`Shelf.clear`, above), @Override, package-private and private methods
        # and types, constructors, an anonymous class's method.
        "Shelf.toString", "Shelf.packagePrivate", "Shelf.secret",
        "Shelf.Hidden.invisible", "PackagePrivate.notPublic", "Shelf.Shelf", "Shelf.run",
    }  # fmt: skip
    assert everything & left_out == set()


@pytest.mark.parametrize(
    ("language", "parent", "nested", "name"),
    [
        ("javascript", "restock", "function nested(book)", "nested"),
        ("ruby", "Bookshop::Shelf#outer", "def inner", "inner"),
        ("go", "Shelf.Add", "check := func(value string) bool", "check"),
        ("java", "Shelf.printer", "public void run()", "run"),
    ],
)
def test_a_nested_function_stays_in_its_parents_code_and_is_no_task(
    language: str, parent: str, nested: str, name: str
) -> None:
    """Decision: functions nested in functions (and methods of anonymous or local classes) are
    not tasks, as in Python: they are documented as part of the function that holds them."""
    tasks = sample_tasks(language)

    assert nested in tasks[parent].code
    assert not [symbol for symbol in tasks if symbol.endswith((f".{name}", f"#{name}"))]
    assert name not in tasks


def test_a_task_carries_its_code_and_the_enclosing_header_as_context() -> None:
    javascript, typescript = sample_tasks("javascript"), sample_tasks("typescript")
    ruby, go, java = sample_tasks("ruby"), sample_tasks("go"), sample_tasks("java")

    add = javascript["Shelf.add"]
    assert add.source_path == "shelf.js"
    assert add.code.startswith("  add(book, position = 0) {\n")
    assert add.code.endswith("    this.books.splice(position, 0, book);\n  }")
    assert add.context == "export class Shelf {"
    assert javascript["findBook"].context == (
        "/**\n * Shelves of books: an ES module, so only what it exports is public.\n */\n"
        'import { normalizeIsbn } from "./isbn.js";'
    )
    assert javascript["countBooks"].code.startswith("export const countBooks = (shelf, ...tags)")
    assert javascript["saveShelf"].context.endswith('const path = require("path");')
    assert typescript["Catalog.reload"].code.startswith("  @logged\n  async reload(")

    assert ruby["Bookshop::Shelf.registry"].context == (
        "module Bookshop\n  # A shelf of books.\n  class Shelf < Base\n    class << self"
    )
    assert ruby["top_level"].context == '# frozen_string_literal: true\nrequire "set"'
    assert ruby["Bookshop::Shelf#add"].source_path == "shelf.rb"

    assert go["Shelf.Len"].context == (
        "package shelf\n// Shelf holds books in order.\ntype Shelf struct {\n\tbooks []string\n}"
    )
    assert go["New"].context.startswith("package shelf\nimport (\n")

    assert java["Shelf.Listener.added"].code == "        void added(String title);"
    assert java["Shelf.Listener.added"].context == (
        "package bookshop;\nimport java.util.ArrayList;\nimport java.util.List;\n"
        "/** Shelves of books. */\npublic class Shelf {\n    public interface Listener {"
    )


def test_vendored_declaration_and_unreadable_files_are_passed_over(tmp_path: Path) -> None:
    def write(relative: str, text: str) -> None:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    write("app.js", "export function start(port) {\n  return port;\n}\n")
    write("node_modules/lib/index.js", "function vendored(x) {\n  return x;\n}\n")
    write("vendor/bundle/gem.rb", "def vendored(x)\n  x\nend\n")
    write("types.d.ts", "export declare function declared(x: number): number;\n")
    write("broken.ts", "export function ok(a) {\n  return a;\n}\n\nexport function (oops {\n")
    (tmp_path / "latin1.rb").write_bytes("# caf\xe9\ndef brew(x)\n  x\nend\n".encode("latin-1"))

    discovery = discover_tasks(tmp_path)

    assert [task.id for task in discovery.tasks] == ["app.start"]
    assert len(discovery.skipped) == 2
    assert discovery.skipped[0].startswith("broken.ts: not parsed, SyntaxError: ")
    assert "line 5" in discovery.skipped[0]
    assert discovery.skipped[1].startswith("latin1.rb: not parsed, UnicodeDecodeError: ")


# Facts: parameters in order with defaults and kinds, return, raised errors.


@pytest.mark.parametrize(
    ("language", "symbol", "expected"),
    [
        ("javascript", "findBook", [("shelf", "positional", None), ("title", "positional", None),
                                    ("{ exact = false }", "unnamed", "{}")]),
        ("javascript", "countBooks", [("shelf", "positional", None), ("tags", "variadic", None)]),
        ("javascript", "eachTitle", [("shelf", "positional", None), ("limit", "positional", "10")]),
        ("javascript", "Shelf.fromTitles", [("titles", "variadic", None)]),
        ("javascript", "loadShelf", [("file", "positional", None),
                                     ("options", "positional", "{}")]),
        ("typescript", "search", [("query", "positional", None), ("limit", "positional", "20"),
                                  ("tags", "variadic", None)]),
        ("typescript", "Catalog.reload", [("{ force }", "unnamed", None)]),
        ("ruby", "Bookshop::Shelf#add", [("book", "positional", None),
                                         ("position", "positional", "0"),
                                         ("tags", "variadic", None), ("force", "keyword", "false"),
                                         ("options", "keyword_variadic", None),
                                         ("on_added", "block", None)]),
        ("ruby", "Bookshop::Shelf.from_titles", [("titles", "variadic", None)]),
        ("go", "Shelf.Add", [("title", "positional", None), ("author", "positional", None),
                             ("tags", "variadic", None)]),
        ("java", "Shelf.of", [("titles", "variadic", None)]),
        ("java", "Shelf.find(String, int)", [("title", "positional", None),
                                             ("limit", "positional", None)]),
    ],
)  # fmt: skip
def test_parameters_in_order_with_defaults_and_rest(
    language: str, symbol: str, expected: list[tuple[str, str, str | None]]
) -> None:
    assert signature(sample_tasks(language)[symbol]) == expected


@pytest.mark.parametrize(
    ("language", "symbol", "facts"),
    [
        ("javascript", "findBook", {"returns_value": True, "raises": ()}),
        ("javascript", "Shelf.add", {"returns_value": False, "raises": ("TypeError",)}),
        ("javascript", "countBooks", {"returns_value": True}),
        ("javascript", "eachTitle", {"yields": True, "returns_value": False}),
        ("javascript", "saveShelf", {"is_async": True, "returns_value": False}),
        ("javascript", "restock", {"returns_value": False}),
        ("typescript", "search", {"returns_value": True, "raises": ("RangeError",),
                                  "return_annotation": "Book[]",
                                  "annotations": {"query": "string", "limit": "number",
                                                  "tags": "string[]"}}),
        ("typescript", "Catalog.reload", {"is_async": True, "parameters": (),
                                          "return_annotation": "Promise<void>"}),
        ("typescript", "Catalog.size", {"name": "size", "return_annotation": "number"}),
        ("ruby", "Bookshop::Shelf#add", {"returns_value": True, "raises": ("ArgumentError",)}),
        ("ruby", "Bookshop::Shelf#fetch", {"raises": ("IndexError",)}),
        ("ruby", "Bookshop::Shelf#each_title", {"yields": True}),
        ("ruby", "Bookshop::Shelf#clear", {"returns_value": False}),
        ("ruby", "Bookshop::Shelf#available?", {"name": "available?", "returns_value": True}),
        ("ruby", "Bookshop.version", {"returns_value": True}),
        ("go", "Shelf.Add", {"returns_value": True, "return_annotation": "(int, error)",
                             "raises": (), "annotations": {"title": "string", "author": "string",
                                                           "tags": "...string"}}),
        ("go", "Shelf.MustGet", {"raises": ("panic",), "parameters": ("i",)}),
        ("go", "Directive", {"returns_value": False}),
        ("java", "Shelf.add", {"returns_value": True, "return_annotation": "int",
                               "raises": ("IllegalStateException", "IllegalArgumentException")}),
        ("java", "Shelf.sort", {"returns_value": False, "raises": ()}),
        ("java", "Shelf.Listener.added", {"returns_value": False, "parameters": ("title",)}),
        ("java", "Shelf.printer", {"returns_value": True, "raises": ()}),
    ],
)  # fmt: skip
def test_returns_raises_and_the_rest(language: str, symbol: str, facts: dict[str, Any]) -> None:
    task = sample_tasks(language)[symbol]
    found = symbol_facts(task.code, task.language)

    assert found is not None and found.language == language
    assert {name: getattr(found, name) for name in facts} == facts


def test_python_facts_keep_ast_and_gain_defaults_and_kinds() -> None:
    code = "    def add(self, book, *tags, replace=False, **extra) -> None:\n        pass\n"
    facts = symbol_facts(code)

    # A method's code keeps its class's indentation: it still has facts.
    assert facts is not None and facts.language == "python"
    assert facts.parameters == ("book", "tags", "replace", "extra")
    assert facts.signature == (
        Parameter("book"),
        Parameter("tags", "variadic"),
        Parameter("replace", "keyword", "False"),
        Parameter("extra", "keyword_variadic"),
    )


def test_a_method_alone_is_read_inside_a_class_and_languages_have_aliases() -> None:
    method = "  static make(count = 2) {\n    return new Shelf(count);\n  }"

    for language in ("javascript", "JS", "ts", "TypeScript"):
        facts = symbol_facts(method, language)
        assert facts is not None and facts.name == "make" and facts.parameters == ("count",)
    golang = symbol_facts("func (s *Shelf) Put(key string) {}", "golang")
    assert golang is not None and golang.parameters == ("key",)
    assert symbol_facts("fn main() {}", "rust") is None
    assert symbol_facts("const limit = 3;", "javascript") is None


# The parameter check, for every language that has facts.


def draft(*names: str) -> str:
    import json

    return json.dumps(
        {
            "summary": "Find a book on a shelf.",
            "parameters": [{"name": name, "description": "An input."} for name in names],
        }
    )


def test_a_javascript_draft_naming_a_wrong_parameter_is_invalid_with_the_reason() -> None:
    task = sample_tasks("javascript")["countBooks"]
    facts = symbol_facts(task.code, task.language)

    wrong = validate_draft(draft("shelves", "tags"), "stop", facts, task.code)
    assert wrong.status == "invalid"
    assert wrong.checks["parameters"] == {
        "ok": False,
        "reason": "missing shelf; not in the signature: shelves",
    }
    assert wrong.reasons == ["parameters: missing shelf; not in the signature: shelves"]
    right = validate_draft(draft("shelf", "...tags"), "stop", facts, task.code)
    assert right.status == "valid" and right.checks["parameters"]["ok"]


def test_a_destructured_parameter_may_be_named_anything_but_named_ones_are_required() -> None:
    task = sample_tasks("javascript")["findBook"]
    facts = symbol_facts(task.code, task.language)

    assert validate_draft(draft("shelf", "title", "options"), "stop", facts).status == "valid"
    missing = validate_draft(draft("shelf", "options"), "stop", facts)
    assert missing.checks["parameters"]["reason"] == "missing title"


@pytest.mark.parametrize("language", ["typescript", "ruby", "go", "java"])
def test_the_parameter_check_applies_to_every_language_with_facts(language: str) -> None:
    task = next(iter(sample_tasks(language).values()))
    verdict = validate_draft(draft("not_a_parameter"), "stop", symbol_facts(task.code, language))

    assert verdict.status == "invalid"
    assert "not in the signature: not_a_parameter" in verdict.checks["parameters"]["reason"]


def test_offline_drafts_of_every_sample_pass_every_check() -> None:
    tasks = [task for language in DISCOVERED for task in sample_tasks(language).values()]
    for task in tasks:
        facts = symbol_facts(task.code, task.language)
        for provider in ("claude", "openai", "kimi"):
            answer = offline_answer(provider, task.symbol, task.code, task.language)
            verdict = validate_draft(answer, "stop", facts, task.code)
            assert verdict.status == "valid", (task.id, provider, verdict.reasons)
            assert verdict.checks["parameters"]["ok"]


def test_the_graph_drafts_the_sample_projects_javascript_for_the_ballot(
    instance: dg.DagsterInstance, sqlite_url: str, data_dir: Path
) -> None:
    store = DraftStore(database_url=sqlite_url)
    store.upgrade()
    tasks = discover_tasks(SAMPLE_PROJECT).tasks
    scripts = [task.id for task in tasks if task.language == "javascript"]
    assert scripts == [
        "bookshop.inventory.restockLevel",
        "bookshop.inventory.lowStock",
        "bookshop.inventory.Reservations.reserve",
        "bookshop.inventory.Reservations.release",
    ]
    store.add_tasks(tasks)

    assert materialize_tasks(instance, sqlite_url, [task.id for task in tasks]).success

    frame = voting_ready_frame(store)
    assert set(frame["language"]) == {"python", "javascript"}
    assert set(frame["task_id"]) >= set(scripts)
    for provider in ("claude", "openai", "kimi"):
        for task_id, stored in store.latest_drafts(scripts, provider).items():
            assert stored.status == "valid", (task_id, provider, stored.validation)
            assert stored.validation["parameters"]["ok"]
