"""Accepted docstrings written back into the source tree as one patch that `git apply` takes.

Only what `tasks discover` could have made is touched: a Python task with a `source_path`,
whose symbol is still in that file with exactly the lines the task stored. Anything else is
skipped with a note, never guessed at: a patch that moved a docstring onto the wrong function
would be worse than none. The rules and choices are in `docs/voting.md`, "Applying accepted
drafts".
"""

import ast
import difflib
import inspect
import io
import os
import re
import tempfile
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from drafts_pipeline.errors import DraftsError

Function = ast.FunctionDef | ast.AsyncFunctionDef

UTF8_ENCODINGS = frozenset({"utf-8", "utf-8-sig"})
BOM = "\ufeff"
_LINE_BREAK = re.compile(r"(\r\n|\n)")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_QUOTES_TO_ESCAPE = re.compile(r'"{3,}|"$')


@dataclass(frozen=True)
class AcceptedDocstring:
    """A task's accepted docstring, with the task's fields as discovery stored them."""

    task_id: str
    source_path: str | None
    symbol: str
    language: str
    code: str
    docstring: str


@dataclass(frozen=True)
class SkippedDocstring:
    """An accepted docstring left out of the patch, and why."""

    task_id: str
    reason: str


@dataclass(frozen=True)
class DocstringPatch:
    """The unified diff (empty when nothing applies), the tasks in it and the ones left out."""

    diff: str
    applied: list[str]
    skipped: list[SkippedDocstring]


@dataclass(frozen=True)
class _SourceFile:
    """A file as Python reads it (`lines` without their endings, as `ast` numbers them) and
    what it takes to write it back byte for byte: each line's own ending and the BOM."""

    lines: list[str]
    endings: list[str]
    bom: str
    tree: ast.Module

    @property
    def newline(self) -> str:
        return next((ending for ending in self.endings if ending), "\n")

    def raw_lines(self, lines: list[str] | None = None) -> list[str]:
        """The lines with their endings, `lines` (already ended) in place of the file's own."""
        raw = (
            [line + ending for line, ending in zip(self.lines, self.endings, strict=True)]
            if lines is None
            else list(lines)
        )
        if raw and self.bom:
            raw[0] = self.bom + raw[0]
        return raw


@dataclass(frozen=True)
class _Edit:
    """Lines `start` to `stop` (0-based, `stop` excluded) become `lines`, endings included."""

    start: int
    stop: int
    lines: list[str]


def docstring_patch(
    root: Path, accepted: Iterable[AcceptedDocstring], path_prefix: str = ""
) -> DocstringPatch:
    """One unified diff that writes each applicable docstring into the files under `root`,
    with `a/` and `b/` paths relative to it, so `git apply` run from `root` applies it.
    `path_prefix` (`sub/dir/`) goes before each path: the patch then applies from the folder
    that holds `root` at that path."""
    if not root.is_dir():
        raise DraftsError(f"{root}: not a directory; apply patches the project that was discovered")
    notes: list[tuple[int, SkippedDocstring]] = []
    applied: list[tuple[int, str]] = []
    by_file: dict[str, list[tuple[int, AcceptedDocstring]]] = {}
    for position, item in enumerate(accepted):
        reason = _not_applicable(item)
        if reason is not None:
            notes.append((position, SkippedDocstring(item.task_id, reason)))
            continue
        relative = PurePosixPath(item.source_path or "").as_posix()
        by_file.setdefault(relative, []).append((position, item))

    sections: list[str] = []
    for relative in sorted(by_file):
        source = _read_source(root, relative)
        if isinstance(source, str):
            notes.extend(
                (position, SkippedDocstring(item.task_id, f"{relative}: {source}"))
                for position, item in by_file[relative]
            )
            continue
        edits: list[_Edit] = []
        placed: dict[str, str] = {}
        for position, item in by_file[relative]:
            if item.symbol in placed:
                reason = (
                    f"{relative}: {item.symbol} already gets the accepted docstring of task "
                    f"{placed[item.symbol]!r}"
                )
                notes.append((position, SkippedDocstring(item.task_id, reason)))
                continue
            edit = _docstring_edit(source, relative, item)
            if isinstance(edit, str):
                notes.append((position, SkippedDocstring(item.task_id, edit)))
                continue
            placed[item.symbol] = item.task_id
            edits.append(edit)
            applied.append((position, item.task_id))
        if edits:
            sections.append(_file_diff(path_prefix + relative, source, edits))
    return DocstringPatch(
        diff="".join(sections),
        applied=[task_id for _, task_id in sorted(applied)],
        skipped=[note for _, note in sorted(notes, key=lambda entry: entry[0])],
    )


def write_patch(path: Path, diff: str) -> None:
    """Write `diff` to `path` whole or not at all: a reader never sees half a patch, and a
    failed write leaves any earlier file at `path` as it was."""
    mode = path.stat().st_mode & 0o777 if path.is_file() else 0o644
    try:
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise DraftsError(f"{path}: cannot write the patch: {error.strerror or error}") from error
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(diff.encode("utf-8"))
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise DraftsError(f"{path}: cannot write the patch: {error.strerror or error}") from error


def _not_applicable(item: AcceptedDocstring) -> str | None:
    """Why `item` cannot be applied whatever the files say, or None."""
    if item.language.strip().lower() != "python":
        return f"a {item.language} task: only Python docstrings are applied"
    if not item.source_path:
        return "no source path: only tasks from `tasks discover` are applied"
    path = PurePosixPath(item.source_path)
    if path.is_absolute() or ".." in path.parts or "\\" in item.source_path:
        return f"{item.source_path}: not a path inside the project root"
    if not _clean_text(item.docstring):
        return "the accepted docstring is empty"
    return None


def _read_source(root: Path, relative: str) -> _SourceFile | str:
    """The parsed file, or why it cannot be patched."""
    path = root / relative
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "no such file under the project root"
    except OSError as error:
        return f"cannot read it: {error.strerror or error}"
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        if encoding not in UTF8_ENCODINGS:
            return f"encoded in {encoding}; only UTF-8 files are patched"
        text = data.decode("utf-8")
    except (SyntaxError, UnicodeDecodeError) as error:
        return f"not readable as Python source: {error}"
    if "\r" in text.replace("\r\n", ""):
        return "has lines ending in a bare carriage return, which a line-based patch cannot carry"
    bom = BOM if text.startswith(BOM) else ""
    pieces = _LINE_BREAK.split(text[len(bom) :])
    lines, endings = pieces[::2], [*pieces[1::2], ""]
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
        endings.pop()
    try:
        tree = ast.parse("\n".join(lines), filename=relative)
    except (SyntaxError, ValueError) as error:
        return f"does not parse now: {type(error).__name__}: {error}"
    return _SourceFile(lines=lines, endings=endings, bom=bom, tree=tree)


def _functions(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, Function]]:
    """Each function with its symbol in discovery's naming: enclosing class names and its own
    name, dotted; found at module level or in classes, also under `if`/`try`, never inside a
    function body."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield f"{prefix}{child.name}", child
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def _definition_lines(lines: list[str], function: Function) -> str:
    """The definition's full lines, decorators included: what discovery stores as `code`."""
    first = min([function.lineno, *(decorator.lineno for decorator in function.decorator_list)])
    return "\n".join(lines[first - 1 : function.end_lineno])


def _docstring_edit(source: _SourceFile, relative: str, item: AcceptedDocstring) -> _Edit | str:
    """The edit that gives `item.symbol` its docstring, or why there is none."""
    candidates = [function for symbol, function in _functions(source.tree) if symbol == item.symbol]
    if not candidates:
        return f"{relative}: {item.symbol} is no longer in the file"
    stored = item.code.replace("\r\n", "\n").replace("\r", "\n")
    function = next(
        (f for f in candidates if _definition_lines(source.lines, f) == stored),
        None,
    )
    if function is None:
        return (
            f"{relative}:{candidates[0].lineno}: {item.symbol} changed since discovery "
            "(its lines differ from the task's code)"
        )
    text = _clean_text(item.docstring)
    edit = _placement(source, function, text)
    if not _places_docstring(source, edit, function, text):
        return (
            f"{relative}:{function.lineno}: {item.symbol} is written in a way the docstring "
            "cannot be inserted into without breaking it (a line continuation after its colon?)"
        )
    return edit


def _placement(source: _SourceFile, function: Function, text: str) -> _Edit:
    """Replace the docstring the function has, else insert one before its first statement;
    a body on the `def` line is first moved onto lines of its own."""
    first = function.body[0]
    row = first.lineno - 1
    line = source.lines[row]
    column = _char_column(line, first.col_offset)
    eol = source.endings[function.lineno - 1] or source.newline
    inline = bool(line[:column].strip())
    if inline:
        own = _indentation(source.lines[function.lineno - 1])
        indent = own + ("\t" if "\t" in own else "    ")
        head = [line[:column].rstrip() + eol]
    else:
        indent = line[:column]
        head = []
    literal = _literal_lines(text, indent)
    if _is_docstring(first):
        last = (first.end_lineno or first.lineno) - 1
        tail = source.lines[last][_char_column(source.lines[last], first.end_col_offset or 0) :]
        lines = [
            *head,
            *(part + eol for part in literal[:-1]),
            literal[-1] + tail + source.endings[last],
        ]
        return _Edit(row, last + 1, lines)
    lines = [*head, *(part + eol for part in literal)]
    if inline:
        lines.append(indent + line[column:] + source.endings[row])
        return _Edit(row, row + 1, lines)
    return _Edit(row, row, lines)


def _places_docstring(source: _SourceFile, edit: _Edit, function: Function, text: str) -> bool:
    """Whether the file with `edit` alone still parses and gives the function `text`, as
    `ast.get_docstring` cleans it: a guard against source shapes the placement did not foresee."""
    changed = _edited(source, [edit])
    try:
        tree = ast.parse("".join(changed))
    except (SyntaxError, ValueError):
        return False
    wanted = inspect.cleandoc(text)
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.lineno == function.lineno
        and node.name == function.name
        and ast.get_docstring(node) == wanted
        for node in ast.walk(tree)
    )


def _edited(source: _SourceFile, edits: list[_Edit]) -> list[str]:
    """The file's lines with their endings after `edits`, applied bottom-up so that each
    edit's line numbers still point where they did in the file as read."""
    lines = [line + ending for line, ending in zip(source.lines, source.endings, strict=True)]
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        lines[edit.start : edit.stop] = edit.lines
    return lines


def _file_diff(path: str, source: _SourceFile, edits: list[_Edit]) -> str:
    """The file's section of the patch, marking a last line without a line break as diff and
    `git apply` expect."""
    before = source.raw_lines()
    after = source.raw_lines(_edited(source, edits))
    out: list[str] = []
    for line in difflib.unified_diff(before, after, f"a/{path}", f"b/{path}"):
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n\\ No newline at end of file\n")
    return "".join(out)


def _clean_text(text: str) -> str:
    """The docstring as it will read: no carriage returns, no trailing spaces on its lines,
    no blank lines or spaces around it."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()


def _literal_lines(text: str, indent: str) -> list[str]:
    """The docstring literal's lines at `indent`: on one line when the text is one line, else
    PEP 257's shape with the closing quotes on a line of their own. Blank lines stay empty."""
    lines = _escape(text).split("\n")
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    rest = [f"{indent}{line}" if line else "" for line in lines[1:]]
    return [f'{indent}"""{lines[0]}', *rest, f'{indent}"""']


def _escape(text: str) -> str:
    """`text` safe inside `\"\"\"…\"\"\"`: backslashes doubled, every quote of a run of three
    or more and a last quote escaped (either would end the literal), control characters other
    than tab and line break written as escapes."""
    escaped = text.replace("\\", "\\\\")
    escaped = _CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", escaped)
    return _QUOTES_TO_ESCAPE.sub(lambda m: m.group().replace('"', '\\"'), escaped)


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _indentation(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t\f"))]


def _char_column(line: str, byte_offset: int) -> int:
    """`ast` columns count UTF-8 bytes; this is the same place counted in characters."""
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore"))
