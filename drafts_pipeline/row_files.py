"""Files of records, JSONL or CSV, read with the line each record starts on, so that an import
can name every bad line of a file at once. What the records mean is the importer's."""

import csv
import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from drafts_pipeline.errors import DraftsError, ImportRejected

ACCEPTED_SUFFIXES = (".csv", ".jsonl")

Problem = tuple[int, str]
Row = tuple[int, dict[str, object]]


def read_rows(
    path: Path,
    *,
    known: frozenset[str],
    required: tuple[str, ...],
    cells: Callable[[dict[str, str]], dict[str, object]],
) -> tuple[list[Row], list[Problem]]:
    """The records of a `.jsonl` or `.csv` file and the lines that are not records.

    A CSV header must name only `known` columns, each once, and every `required` one; `cells`
    turns a CSV row's text cells into the values a JSON object would hold. A file that cannot
    be read at all (suffix, permissions) is a `DraftsError`; text that is not UTF-8 is an
    `ImportRejected` naming the line.
    """
    suffix = path.suffix.lower()
    if suffix not in ACCEPTED_SUFFIXES:
        raise DraftsError(
            f"{path}: cannot import a {suffix or 'suffix-less'!r} file; "
            f"accepted suffixes: {', '.join(ACCEPTED_SUFFIXES)}"
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DraftsError(f"{path}: cannot read it: {error.strerror}") from error
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ImportRejected(str(path), [f"line {line}: not UTF-8 text"]) from error
    if suffix == ".jsonl":
        return parse_jsonl(text)
    with _csv_fields_up_to(len(text)):
        return parse_csv(text, known=known, required=required, cells=cells)


def parse_jsonl(text: str) -> tuple[list[Row], list[Problem]]:
    """One JSON object per line; blank lines are ignored."""
    rows: list[Row] = []
    problems: list[Problem] = []
    for line, content in enumerate(text.split("\n"), start=1):
        if not content.strip():
            continue
        try:
            value = json.loads(content)
        except json.JSONDecodeError as error:
            problems.append((line, f"bad JSON: {error.msg} (column {error.colno})"))
            continue
        if isinstance(value, dict):
            rows.append((line, value))
        else:
            problems.append((line, f"not a JSON object, got {describe(value)}"))
    return rows, problems


def parse_csv(
    text: str,
    *,
    known: frozenset[str],
    required: tuple[str, ...],
    cells: Callable[[dict[str, str]], dict[str, object]],
) -> tuple[list[Row], list[Problem]]:
    """A header row naming the fields, then one record per row; blank rows are ignored.

    A row's line is where it starts, which matters for quoted values that span lines.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[Row] = []
    problems: list[Problem] = []
    start = 1
    try:
        header = next(reader, None)
        if header is None:
            return rows, problems
        problems.extend((1, problem) for problem in _header_problems(header, known, required))
        if problems:
            return rows, problems
        start = reader.line_num + 1
        for values in reader:
            if any(value.strip() for value in values):
                if len(values) == len(header):
                    rows.append((start, cells(dict(zip(header, values, strict=True)))))
                else:
                    problems.append(
                        (start, f"{len(values)} values, but the header has {len(header)} columns")
                    )
            start = reader.line_num + 1
    except csv.Error as error:
        problems.append((start, f"unreadable CSV ({error}); nothing after this line was read"))
    return rows, problems


@contextmanager
def _csv_fields_up_to(size: int) -> Iterator[None]:
    """Let the csv module read values of up to `size` characters (its own limit is 131,072), so
    that a long value is measured against the importer's limits, not refused unread."""
    previous = csv.field_size_limit(max(size, csv.field_size_limit()))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _header_problems(
    header: list[str], known: frozenset[str], required: tuple[str, ...]
) -> list[str]:
    problems = [f"unknown column {name!r}" for name in header if name not in known]
    problems += [
        f"column {name!r} appears {header.count(name)} times"
        for name in sorted(set(header))
        if header.count(name) > 1
    ]
    problems += [f"missing column {name!r}" for name in required if name not in header]
    return problems


def rejection(path: Path, problems: list[Problem]) -> ImportRejected:
    """Every problem of a file, in line order."""
    ordered = sorted(problems, key=lambda problem: problem[0])
    return ImportRejected(str(path), [f"line {line}: {reason}" for line, reason in ordered])


def describe(value: object) -> str:
    """A JSON value as a person reading the file would name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return "an array"
    return "an object"
