"""Accepted docstrings as a patch: `git apply` takes it, each symbol gets its text, and what
cannot be applied is skipped with a note instead of landing on the wrong code."""

import ast
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import drafts_pipeline
from drafts_pipeline.drafting.validation import DocDraft, ParameterDoc, RaisesDoc, render_docstring
from drafts_pipeline.errors import DraftsError
from drafts_pipeline.store import TaskInput
from drafts_pipeline.tasks.discover import discover_tasks
from drafts_pipeline.voting import patch as patch_module
from drafts_pipeline.voting.patch import (
    AcceptedDocstring,
    DocstringPatch,
    docstring_patch,
    write_patch,
)

SAMPLE_PROJECT = Path(drafts_pipeline.__file__).parent / "sample_project"

SHELVES = '''\
"""Shelves: decorated functions, methods, nested classes and one-line bodies."""

import functools


@functools.cache
def shelf_label(number: int) -> str:
    return f"Shelf {number}"


class Shelf:
    """A shelf of books."""

    def __init__(self, size: int) -> None:
        self.size = size

    @property
    def capacity(self) -> int:
        return self.size * 30

    @staticmethod
    def for_room(room: str) -> "Shelf":
        return Shelf(len(room))

    async def restock(self, supplier) -> int:
        return await supplier.deliver(self.size)

    class Label:
        def text(self) -> str:
            return "label"


def double(count: int) -> int: return count * 2


def greet(name: str = "Zoë") -> str: return f"Hello {name}"  # a guest's name


def blank_docstring() -> None:
    """ """
    return None
'''


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "user.name=Tester", "-c", "user.email=tester@example.invalid", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=check,
    )


def commit(root: Path) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "sources")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repository holding a copy of the bundled sample project and `bookshop/shelves.py`."""
    root = tmp_path / "project"
    shutil.copytree(SAMPLE_PROJECT, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "bookshop" / "shelves.py").write_text(SHELVES, encoding="utf-8")
    git(root, "init", "-q")
    git(root, "config", "core.autocrlf", "false")
    commit(root)
    return root


def tasks_by_symbol(root: Path, relative: str) -> dict[str, TaskInput]:
    return {
        task.symbol: task for task in discover_tasks(root).tasks if task.source_path == relative
    }


def accepted(task: TaskInput, text: str, **changes: Any) -> AcceptedDocstring:
    """An accepted docstring for a discovered task, fields overridable for the odd cases."""
    discovered = AcceptedDocstring(
        task_id=task.id,
        source_path=task.source_path,
        symbol=task.symbol,
        language=task.language,
        code=task.code,
        docstring=text,
    )
    return replace(discovered, **changes)


def draft_text(symbol: str) -> str:
    return render_docstring(
        DocDraft(
            summary=f"Explain {symbol}.",
            description="Longer words about it,\nover two lines.",
            parameters=[ParameterDoc(name="value", description="what goes in")],
            returns="what comes out",
            raises=[RaisesDoc(exception="ValueError", when="it is wrong")],
            example=">>> 1 + 1\n2",
        )
    )


def apply_with_git(root: Path, patch: DocstringPatch) -> None:
    """Write the patch as the CLI will, check that git takes it, and apply it."""
    path = root.parent / "docstrings.patch"
    write_patch(path, patch.diff)
    checked = git(root, "apply", "--check", str(path), check=False)
    assert checked.returncode == 0, checked.stderr
    git(root, "apply", str(path))


def docstrings(root: Path, relative: str) -> dict[str, str | None]:
    """Each function's docstring in the patched file, by discovery's symbol name."""
    tree = ast.parse((root / relative).read_bytes())
    found: dict[str, str | None] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                found[prefix + child.name] = ast.get_docstring(child)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return found


def test_every_discovered_symbol_gets_its_docstring_through_git_apply(project: Path) -> None:
    discovered = discover_tasks(project).tasks
    tasks = [task for task in discovered if task.language == "python"]
    scripts = [task for task in discovered if task.language != "python"]
    texts = {
        task.id: draft_text(task.symbol) if index % 2 else f"Explain {task.symbol} in a line."
        for index, task in enumerate(discovered)
    }
    patch = docstring_patch(project, [accepted(task, texts[task.id]) for task in discovered])

    assert scripts, "the sample project has a JavaScript module"
    assert [(note.task_id, note.reason) for note in patch.skipped] == [
        (task.id, "a javascript task: only Python docstrings are applied") for task in scripts
    ]
    assert patch.applied == [task.id for task in tasks]
    assert "inventory.js" not in patch.diff
    for relative in ("bookshop/catalog.py", "bookshop/orders.py", "bookshop/shelves.py"):
        assert patch.diff.count(f"--- a/{relative}\n+++ b/{relative}\n") == 1
    apply_with_git(project, patch)
    for task in tasks:
        assert task.source_path is not None
        assert docstrings(project, task.source_path)[task.symbol] == texts[task.id], task.symbol
    shelves = docstrings(project, "bookshop/shelves.py")
    assert shelves["Shelf.__init__"] is None
    assert shelves["Shelf.Label.text"] == texts["bookshop.shelves.Shelf.Label.text"]
    assert docstrings(project, "bookshop/orders.py")["documented_already"] == (
        "Already documented: discovery skips it."
    )


def test_methods_and_decorated_functions_keep_their_decorators_and_body_indentation(
    project: Path,
) -> None:
    tasks = tasks_by_symbol(project, "bookshop/shelves.py")
    chosen = [
        "shelf_label",
        "Shelf.capacity",
        "Shelf.for_room",
        "Shelf.restock",
        "Shelf.Label.text",
    ]
    patch = docstring_patch(project, [accepted(tasks[s], f"About {s}.") for s in chosen])
    apply_with_git(project, patch)

    source = (project / "bookshop" / "shelves.py").read_text(encoding="utf-8")
    assert (
        '@functools.cache\ndef shelf_label(number: int) -> str:\n    """About shelf_label."""\n'
        in (source)
    )
    assert (
        '    @property\n    def capacity(self) -> int:\n        """About Shelf.capacity."""\n'
        in (source)
    )
    assert '            """About Shelf.Label.text."""\n            return "label"\n' in source


def test_a_one_line_body_is_moved_onto_its_own_line_under_the_docstring(project: Path) -> None:
    tasks = tasks_by_symbol(project, "bookshop/shelves.py")
    patch = docstring_patch(
        project,
        [
            accepted(tasks["double"], "Twice the count."),
            accepted(tasks["greet"], "A greeting.\n\nArgs:\n    name: who"),
        ],
    )
    apply_with_git(project, patch)

    source = (project / "bookshop" / "shelves.py").read_text(encoding="utf-8")
    assert (
        'def double(count: int) -> int:\n    """Twice the count."""\n    return count * 2\n'
    ) in source
    assert (
        'def greet(name: str = "Zoë") -> str:\n    """A greeting.\n\n    Args:\n        name: who\n'
        '    """\n    return f"Hello {name}"  # a guest\'s name\n'
    ) in source
    namespace: dict[str, Any] = {}
    exec(compile(source, "shelves.py", "exec"), namespace)
    assert namespace["double"](4) == 8
    assert namespace["greet"]() == "Hello Zoë"


def test_an_existing_docstring_is_replaced_not_doubled(project: Path) -> None:
    blank = tasks_by_symbol(project, "bookshop/shelves.py")["blank_docstring"]
    orders = (project / "bookshop" / "orders.py").read_text(encoding="utf-8").split("\n")
    documented_code = "\n".join(orders[-4:-1])
    assert documented_code.startswith("def documented_already")
    imported = AcceptedDocstring(
        task_id="imported-documented-already",
        source_path="bookshop/orders.py",
        symbol="documented_already",
        language="python",
        code=documented_code,
        docstring="Upper-cases an order id.",
    )
    patch = docstring_patch(project, [accepted(blank, "Does nothing, on purpose."), imported])
    apply_with_git(project, patch)

    assert docstrings(project, "bookshop/shelves.py")["blank_docstring"] == (
        "Does nothing, on purpose."
    )
    assert docstrings(project, "bookshop/orders.py")["documented_already"] == (
        "Upper-cases an order id."
    )
    orders_after = (project / "bookshop" / "orders.py").read_text(encoding="utf-8")
    assert "Already documented" not in orders_after
    assert orders_after.endswith(
        'def documented_already(order_id: str) -> str:\n    """Upper-cases an order id."""\n'
        "    return order_id.upper()\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        r"Matches C:\temp\new and \d+ digits; a lone \ too.",
        'Say """hello""" twice: """""" and "quoted".',
        'Ends with a quote"',
        'Ends with three """',
        "Ends with a backslash \\",
        'Two lines,\nthe second ends in "',
        'Raw-looking r"""x""" and \\"""escaped""" too.\n\n    indented line\nback',
    ],
)
def test_backslashes_and_triple_quotes_survive_as_written(project: Path, text: str) -> None:
    task = tasks_by_symbol(project, "bookshop/orders.py")["format_price"]
    patch = docstring_patch(project, [accepted(task, text)])
    apply_with_git(project, patch)

    assert docstrings(project, "bookshop/orders.py")["format_price"] == text


def test_a_symbol_changed_since_discovery_is_skipped_and_the_rest_applies(project: Path) -> None:
    tasks = tasks_by_symbol(project, "bookshop/orders.py")
    path = project / "bookshop" / "orders.py"
    path.write_text(
        path.read_text(encoding="utf-8").replace("subtotal >= 5000", "subtotal >= 7500"),
        encoding="utf-8",
    )
    commit(project)
    patch = docstring_patch(
        project,
        [
            accepted(tasks["compute_total"], "Stale."),
            accepted(tasks["format_price"], "Money as text."),
        ],
    )

    assert patch.applied == ["bookshop.orders.format_price"]
    [note] = patch.skipped
    assert note.task_id == "bookshop.orders.compute_total"
    assert note.reason.startswith("bookshop/orders.py:13: compute_total changed since discovery")
    apply_with_git(project, patch)
    after = docstrings(project, "bookshop/orders.py")
    assert after["compute_total"] is None
    assert after["format_price"] == "Money as text."


def test_a_missing_file_or_symbol_is_skipped_with_a_note(project: Path) -> None:
    catalog = tasks_by_symbol(project, "bookshop/catalog.py")
    orders = tasks_by_symbol(project, "bookshop/orders.py")
    (project / "bookshop" / "catalog.py").unlink()
    path = project / "bookshop" / "orders.py"
    source = path.read_text(encoding="utf-8")
    path.write_text(source.replace(orders["format_price"].code + "\n", ""), encoding="utf-8")

    patch = docstring_patch(
        project,
        [
            accepted(catalog["normalize_isbn"], "Gone with its file."),
            accepted(orders["format_price"], "Gone with its code."),
        ],
    )

    assert patch.diff == ""
    assert patch.applied == []
    assert [(note.task_id, note.reason) for note in patch.skipped] == [
        (
            "bookshop.catalog.normalize_isbn",
            "bookshop/catalog.py: no such file under the project root",
        ),
        (
            "bookshop.orders.format_price",
            "bookshop/orders.py: format_price is no longer in the file",
        ),
    ]


def test_tasks_not_from_python_discovery_are_skipped(project: Path) -> None:
    task = tasks_by_symbol(project, "bookshop/orders.py")["apply_discount"]
    patch = docstring_patch(
        project,
        [
            accepted(task, "Typed.", task_id="ts", language="typescript"),
            accepted(task, "Pathless.", task_id="imported", source_path=None),
            accepted(task, "Outside.", task_id="escape", source_path="../bookshop/orders.py"),
            accepted(task, "  \n ", task_id="empty"),
            accepted(task, "Discounted."),
        ],
    )

    reasons = {note.task_id: note.reason for note in patch.skipped}
    assert reasons == {
        "ts": "a typescript task: only Python docstrings are applied",
        "imported": "no source path: only tasks from `tasks discover` are applied",
        "escape": "../bookshop/orders.py: not a path inside the project root",
        "empty": "the accepted docstring is empty",
    }
    assert patch.applied == ["bookshop.orders.apply_discount"]
    apply_with_git(project, patch)
    assert docstrings(project, "bookshop/orders.py")["apply_discount"] == "Discounted."


def test_the_same_symbol_accepted_twice_is_applied_once(project: Path) -> None:
    task = tasks_by_symbol(project, "bookshop/orders.py")["apply_discount"]
    patch = docstring_patch(
        project, [accepted(task, "First."), accepted(task, "Second.", task_id="again")]
    )

    assert patch.applied == [task.id]
    assert [note.task_id for note in patch.skipped] == ["again"]
    apply_with_git(project, patch)
    assert docstrings(project, "bookshop/orders.py")["apply_discount"] == "First."


def test_a_crlf_file_keeps_its_line_endings(project: Path) -> None:
    path = project / "bookshop" / "catalog.py"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    commit(project)
    lines_before = path.read_bytes().count(b"\r\n")
    tasks = tasks_by_symbol(project, "bookshop/catalog.py")
    texts = {symbol: draft_text(symbol) for symbol in tasks}
    patch = docstring_patch(project, [accepted(task, texts[s]) for s, task in tasks.items()])

    assert patch.skipped == []
    apply_with_git(project, patch)
    data = path.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n") > lines_before
    for symbol, text in texts.items():
        assert docstrings(project, "bookshop/catalog.py")[symbol] == text


def test_a_last_line_without_line_break_and_a_byte_order_mark_are_kept(project: Path) -> None:
    path = project / "tail.py"
    path.write_bytes(b"\xef\xbb\xbfdef first(x):\n    return x\n\n\ndef last(y): return y")
    commit(project)
    tasks = tasks_by_symbol(project, "tail.py")
    patch = docstring_patch(
        project, [accepted(tasks["first"], "The first."), accepted(tasks["last"], "The last.")]
    )

    assert "\\ No newline at end of file" in patch.diff
    apply_with_git(project, patch)
    assert path.read_bytes() == (
        b'\xef\xbb\xbfdef first(x):\n    """The first."""\n    return x\n\n\n'
        b'def last(y):\n    """The last."""\n    return y'
    )


def test_a_body_continued_from_the_def_line_is_skipped_rather_than_broken(project: Path) -> None:
    path = project / "odd.py"
    path.write_text("def odd(): \\\n    return 1\n", encoding="utf-8")
    commit(project)
    task = tasks_by_symbol(project, "odd.py")["odd"]

    patch = docstring_patch(project, [accepted(task, "Odd.")])

    assert patch.diff == ""
    [note] = patch.skipped
    assert note.reason.startswith("odd.py:1: odd is written in a way the docstring cannot be")


def test_a_file_not_in_utf8_is_skipped(project: Path) -> None:
    path = project / "legacy.py"
    path.write_bytes(b"# -*- coding: latin-1 -*-\ndef caf\xe9_name():\n    return '\xe9'\n")
    commit(project)
    [task] = tasks_by_symbol(project, "legacy.py").values()

    patch = docstring_patch(project, [accepted(task, "Old.")])

    assert [note.reason for note in patch.skipped] == [
        "legacy.py: encoded in iso-8859-1; only UTF-8 files are patched"
    ]


def test_a_root_that_is_not_a_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DraftsError, match="not a directory"):
        docstring_patch(tmp_path / "nowhere", [])


def test_write_patch_writes_the_bytes_and_replaces_an_earlier_file(tmp_path: Path) -> None:
    path = tmp_path / "docs.patch"
    path.write_text("old patch\n")
    write_patch(path, "--- a/x.py\r\n+é\r\n")

    assert path.read_bytes() == "--- a/x.py\r\n+é\r\n".encode()
    assert [entry.name for entry in tmp_path.iterdir()] == ["docs.patch"]


def test_write_patch_leaves_the_earlier_file_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "docs.patch"
    path.write_text("old patch\n")

    def refuse(source: str, target: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(patch_module.os, "replace", refuse)
    with pytest.raises(DraftsError, match=r"docs\.patch: cannot write the patch: No space left"):
        write_patch(path, "new patch\n")

    assert path.read_text() == "old patch\n"
    assert [entry.name for entry in tmp_path.iterdir()] == ["docs.patch"]


def test_write_patch_into_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DraftsError, match="cannot write the patch"):
        write_patch(tmp_path / "missing" / "docs.patch", "diff\n")
