"""Discovery: every public function or method without documentation becomes a drafting task.

Python is read with `ast` (a docstring documents); JavaScript, TypeScript, Ruby, Go and Java with
tree-sitter (`drafts_pipeline.syntax`: a JSDoc, YARD/RDoc, Go doc or Javadoc comment right above
the definition documents it; what "public" means there is in each reader's docstring).

Task ids come from the module path and the qualified name, so running discovery again over the same
tree yields the same ids, and the store skips the ones it already holds. What cannot be a task (a
file that does not parse, a second definition of an id, a symbol whose code or context is over
the size limits) is skipped and reported with its file and line; the rest are tasks.
"""

import ast
import hashlib
import os
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from drafts_pipeline.errors import DraftsError
from drafts_pipeline.store import TaskInput, TaskSizeLimits
from drafts_pipeline.store.models import DocumentationTask, column_length
from drafts_pipeline.syntax.grammars import SUFFIX_GRAMMARS
from drafts_pipeline.syntax.languages import undocumented_definitions

IGNORED_DIRECTORIES = frozenset({"__pycache__", ".venv", "site-packages", "node_modules", "vendor"})
IGNORED_SUFFIXES = (".d.ts", ".d.mts", ".d.cts", "_test.go")
"""Type declarations have no bodies to document; Go test files are not a package's API."""
MAX_ID_LENGTH = column_length(DocumentationTask, "id")
DIGEST_LENGTH = 12

_READABLE_ID = re.compile(r"[\w-]+(?:\.[\w-]+)*")
_UNSAFE_ID_CHARACTERS = re.compile(r"[^\w.-]+")
_DOT_RUNS = re.compile(r"\.{2,}")

Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Discovery:
    """The tasks a walk found, and what it passed over (`path: reason`) so nobody loses a file."""

    tasks: list[TaskInput]
    skipped: list[str]


def discover_tasks(root: Path, limits: TaskSizeLimits | None = None) -> Discovery:
    """A `drafting` task for each public, undocumented function or method under `root` within
    the size limits (`limits`, else the environment's)."""
    if not root.is_dir():
        raise DraftsError(f"{root}: not a directory; point discovery at a source tree")
    limits = TaskSizeLimits.from_environment() if limits is None else limits
    tasks: list[TaskInput] = []
    skipped: list[str] = []
    first_seen: dict[str, str] = {}
    for path in source_files(root):
        relative = path.relative_to(root).as_posix()
        try:
            found = list(_file_tasks(path, relative))
        except (OSError, SyntaxError, ValueError) as error:
            skipped.append(f"{relative}: not parsed, {type(error).__name__}: {error}")
            continue
        for task, line in found:
            where = f"{relative}:{line}"
            too_large = limits.problems(task.code, task.context)
            if too_large:
                skipped.append(
                    f"{where}: {task.symbol} is too large to draft: {'; '.join(too_large)}"
                )
                continue
            if task.id in first_seen:
                skipped.append(
                    f"{where}: {task.symbol} has the id {task.id!r} of the definition at "
                    f"{first_seen[task.id]}; only that one is a task"
                )
                continue
            first_seen[task.id] = where
            tasks.append(task)
    return Discovery(tasks=tasks, skipped=skipped)


def _file_tasks(path: Path, relative: str) -> Iterator[tuple[TaskInput, int]]:
    """The tasks of one source file; raises what reading or parsing it raised."""
    if path.suffix == ".py":
        with tokenize.open(path) as handle:
            source = handle.read()
        return file_tasks(ast.parse(source, filename=relative), source, relative)
    language, grammar = SUFFIX_GRAMMARS[path.suffix]
    source = path.read_bytes().decode("utf-8").replace("\r\n", "\n")
    definitions = undocumented_definitions(source.encode("utf-8"), language, grammar)
    module = module_name(relative)
    return (
        (
            TaskInput(
                id=task_id(module, definition.key),
                symbol=definition.symbol,
                language=language,
                code=definition.code,
                context=definition.context,
                source_path=relative,
            ),
            definition.line,
        )
        for definition in definitions
    )


def source_files(root: Path) -> list[Path]:
    """Source files of the supported languages under `root` in sorted order, outside hidden,
    cache, virtualenv and vendored folders."""
    found: list[Path] = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [
            name
            for name in subdirectories
            if not name.startswith(".") and name not in IGNORED_DIRECTORIES
        ]
        found.extend(Path(directory, name) for name in files if _is_source(name))
    return sorted(found, key=lambda path: path.relative_to(root).parts)


def _is_source(name: str) -> bool:
    suffix = PurePosixPath(name).suffix
    return (
        (suffix == ".py" or suffix in SUFFIX_GRAMMARS)
        and not name.startswith(".")
        and not name.endswith(IGNORED_SUFFIXES)
    )


def module_name(relative_path: str) -> str:
    """`pkg/mod.py` -> `pkg.mod`; a package's `__init__.py` is the package itself."""
    parts = list(PurePosixPath(relative_path).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def task_id(module: str, qualname: str) -> str:
    """`module.qualname` when it is a safe partition key; otherwise a readable prefix and a digest
    of the full name, so the id stays unique, stable and within the length limit."""
    full = f"{module}.{qualname}" if module else qualname
    if len(full) <= MAX_ID_LENGTH and _READABLE_ID.fullmatch(full):
        return full
    digest = hashlib.sha1(full.encode(), usedforsecurity=False).hexdigest()[:DIGEST_LENGTH]
    readable = _DOT_RUNS.sub(".", _UNSAFE_ID_CHARACTERS.sub("_", full))
    return f"{readable[: MAX_ID_LENGTH - DIGEST_LENGTH - 1]}-{digest}"


def file_tasks(tree: ast.Module, source: str, relative: str) -> Iterator[tuple[TaskInput, int]]:
    """The tasks of one parsed file, each with the line of its definition."""
    lines = source.split("\n")
    module = module_name(relative)
    module_header = _module_header(tree, source)
    for function, classes in _definitions(tree, ()):
        if not _wants_docstring(function):
            continue
        qualname = ".".join([*(cls.name for cls in classes), function.name])
        context = (
            "\n".join(_class_header(lines, cls) for cls in classes) if classes else module_header
        )
        task = TaskInput(
            id=task_id(module, qualname),
            symbol=qualname,
            language="python",
            code=_source_lines(lines, function),
            context=context,
            source_path=relative,
        )
        yield task, function.lineno


def _definitions(
    node: ast.AST, classes: tuple[ast.ClassDef, ...]
) -> Iterator[tuple[Function, tuple[ast.ClassDef, ...]]]:
    """Functions at module level or in public classes, also under `if`/`try` blocks; nothing
    defined inside a function body, and nothing inside a private class."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield child, classes
        elif isinstance(child, ast.ClassDef):
            if _is_public(child.name):
                yield from _definitions(child, (*classes, child))
        else:
            yield from _definitions(child, classes)


def _wants_docstring(function: Function) -> bool:
    """Public, undocumented, and not an `@overload` stub or a property's setter or deleter,
    whose documentation belongs to the implementation and the getter."""
    if not _is_public(function.name) or (ast.get_docstring(function) or "").strip():
        return False
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name) and target.id == "overload":
            return False
        if isinstance(target, ast.Attribute) and (
            target.attr == "overload"
            or (
                target.attr in {"setter", "deleter"}
                and isinstance(target.value, ast.Name)
                and target.value.id == function.name
            )
        ):
            return False
    return True


def _is_public(name: str) -> bool:
    return not name.startswith("_")


def _source_lines(lines: list[str], node: Function | ast.ClassDef) -> str:
    """The definition's full lines, decorators included, indentation kept."""
    return "\n".join(lines[_first_line(node) - 1 : node.end_lineno])


def _first_line(node: Function | ast.ClassDef) -> int:
    return min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])


def _docstring_statement(node: ast.Module | ast.ClassDef) -> ast.Expr | None:
    first = node.body[0] if node.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first
    return None


def _class_header(lines: list[str], cls: ast.ClassDef) -> str:
    """Decorators, the class statement and its docstring: enough to place a method, kept short."""
    last = max(cls.lineno, cls.body[0].lineno - 1)
    while last > cls.lineno and (not lines[last - 1].strip() or lines[last - 1].lstrip()[0] == "#"):
        last -= 1
    header = lines[_first_line(cls) - 1 : last]
    docstring = _docstring_statement(cls)
    if docstring is not None and docstring.lineno > last:
        header += lines[docstring.lineno - 1 : docstring.end_lineno]
    return "\n".join(header)


def _module_header(tree: ast.Module, source: str) -> str:
    """The module docstring and its top-level imports."""
    statements: list[ast.stmt] = [
        statement for statement in tree.body if isinstance(statement, ast.Import | ast.ImportFrom)
    ]
    docstring = _docstring_statement(tree)
    if docstring is not None:
        statements.insert(0, docstring)
    segments = (ast.get_source_segment(source, statement) for statement in statements)
    return "\n".join(segment for segment in segments if segment)
