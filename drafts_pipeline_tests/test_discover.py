"""Discovery: which symbols become tasks, what a task carries, and that its id is a stable key."""

import shutil
from pathlib import Path

import pytest

from drafts_pipeline.errors import ConfigurationError, DraftsError
from drafts_pipeline.store import DraftStore
from drafts_pipeline.tasks.discover import (
    DIGEST_LENGTH,
    MAX_ID_LENGTH,
    discover_tasks,
    module_name,
    task_id,
)

SHAPES = '''\
"""Shapes and their areas."""

import math
from dataclasses import dataclass


def area(radius):
    return math.pi * radius * radius


def documented():
    """Has a docstring already."""


def _private():
    pass


async def fetch(url):
    return url


@dataclass(frozen=True)
class Circle:
    """A circle."""

    radius: float

    def scale(self, factor):
        def inner():
            pass

        return inner

    @staticmethod
    def unit():
        return Circle(1.0)

    def __repr__(self):
        return "Circle"

    def _hidden(self):
        pass

    class Inner:
        def deep(self):
            pass

    @property
    def diameter(self):
        return 2 * self.radius

    @diameter.setter
    def diameter(self, value):
        pass


class _Private:
    def method(self):
        pass


@functools.lru_cache(maxsize=None)
def cached(value):
    return value


def outer():
    class Local:
        def local_method(self):
            pass
'''


def write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    write(root, "pkg/__init__.py", "def top_level():\n    pass\n")
    write(root, "pkg/shapes.py", SHAPES)
    write(root, "pkg/broken.py", "def broken(:\n    pass\n")
    write(root, "pkg/.hidden/secret.py", "def in_hidden_dir():\n    pass\n")
    write(root, "pkg/__pycache__/cached.py", "def in_pycache():\n    pass\n")
    write(root, ".venv/lib/dependency.py", "def in_venv():\n    pass\n")
    write(root, "lib/site-packages/vendored.py", "def in_site_packages():\n    pass\n")
    return root


def test_only_public_undocumented_functions_and_methods_become_tasks(tree: Path) -> None:
    discovery = discover_tasks(tree)

    assert [task.id for task in discovery.tasks] == [
        "pkg.top_level",
        "pkg.shapes.area",
        "pkg.shapes.fetch",
        "pkg.shapes.Circle.scale",
        "pkg.shapes.Circle.unit",
        "pkg.shapes.Circle.Inner.deep",
        "pkg.shapes.Circle.diameter",
        "pkg.shapes.cached",
        "pkg.shapes.outer",
    ]


def test_a_task_carries_the_symbol_its_source_and_where_it_lives(tree: Path) -> None:
    tasks = {task.symbol: task for task in discover_tasks(tree).tasks}

    area = tasks["area"]
    assert area.language == "python"
    assert area.source_path == "pkg/shapes.py"
    assert area.template == "docstring"
    assert area.code == "def area(radius):\n    return math.pi * radius * radius"


def test_decorated_and_async_functions_keep_their_decorators_and_keywords(tree: Path) -> None:
    tasks = {task.symbol: task for task in discover_tasks(tree).tasks}

    assert tasks["cached"].code.startswith("@functools.lru_cache(maxsize=None)\ndef cached(value):")
    assert tasks["Circle.unit"].code.startswith("    @staticmethod\n    def unit():")
    assert tasks["fetch"].code == "async def fetch(url):\n    return url"
    assert tasks["Circle.diameter"].code.startswith("    @property\n")
    assert "setter" not in tasks["Circle.diameter"].code


def test_a_method_keeps_its_nested_function_in_its_code(tree: Path) -> None:
    scale = next(task for task in discover_tasks(tree).tasks if task.symbol == "Circle.scale")

    assert "def inner():" in scale.code
    assert scale.code.endswith("        return inner")


def test_a_module_function_gets_the_module_docstring_and_imports_as_context(tree: Path) -> None:
    area = next(task for task in discover_tasks(tree).tasks if task.symbol == "area")

    assert area.context == (
        '"""Shapes and their areas."""\nimport math\nfrom dataclasses import dataclass'
    )


def test_a_method_gets_its_class_header_and_docstring_as_context(tree: Path) -> None:
    tasks = {task.symbol: task for task in discover_tasks(tree).tasks}

    assert tasks["Circle.scale"].context == (
        '@dataclass(frozen=True)\nclass Circle:\n    """A circle."""'
    )
    assert tasks["Circle.Inner.deep"].context == (
        '@dataclass(frozen=True)\nclass Circle:\n    """A circle."""\n    class Inner:'
    )


def test_a_file_with_a_syntax_error_is_skipped_and_reported(tree: Path) -> None:
    discovery = discover_tasks(tree)

    assert len(discovery.skipped) == 1
    assert discovery.skipped[0].startswith("pkg/broken.py: not parsed, SyntaxError")
    assert "line 1" in discovery.skipped[0]
    assert not any(task.source_path == "pkg/broken.py" for task in discovery.tasks)


@pytest.mark.parametrize(
    ("source", "symbols"),
    [
        pytest.param("def f():\n    pass\n", ["f"], id="plain function"),
        pytest.param('def f():\n    """Documented."""\n', [], id="documented"),
        pytest.param('def f():\n    """  """\n', ["f"], id="blank docstring"),
        pytest.param("def _f():\n    pass\n", [], id="private"),
        pytest.param("class C:\n    def __init__(self):\n        pass\n", [], id="dunder"),
        pytest.param("class _C:\n    def m(self):\n        pass\n", [], id="private class"),
        pytest.param("class C:\n    def m(self):\n        pass\n", ["C.m"], id="method"),
        pytest.param(
            "class C:\n    class D:\n        def m(self):\n            pass\n",
            ["C.D.m"],
            id="public class in public class",
        ),
        pytest.param(
            "class C:\n    class _D:\n        def m(self):\n            pass\n",
            [],
            id="private class in public class",
        ),
        pytest.param(
            "def f():\n    def g():\n        pass\n    return g\n", ["f"], id="nested function"
        ),
        pytest.param(
            "import sys\nif sys.platform == 'win32':\n    def f():\n        pass\n",
            ["f"],
            id="under if",
        ),
        pytest.param(
            "from typing import overload\n"
            "@overload\ndef f(x: int) -> int: ...\n"
            "@overload\ndef f(x: str) -> str: ...\n"
            "def f(x):\n    return x\n",
            ["f"],
            id="overloads",
        ),
        pytest.param("async def f():\n    pass\n", ["f"], id="async"),
        pytest.param("x = 1\n", [], id="no functions"),
        pytest.param("", [], id="empty file"),
    ],
)
def test_which_definitions_are_tasks(tmp_path: Path, source: str, symbols: list[str]) -> None:
    write(tmp_path, "module.py", source)

    discovery = discover_tasks(tmp_path)

    assert [task.symbol for task in discovery.tasks] == symbols
    assert discovery.skipped == []


def test_an_overloaded_function_is_drafted_from_its_implementation(tmp_path: Path) -> None:
    write(
        tmp_path,
        "module.py",
        "from typing import overload\n@overload\ndef f(x: int) -> int: ...\n"
        "def f(x):\n    return x\n",
    )

    (task,) = discover_tasks(tmp_path).tasks

    assert task.code == "def f(x):\n    return x"


def test_a_second_definition_of_the_same_name_is_reported_not_duplicated(tmp_path: Path) -> None:
    write(
        tmp_path,
        "module.py",
        "import sys\nif sys.version_info >= (3, 12):\n    def f():\n        return 1\n"
        "else:\n    def f():\n        return 2\n",
    )

    discovery = discover_tasks(tmp_path)

    assert [task.code for task in discovery.tasks] == ["    def f():\n        return 1"]
    assert discovery.skipped == [
        "module.py:6: f has the id 'module.f' of the definition at module.py:3; "
        "only that one is a task"
    ]


def test_ids_are_stable_across_runs_and_checkouts(tree: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "another" / "checkout"
    shutil.copytree(tree, elsewhere)

    first = discover_tasks(tree)
    again = discover_tasks(tree)
    moved = discover_tasks(elsewhere)

    assert first == again
    assert [task.id for task in moved.tasks] == [task.id for task in first.tasks]


def test_ids_from_odd_paths_have_no_comma_and_stay_unique(tmp_path: Path) -> None:
    write(tmp_path, "a,b/module.py", "def f():\n    pass\n")
    write(tmp_path, "a b/module.py", "def f():\n    pass\n")
    write(tmp_path, "c../d/module.py", "def f():\n    pass\n")

    ids = [task.id for task in discover_tasks(tmp_path).tasks]

    assert len(ids) == len(set(ids)) == 3
    assert all("," not in task_id and "..." not in task_id for task_id in ids)


@pytest.mark.parametrize(
    ("relative_path", "module"),
    [
        ("module.py", "module"),
        ("pkg/module.py", "pkg.module"),
        ("pkg/sub/__init__.py", "pkg.sub"),
        ("__init__.py", ""),
    ],
)
def test_module_name(relative_path: str, module: str) -> None:
    assert module_name(relative_path) == module


@pytest.mark.parametrize(
    ("module", "qualname", "expected"),
    [
        ("pkg.module", "Class.method", "pkg.module.Class.method"),
        ("", "top_level", "top_level"),
        ("scripts.run-once", "main", "scripts.run-once.main"),
    ],
)
def test_readable_ids_are_the_dotted_path(module: str, qualname: str, expected: str) -> None:
    assert task_id(module, qualname) == expected


def test_a_long_id_is_cut_to_the_limit_with_a_digest_that_keeps_it_unique() -> None:
    module = ".".join(["deeply_nested_package"] * 8)

    first = task_id(module, "Class.first_method")
    second = task_id(module, "Class.second_method")

    assert len(first) == len(second) == MAX_ID_LENGTH
    assert first != second
    assert first[: -DIGEST_LENGTH - 1] == second[: -DIGEST_LENGTH - 1]
    assert task_id(module, "Class.first_method") == first
    assert "," not in first


def test_a_long_id_from_a_source_tree_fits_the_store(tmp_path: Path) -> None:
    write(tmp_path, "/".join(["deeply_nested_package"] * 8) + "/module.py", "def f():\n    pass\n")

    (task,) = discover_tasks(tmp_path).tasks

    assert len(task.id) == MAX_ID_LENGTH
    assert task.symbol == "f"


def test_a_root_that_is_not_a_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DraftsError, match="not a directory"):
        discover_tasks(tmp_path / "missing")


def test_discovering_again_creates_no_duplicate_tasks(tree: Path, store: DraftStore) -> None:
    tasks = discover_tasks(tree).tasks

    assert store.add_tasks(tasks) == len(tasks)
    assert store.add_tasks(discover_tasks(tree).tasks) == 0
    assert store.task_ids("drafting") == [task.id for task in tasks]


def test_discovered_tasks_are_stored_as_found(tree: Path, store: DraftStore) -> None:
    tasks = discover_tasks(tree).tasks
    store.add_tasks(tasks)

    stored = store.tasks_by_id([task.id for task in tasks])

    for task in tasks:
        row = stored[task.id]
        assert (row.symbol, row.code, row.context, row.source_path, row.status) == (
            task.symbol,
            task.code,
            task.context,
            task.source_path,
            "drafting",
        )


def test_a_function_over_the_code_limit_is_skipped_and_reported_where_it_is(
    tmp_path: Path, store: DraftStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRAFTS_MAX_CODE_CHARS", raising=False)
    huge = "def huge():\n    total = 0\n"
    huge += "\n".join(f"    total += {i}" for i in range(6000)) + "\n    return total"
    write(tmp_path, "pkg/big.py", f"def small(x):\n    return x\n\n\n{huge}\n")

    discovery = discover_tasks(tmp_path)

    assert len(huge) > 50_000
    assert [task.symbol for task in discovery.tasks] == ["small"]
    assert discovery.skipped == [
        f"pkg/big.py:5: huge is too large to draft: field 'code' is {len(huge)} characters "
        "long; at most 50000 (DRAFTS_MAX_CODE_CHARS)"
    ]
    assert store.add_tasks(discovery.tasks) == 1


def test_discovery_applies_the_limits_the_environment_sets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "wordy.py", f'"""{"Words. " * 10}"""\n\n\ndef f(x):\n    return x\n')
    write(tmp_path, "terse.py", "class Box:\n    def get(self):\n        return 1\n")
    monkeypatch.setenv("DRAFTS_MAX_CONTEXT_CHARS", "20")

    discovery = discover_tasks(tmp_path)

    assert [task.id for task in discovery.tasks] == ["terse.Box.get"]
    assert discovery.skipped == [
        "wordy.py:4: f is too large to draft: field 'context' is 76 characters long; "
        "at most 20 (DRAFTS_MAX_CONTEXT_CHARS)"
    ]
    monkeypatch.setenv("DRAFTS_MAX_CONTEXT_CHARS", "twenty")
    with pytest.raises(ConfigurationError, match="DRAFTS_MAX_CONTEXT_CHARS='twenty'"):
        discover_tasks(tmp_path)
