"""Import: documentation tasks from a JSONL or CSV file, all or nothing.

A file with one bad row imports nothing, and the rejection lists every bad row by its line number,
so a person fixes the file in one pass. A row whose code or context is over the size limits
(`DRAFTS_MAX_CODE_CHARS`, `DRAFTS_MAX_CONTEXT_CHARS`) is a bad row. Ids already stored are not an
error: importing the same file twice creates its tasks once, and a row whose code or context
changed updates its task, or reopens it on a new ballot (`store/history.py`).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from drafts_pipeline.prompts.templates import CHOOSE, known_template, template_names
from drafts_pipeline.row_files import describe, read_rows, rejection
from drafts_pipeline.store import DraftStore, TaskInput, TaskSizeLimits
from drafts_pipeline.store.models import DocumentationTask, column_length

REQUIRED_FIELDS = ("id", "symbol", "language", "code")
OPTIONAL_TEXT_FIELDS = ("context", "source_path", "template")
KNOWN_FIELDS = frozenset({*REQUIRED_FIELDS, *OPTIONAL_TEXT_FIELDS, "priority"})
MAX_LENGTHS: dict[str, int] = {
    name: column_length(DocumentationTask, name)
    for name in ("id", "symbol", "language", "source_path")
}
PRIORITY_RANGE = range(-(2**31), 2**31)

_INTEGER = re.compile(r"[+-]?\d+")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ImportSummary:
    """How many tasks a file held, how many were new, and of those the store had, how many
    were unchanged, updated (in `drafting`) or reopened (source changed)."""

    read: int
    created: int
    unchanged: int = 0
    updated: int = 0
    reopened: int = 0

    @property
    def already_present(self) -> int:
        return self.unchanged + self.updated + self.reopened


def import_tasks(
    store: DraftStore, path: Path, limits: TaskSizeLimits | None = None
) -> ImportSummary:
    """Read the file, then store its tasks in one transaction: new ids created, stored ones
    whose code or context changed updated or reopened. `limits`: the size limits, else the
    environment's."""
    limits = TaskSizeLimits.from_environment() if limits is None else limits
    tasks = read_task_file(path, limits)
    synced = store.sync_tasks(tasks, limits=limits)
    return ImportSummary(
        read=len(tasks),
        created=len(synced.new),
        unchanged=len(synced.unchanged),
        updated=len(synced.updated),
        reopened=len(synced.reopened),
    )


def read_task_file(path: Path, limits: TaskSizeLimits | None = None) -> list[TaskInput]:
    """Every task in a `.jsonl` or `.csv` file; `ImportRejected` listing each bad row otherwise.
    `limits`: the size limits, else the environment's."""
    limits = TaskSizeLimits.from_environment() if limits is None else limits
    rows, problems = read_rows(
        path, known=KNOWN_FIELDS, required=REQUIRED_FIELDS, cells=_typed_cells
    )
    tasks: list[TaskInput] = []
    first_line_of: dict[str, int] = {}
    for line, fields in rows:
        task_id = fields.get("id")
        if isinstance(task_id, str) and task_id.strip():
            if task_id in first_line_of:
                problems.append(
                    (line, f"duplicate id {task_id!r} (first on line {first_line_of[task_id]})")
                )
            else:
                first_line_of[task_id] = line
        task, row_problems = task_from_fields(fields, limits)
        problems.extend((line, problem) for problem in row_problems)
        if task is not None:
            tasks.append(task)
    if problems:
        raise rejection(path, problems)
    return tasks


def _typed_cells(cells: dict[str, str]) -> dict[str, object]:
    typed: dict[str, object] = {}
    for name, value in cells.items():
        if name in REQUIRED_FIELDS:
            typed[name] = value
        elif name == "priority" and _INTEGER.fullmatch(value.strip()):
            typed[name] = int(value)
        elif value.strip():
            typed[name] = value
    return typed


def task_from_fields(
    fields: Mapping[str, object], limits: TaskSizeLimits | None = None
) -> tuple[TaskInput | None, list[str]]:
    """The task one row describes, or the reasons it cannot be one (all of them, not the first).
    `limits`: the size limits, else the environment's."""
    limits = TaskSizeLimits.from_environment() if limits is None else limits
    problems = [f"unknown field {name!r}" for name in fields if name not in KNOWN_FIELDS]
    text: dict[str, str] = {}
    for name in REQUIRED_FIELDS:
        if name not in fields:
            problems.append(f"missing field {name!r}")
            continue
        value = fields[name]
        if not isinstance(value, str):
            problems.append(f"field {name!r} must be a string, got {describe(value)}")
        elif not value.strip():
            problems.append(f"field {name!r} is empty")
        else:
            text[name] = value
    for name in OPTIONAL_TEXT_FIELDS:
        value = fields.get(name)
        if isinstance(value, str):
            text[name] = value
        elif value is not None:
            problems.append(f"field {name!r} must be a string, got {describe(value)}")

    for name, value in text.items():
        if "\x00" in value:
            problems.append(f"field {name!r} contains a NUL character, which no database stores")
        limit = MAX_LENGTHS.get(name)
        if limit is not None and len(value) > limit:
            problems.append(f"field {name!r} is {len(value)} characters long; at most {limit}")
    problems += limits.problems(text.get("code", ""), text.get("context", ""))
    if "id" in text:
        problems += _id_problems(text["id"])
    template = text.get("template", CHOOSE)
    if not known_template(template):
        problems.append(f"unknown template {template!r}; known: {', '.join(template_names())}")

    priority = fields.get("priority", 0)
    if priority is None:
        priority = 0
    if not isinstance(priority, int) or isinstance(priority, bool):
        problems.append(f"field 'priority' must be an integer, got {describe(priority)}")
    elif priority not in PRIORITY_RANGE:
        problems.append(f"field 'priority' is {priority}, outside the 32-bit integer range")

    if problems:
        return None, problems
    return (
        TaskInput(
            id=text["id"],
            symbol=text["symbol"],
            language=text["language"],
            code=text["code"],
            context=text.get("context", ""),
            source_path=text.get("source_path") or None,
            template=template,
            priority=priority if isinstance(priority, int) else 0,
        ),
        [],
    )


def _id_problems(task_id: str) -> list[str]:
    """An id is a Dagster partition key: no comma (the design's rule), none of the substrings
    Dagster refuses in partition keys (`...`, control characters), and no stray whitespace."""
    problems = []
    if "," in task_id:
        problems.append(f"id {task_id!r} contains a comma")
    if "..." in task_id:
        problems.append(f"id {task_id!r} contains '...'")
    if _CONTROL_CHARACTER.search(task_id):
        problems.append(f"id {task_id!r} contains a control character")
    if task_id != task_id.strip():
        problems.append(f"id {task_id!r} has leading or trailing whitespace")
    return problems
