"""Discovery: every public function or method without documentation becomes a drafting task.

Python is read with `ast` (a docstring documents); JavaScript, TypeScript, Ruby, Go and Java with
tree-sitter (`drafts_pipeline.syntax`: a JSDoc, YARD/RDoc, Go doc or Javadoc comment right above
the definition documents it; what "public" means there is in each reader's docstring).

Task ids come from the module path and the qualified name, so running discovery again over the same
tree yields the same ids. What cannot be a task (a file that does not parse, a second definition
of an id, a symbol whose code or context is over the size limits) is skipped and reported with its
file and line; the rest are tasks.

Run again over a tree it has seen (`sync_discovered`), discovery follows the code: a stored task
whose source changed is updated or reopened, and one whose file no longer defines its symbol is
retired (`store/history.py`). A Python symbol documented since (by `apply`, or by hand) is
compared without its docstring, so the docstring alone is no change.
"""

import ast
import hashlib
import os
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from drafts_pipeline.errors import DraftsError
from drafts_pipeline.store import DraftStore, TaskInput, TaskSizeLimits
from drafts_pipeline.store.history import TaskSync
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
_WORD = re.compile(r"[A-Za-z_$][\w$]*")
_SYMBOL_PARTS = re.compile(r"\.|#|::")

Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Discovery:
    """The tasks a walk found, and what it passed over (`path: reason`) so nobody loses a file."""

    tasks: list[TaskInput]
    skipped: list[str]
    documented: list[TaskInput] = field(default_factory=list)
    """Public Python functions that have a docstring, as a task would hold them without it:
    the current source of tasks stored before they were documented."""
    defined: dict[str, frozenset[str]] = field(default_factory=dict)
    """Per file read: the qualified names of its Python functions (documented or not,
    private ones too), or for another language every identifier in it."""

    def defines(self, source_path: str, symbol: str, language: str) -> bool | None:
        """Whether the file still defines `symbol`; None when the walk did not read it. For
        a language read with tree-sitter, a documented definition is not listed, so the
        symbol's own name anywhere in the file counts as defined."""
        names = self.defined.get(source_path)
        if names is None:
            return None
        if language == "python":
            return symbol in names
        return _SYMBOL_PARTS.split(symbol)[-1].rstrip("?!") in names


def discover_tasks(root: Path, limits: TaskSizeLimits | None = None) -> Discovery:
    """A `drafting` task for each public, undocumented function or method under `root` within
    the size limits (`limits`, else the environment's)."""
    if not root.is_dir():
        raise DraftsError(f"{root}: not a directory; point discovery at a source tree")
    limits = TaskSizeLimits.from_environment() if limits is None else limits
    tasks: list[TaskInput] = []
    skipped: list[str] = []
    documented: list[TaskInput] = []
    defined: dict[str, frozenset[str]] = {}
    first_seen: dict[str, str] = {}
    for path in source_files(root):
        relative = path.relative_to(root).as_posix()
        try:
            found, documented_here, defined[relative] = _read_file(path, relative)
        except (OSError, SyntaxError, ValueError) as error:
            skipped.append(f"{relative}: not parsed, {type(error).__name__}: {error}")
            continue
        documented += [
            task for task in documented_here if not limits.problems(task.code, task.context)
        ]
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
    return Discovery(tasks=tasks, skipped=skipped, documented=documented, defined=defined)


def sync_discovered(
    store: DraftStore, root: Path, limits: TaskSizeLimits | None = None
) -> tuple[Discovery, TaskSync]:
    """Discover `root` and bring the store in line with it in one transaction: new tasks,
    changed sources updated or reopened, symbols gone from their files retired (only tasks
    found under this same folder before: `source_root`)."""
    limits = TaskSizeLimits.from_environment() if limits is None else limits
    found = discover_tasks(root, limits)
    folder = str(root.resolve())
    stored = store.task_sources(folder)
    known = {task_id for task_id, *_ in stored}
    current = [*found.tasks, *(task for task in found.documented if task.id in known)]
    return found, store.sync_tasks(current, gone_from(found, root, stored), limits, root=folder)


def gone_from(
    found: Discovery, root: Path, stored: list[tuple[str, str, str, str, str]]
) -> list[str]:
    """The stored tasks (`id, status, source_path, symbol, language`) whose symbol `root` no
    longer defines: their file read and without it, or deleted from a folder still there. A
    file the walk could not read, or outside `root`, leaves its tasks alone."""
    gone = []
    for task_id, _status, source_path, symbol, language in stored:
        defines = found.defines(source_path, symbol, language)
        if defines is None:
            path = root / source_path
            defines = path.exists() or not path.parent.is_dir() or not _is_source(path.name)
        if not defines:
            gone.append(task_id)
    return gone


_FileRead = tuple[list[tuple[TaskInput, int]], list[TaskInput], frozenset[str]]


def _read_file(path: Path, relative: str) -> _FileRead:
    """One source file's tasks (each with its line), its documented Python functions as
    tasks without their docstrings, and the names it defines (`Discovery.defined`); raises
    what reading or parsing it raised."""
    if path.suffix == ".py":
        with tokenize.open(path) as handle:
            source = handle.read()
        tree = ast.parse(source, filename=relative)
        names = frozenset(qualname for qualname, _ in _all_functions(tree))
        documented = [task for task, _ in file_tasks(tree, source, relative, documented=True)]
        return list(file_tasks(tree, source, relative)), documented, names
    language, grammar = SUFFIX_GRAMMARS[path.suffix]
    source = path.read_bytes().decode("utf-8").replace("\r\n", "\n")
    definitions = undocumented_definitions(source.encode("utf-8"), language, grammar)
    module = module_name(relative)
    tasks = [
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
    ]
    return tasks, [], frozenset(_WORD.findall(source))


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


def file_tasks(
    tree: ast.Module, source: str, relative: str, documented: bool = False
) -> Iterator[tuple[TaskInput, int]]:
    """The tasks of one parsed file, each with the line of its definition. With `documented`,
    the public functions that have a docstring instead, each as its task would read without
    the docstring."""
    lines = source.split("\n")
    module = module_name(relative)
    module_header = _module_header(tree, source)
    for function, classes in _definitions(tree, ()):
        if not _is_candidate(function) or _has_docstring(function) != documented:
            continue
        qualname = ".".join([*(cls.name for cls in classes), function.name])
        context = (
            "\n".join(_class_header(lines, cls) for cls in classes) if classes else module_header
        )
        task = TaskInput(
            id=task_id(module, qualname),
            symbol=qualname,
            language="python",
            code=_code_without_docstring(lines, function)
            if documented
            else _source_lines(lines, function),
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


def _all_functions(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, Function]]:
    """Every function outside a function body, with its dotted qualified name: what a file
    defines, public or not."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield f"{prefix}{child.name}", child
        elif isinstance(child, ast.ClassDef):
            yield from _all_functions(child, f"{prefix}{child.name}.")
        else:
            yield from _all_functions(child, prefix)


def _has_docstring(function: Function) -> bool:
    return bool((ast.get_docstring(function) or "").strip())


def _code_without_docstring(lines: list[str], function: Function) -> str:
    """The definition's lines without the lines of its docstring: what discovery stored before
    `apply` inserted them. A docstring sharing a line with other code is left in."""
    code = _source_lines(lines, function)
    statement = function.body[0]
    end = statement.end_lineno or statement.lineno
    first_line = lines[statement.lineno - 1]
    if (
        statement.lineno == function.lineno
        or first_line[: statement.col_offset].strip()
        or lines[end - 1].encode("utf-8")[statement.end_col_offset or 0 :].strip()
    ):
        return code
    offset = _first_line(function)
    kept = code.split("\n")
    del kept[statement.lineno - offset : end - offset + 1]
    return "\n".join(kept)


def _is_candidate(function: Function) -> bool:
    """Public, and not an `@overload` stub or a property's setter or deleter, whose
    documentation belongs to the implementation and the getter."""
    if not _is_public(function.name):
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
