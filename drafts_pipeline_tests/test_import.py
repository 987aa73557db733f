"""Import: every bad row reported by its line, nothing half-imported, re-import idempotent."""

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from drafts_pipeline.errors import (
    ConfigurationError,
    DraftsError,
    ImportRejected,
    TaskValidationError,
)
from drafts_pipeline.store import DraftStore, TaskInput, TaskSizeLimits
from drafts_pipeline.store.models import DocumentationTask
from drafts_pipeline.tasks.importer import ImportSummary, import_tasks, read_task_file

GOOD = {"id": "pkg.module.f", "symbol": "f", "language": "python", "code": "def f():\n    pass"}
CSV_HEADER = ["id", "symbol", "language", "code", "context", "source_path", "template", "priority"]


def jsonl_line(**fields: object) -> str:
    return json.dumps(fields)


def write_jsonl(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_csv(tmp_path: Path, rows: list[list[str]], header: list[str] = CSV_HEADER) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path = tmp_path / "tasks.csv"
    path.write_text(buffer.getvalue())
    return path


def csv_row(**fields: str) -> list[str]:
    """A full CSV row: GOOD's values, overridden by `fields`, empty where not given."""
    values = {**GOOD, **fields}
    return [str(values.get(name, "")) for name in CSV_HEADER]


def rejection(path: Path) -> list[str]:
    with pytest.raises(ImportRejected) as rejected:
        read_task_file(path)
    assert rejected.value.path == str(path)
    return rejected.value.problems


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        pytest.param('{"id": "x", "symbol": ', "bad JSON", id="bad JSON"),
        pytest.param("[1, 2, 3]", "not a JSON object, got an array", id="array"),
        pytest.param('"just a string"', "not a JSON object, got a string", id="string"),
        *(
            pytest.param(
                jsonl_line(**{k: v for k, v in GOOD.items() if k != missing} | {"id": "other"}),
                f"missing field {missing!r}",
                id=f"missing {missing}",
            )
            for missing in ("symbol", "language", "code")
        ),
        pytest.param(
            jsonl_line(symbol="g", language="python", code="pass"),
            "missing field 'id'",
            id="missing id",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "other", "code": ""}),
            "field 'code' is empty",
            id="empty code",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "other", "code": "  \n\t "}),
            "field 'code' is empty",
            id="whitespace code",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "other", "priority": "high"}),
            "field 'priority' must be an integer, got a string ('high')",
            id="priority string",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "other", "priority": 1.5}),
            "field 'priority' must be an integer, got a number (1.5)",
            id="priority float",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "other", "priority": True}),
            "field 'priority' must be an integer, got a boolean (true)",
            id="priority boolean",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "other", "priority": 2**31}),
            "field 'priority' is 2147483648, outside the 32-bit integer range",
            id="priority out of range",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": 7}),
            "field 'id' must be a string, got a number (7)",
            id="id number",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "other", "symbol": ["f"]}),
            "field 'symbol' must be a string, got an array",
            id="symbol array",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "other", "language": None}),
            "field 'language' must be a string, got null",
            id="language null",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "other", "context": {"a": 1}}),
            "field 'context' must be a string, got an object",
            id="context object",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "other", "owner": "me"}),
            "unknown field 'owner'",
            id="unknown field",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "a,b"}), "id 'a,b' contains a comma", id="comma in id"
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "x" * 129}),
            "field 'id' is 129 characters long; at most 128",
            id="id too long",
        ),
        pytest.param(jsonl_line(**GOOD | {"id": ""}), "field 'id' is empty", id="empty id"),
        pytest.param(jsonl_line(**GOOD | {"id": "   "}), "field 'id' is empty", id="blank id"),
        pytest.param(
            jsonl_line(**GOOD | {"id": "a...b"}), "id 'a...b' contains '...'", id="range in id"
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "a\tb"}),
            "id 'a\\tb' contains a control character",
            id="tab in id",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": " other"}),
            "id ' other' has leading or trailing whitespace",
            id="padded id",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "other", "template": "haiku"}),
            "unknown template 'haiku'; known: any-symbol, docstring, go-function",
            id="unknown template",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "other", "code": "x = '\x00'"}),
            "field 'code' contains a NUL character",
            id="NUL in code",
        ),
        pytest.param(
            jsonl_line(**GOOD | {"id": "other", "symbol": "s" * 513}),
            "field 'symbol' is 513 characters long; at most 512",
            id="symbol too long",
        ),
    ],
)
def test_a_bad_jsonl_row_is_reported_with_its_line(
    tmp_path: Path, bad_line: str, reason: str
) -> None:
    path = write_jsonl(
        tmp_path, [jsonl_line(**GOOD), "", bad_line, jsonl_line(**GOOD | {"id": "z"})]
    )

    problems = rejection(path)

    assert len(problems) == 1
    assert problems[0].startswith(f"line 3: {reason}")


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        pytest.param(csv_row(id="other", code=""), "field 'code' is empty", id="empty code"),
        pytest.param(
            csv_row(id="other", code=" \n "), "field 'code' is empty", id="whitespace code"
        ),
        pytest.param(csv_row(id="other", symbol=""), "field 'symbol' is empty", id="empty symbol"),
        pytest.param(
            csv_row(id="other", priority="high"),
            "field 'priority' must be an integer, got a string ('high')",
            id="priority word",
        ),
        pytest.param(
            csv_row(id="other", priority="2.5"),
            "field 'priority' must be an integer, got a string ('2.5')",
            id="priority decimal",
        ),
        pytest.param(csv_row(id="a,b"), "id 'a,b' contains a comma", id="comma in id"),
        pytest.param(
            csv_row(id="y" * 200),
            "field 'id' is 200 characters long; at most 128",
            id="id too long",
        ),
        pytest.param(csv_row(id=""), "field 'id' is empty", id="empty id"),
        pytest.param(
            csv_row(id="other", template="haiku"),
            "unknown template 'haiku'; known: any-symbol, docstring, go-function",
            id="unknown template",
        ),
        pytest.param(
            csv_row(id="other")[:4],
            "4 values, but the header has 8 columns",
            id="short row",
        ),
        pytest.param(
            [*csv_row(id="other"), "extra"],
            "9 values, but the header has 8 columns",
            id="long row",
        ),
    ],
)
def test_a_bad_csv_row_is_reported_with_the_line_it_starts_on(
    tmp_path: Path, bad_row: list[str], reason: str
) -> None:
    multi_line = csv_row(id="multi", code="def g():\n    x = 1\n    return x")
    path = write_csv(tmp_path, [multi_line, bad_row, csv_row(id="last")])

    problems = rejection(path)

    assert len(problems) == 1
    assert problems[0].startswith(f"line 5: {reason}")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        pytest.param([*CSV_HEADER, "owner"], "unknown column 'owner'", id="unknown column"),
        pytest.param(
            [name for name in CSV_HEADER if name != "code"],
            "missing column 'code'",
            id="missing column",
        ),
        pytest.param([*CSV_HEADER, "id"], "column 'id' appears 2 times", id="repeated column"),
    ],
)
def test_a_bad_csv_header_is_reported_on_line_1(
    tmp_path: Path, header: list[str], reason: str
) -> None:
    path = write_csv(tmp_path, [["a"] * len(header)], header=header)

    assert rejection(path) == [f"line 1: {reason}"]


def test_an_unterminated_csv_quote_is_reported_where_its_row_starts(tmp_path: Path) -> None:
    path = tmp_path / "tasks.csv"
    path.write_text('id,symbol,language,code\na,f,python,pass\nb,g,python,"def g():\n  pass\n')

    problems = rejection(path)

    assert len(problems) == 1
    assert problems[0].startswith("line 3: unreadable CSV")


def test_a_duplicate_id_names_the_line_of_its_first_occurrence(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path,
        [
            jsonl_line(**GOOD | {"id": "first"}),
            jsonl_line(**GOOD | {"id": "twice"}),
            jsonl_line(**GOOD | {"id": "third"}),
            jsonl_line(**GOOD | {"id": "twice"}),
        ],
    )

    assert rejection(path) == ["line 4: duplicate id 'twice' (first on line 2)"]


def test_a_duplicate_id_in_csv_counts_lines_of_multi_line_values(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        [
            csv_row(id="twice", code="def f():\n\n    pass\n"),
            csv_row(id="other", code="pass"),
            csv_row(id="twice"),
        ],
    )

    assert rejection(path) == ["line 7: duplicate id 'twice' (first on line 2)"]


def test_every_bad_row_of_a_file_is_reported_in_line_order(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path,
        [
            jsonl_line(**GOOD),
            "not json",
            jsonl_line(**GOOD | {"id": "b", "code": " "}),
            jsonl_line(**GOOD | {"id": "c"}),
            "",
            jsonl_line(id="d", symbol="d", language="python"),
            jsonl_line(**GOOD | {"id": "e", "priority": "1", "colour": "red"}),
        ],
    )

    problems = rejection(path)

    assert [problem.split(":")[0] for problem in problems] == [
        "line 2",
        "line 3",
        "line 6",
        "line 7",
        "line 7",
    ]
    assert problems[1:] == [
        "line 3: field 'code' is empty",
        "line 6: missing field 'code'",
        "line 7: unknown field 'colour'",
        "line 7: field 'priority' must be an integer, got a string ('1')",
    ]


def test_the_rejection_message_lists_the_file_and_every_problem(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, ["[]", jsonl_line(**GOOD | {"id": "a,b"})])

    with pytest.raises(ImportRejected) as rejected:
        read_task_file(path)

    message = str(rejected.value)
    assert message.startswith(f"{path}: 2 bad row(s), nothing imported")
    assert "line 1: not a JSON object" in message
    assert "line 2: id 'a,b' contains a comma" in message


def test_a_good_jsonl_file_reads_with_defaults(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path,
        [
            jsonl_line(**GOOD),
            "   ",
            jsonl_line(
                id="b",
                symbol="B.m",
                language="python",
                code="def m(self): ...",
                context="class B:",
                source_path="pkg/b.py",
                template="docstring",
                priority=-3,
            ),
            jsonl_line(**GOOD | {"id": "c", "context": None, "priority": None}),
        ],
    )

    assert read_task_file(path) == [
        TaskInput(**GOOD),
        TaskInput(
            id="b",
            symbol="B.m",
            language="python",
            code="def m(self): ...",
            context="class B:",
            source_path="pkg/b.py",
            template="docstring",
            priority=-3,
        ),
        TaskInput(**GOOD | {"id": "c"}),
    ]


def test_a_good_csv_file_reads_with_defaults_and_exact_code(tmp_path: Path) -> None:
    code = 'def g(x):\n    """"""\n    return "a, b"\n'
    path = write_csv(
        tmp_path,
        [
            csv_row(),
            [],
            csv_row(id="g", symbol="g", code=code, source_path="pkg/g.py", priority=" 5 "),
        ],
    )

    assert read_task_file(path) == [
        TaskInput(**GOOD),
        TaskInput(
            id="g", symbol="g", language="python", code=code, source_path="pkg/g.py", priority=5
        ),
    ]


def test_a_csv_file_with_a_byte_order_mark_and_only_required_columns_reads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.csv"
    path.write_bytes("\ufeffid,symbol,language,code\r\na,f,python,pass\r\n".encode())

    assert read_task_file(path) == [TaskInput(id="a", symbol="f", language="python", code="pass")]


@pytest.mark.parametrize("name", ["tasks.jsonl", "tasks.csv"])
def test_an_empty_file_holds_no_tasks(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("")

    assert read_task_file(path) == []


@pytest.mark.parametrize("name", ["tasks.json", "tasks.txt", "tasks"])
def test_an_unsupported_file_type_is_refused_by_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("{}")

    with pytest.raises(DraftsError) as refused:
        read_task_file(path)

    assert str(path) in str(refused.value)
    assert ".csv, .jsonl" in str(refused.value)


def test_a_file_that_is_not_utf8_is_rejected_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_bytes(jsonl_line(**GOOD).encode() + b'\n{"id": "caf\xe9"}\n')

    assert rejection(path) == ["line 2: not UTF-8 text"]


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.jsonl"

    with pytest.raises(DraftsError, match=r"absent\.jsonl"):
        read_task_file(path)


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_rejected_file_writes_nothing(tmp_path: Path, store: DraftStore, suffix: str) -> None:
    if suffix == "jsonl":
        path = write_jsonl(
            tmp_path, [jsonl_line(**GOOD), jsonl_line(**GOOD | {"id": "b", "code": ""})]
        )
    else:
        path = write_csv(tmp_path, [csv_row(), csv_row(id="b", priority="x")])

    with pytest.raises(ImportRejected):
        import_tasks(store, path)

    assert store.task_ids("drafting") == []


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_importing_twice_creates_each_task_once(
    tmp_path: Path, store: DraftStore, suffix: str
) -> None:
    if suffix == "jsonl":
        path = write_jsonl(tmp_path, [jsonl_line(**GOOD), jsonl_line(**GOOD | {"id": "b"})])
    else:
        path = write_csv(tmp_path, [csv_row(), csv_row(id="b")])

    assert import_tasks(store, path) == ImportSummary(read=2, created=2)
    assert import_tasks(store, path) == ImportSummary(read=2, created=0, unchanged=2)
    assert store.task_ids("drafting") == ["pkg.module.f", "b"]


def test_ids_already_stored_are_not_an_error(tmp_path: Path, store: DraftStore) -> None:
    store.add_tasks([TaskInput(**GOOD)])
    path = write_jsonl(tmp_path, [jsonl_line(**GOOD), jsonl_line(**GOOD | {"id": "new"})])

    assert import_tasks(store, path) == ImportSummary(read=2, created=1, unchanged=1)
    assert store.task_ids("drafting") == ["pkg.module.f", "new"]


def test_imported_fields_are_stored_as_read(tmp_path: Path, store: DraftStore) -> None:
    code = "def f():\n    return 'ünïcode'\n"
    path = write_csv(
        tmp_path,
        [csv_row(code=code, context="class C:", source_path="pkg/c.py", priority="7")],
    )

    import_tasks(store, path)

    row = store.tasks_by_id(["pkg.module.f"])["pkg.module.f"]
    assert (row.code, row.context, row.source_path, row.priority, row.template, row.status) == (
        code,
        "class C:",
        "pkg/c.py",
        7,
        "docstring",
        "drafting",
    )


def count_tasks(store: DraftStore) -> int:
    with store.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(DocumentationTask)).scalar_one()


@pytest.fixture
def default_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRAFTS_MAX_CODE_CHARS", raising=False)
    monkeypatch.delenv("DRAFTS_MAX_CONTEXT_CHARS", raising=False)


@pytest.mark.usefixtures("default_limits")
@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_oversized_code_and_context_are_rejected_by_line_and_nothing_is_imported(
    tmp_path: Path, store: DraftStore, suffix: str
) -> None:
    """At the default limits: code of 50,000 characters and context of 200,000 are tasks, one
    character more is a bad row (in CSV too, past the csv module's own 131,072)."""
    rows = [
        GOOD | {"id": "at.limit", "code": "x" * 50_000, "context": "c" * 200_000},
        GOOD | {"id": "too.much.code", "code": "x" * 50_001},
        GOOD | {"id": "fine"},
        GOOD | {"id": "too.much.context", "context": "c" * 200_001},
    ]
    if suffix == "jsonl":
        path = write_jsonl(tmp_path, [jsonl_line(**row) for row in rows])
        lines = (2, 4)
    else:
        path = write_csv(tmp_path, [csv_row(**row) for row in rows])
        lines = (3, 6)  # after the header; GOOD's code spans lines 4 and 5

    with pytest.raises(ImportRejected) as rejected:
        import_tasks(store, path)

    assert rejected.value.problems == [
        f"line {lines[0]}: field 'code' is 50001 characters long; "
        "at most 50000 (DRAFTS_MAX_CODE_CHARS)",
        f"line {lines[1]}: field 'context' is 200001 characters long; "
        "at most 200000 (DRAFTS_MAX_CONTEXT_CHARS)",
    ]
    assert count_tasks(store) == 0


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_the_size_limits_come_from_the_environment(
    tmp_path: Path, store: DraftStore, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [GOOD | {"id": "short", "code": "x" * 40}, GOOD | {"id": "long", "code": "x" * 41}]
    if suffix == "jsonl":
        path = write_jsonl(tmp_path, [jsonl_line(**row) for row in rows])
    else:
        path = write_csv(tmp_path, [csv_row(**row) for row in rows])
    monkeypatch.setenv("DRAFTS_MAX_CODE_CHARS", "40")

    with pytest.raises(ImportRejected) as rejected:
        import_tasks(store, path)
    assert [problem.split(": ", 1)[1] for problem in rejected.value.problems] == [
        "field 'code' is 41 characters long; at most 40 (DRAFTS_MAX_CODE_CHARS)"
    ]
    assert count_tasks(store) == 0

    monkeypatch.setenv("DRAFTS_MAX_CODE_CHARS", "41")
    assert import_tasks(store, path).created == 2


@pytest.mark.parametrize(
    ("variable", "raw"),
    [("DRAFTS_MAX_CODE_CHARS", "lots"), ("DRAFTS_MAX_CONTEXT_CHARS", "0")],
)
def test_a_bad_size_limit_is_a_configuration_error_and_imports_nothing(
    tmp_path: Path, store: DraftStore, monkeypatch: pytest.MonkeyPatch, variable: str, raw: str
) -> None:
    monkeypatch.setenv(variable, raw)
    path = write_jsonl(tmp_path, [jsonl_line(**GOOD)])

    with pytest.raises(ConfigurationError) as raised:
        import_tasks(store, path)

    assert str(raised.value) == f"{variable}={raw!r} must be a whole number of at least 1"
    assert count_tasks(store) == 0


@pytest.mark.usefixtures("default_limits")
def test_the_store_refuses_an_oversized_task_from_the_python_api(store: DraftStore) -> None:
    """`add_tasks` is the one way into the store: a task too large to draft is refused there
    too, with the tasks of the same call."""
    tasks = [TaskInput(**GOOD), TaskInput(**GOOD | {"id": "big", "code": "x" * 50_001})]

    with pytest.raises(TaskValidationError) as raised:
        store.add_tasks(tasks)
    assert str(raised.value) == (
        "1 task(s) over the size limits, nothing stored: task 'big': field 'code' is 50001 "
        "characters long; at most 50000 (DRAFTS_MAX_CODE_CHARS)"
    )
    with pytest.raises(TaskValidationError, match=r"task 'pkg\.module\.f': field 'context'"):
        store.add_tasks([TaskInput(**GOOD | {"context": "c" * 11})], TaskSizeLimits(context=10))
    assert count_tasks(store) == 0
    assert store.add_tasks(tasks[:1]) == 1
