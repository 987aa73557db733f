"""Vote import: every bad record reported by its line, nothing half-recorded, re-import a
no-op, rankings expanded into pairs."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from drafts_pipeline.errors import ImportRejected
from drafts_pipeline.store import DraftStore
from drafts_pipeline.voting.importer import import_votes
from drafts_pipeline_tests.factories import in_voting, make_task, reopened_in_voting

CSV_HEADER = ["vote_id", "task_id", "voter", "winner", "ranking", "created_at"]


def write_jsonl(tmp_path: Path, records: list[object]) -> Path:
    path = tmp_path / "votes.jsonl"
    path.write_text("".join(f"{json.dumps(record)}\n" for record in records))
    return path


def write_csv(tmp_path: Path, rows: list[dict[str, str]], header: list[str] = CSV_HEADER) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / "votes.csv"
    path.write_text(buffer.getvalue())
    return path


def rejection(store: DraftStore, path: Path) -> list[str]:
    with pytest.raises(ImportRejected) as rejected:
        import_votes(store, path)
    return rejected.value.problems


def test_a_good_file_of_each_kind(store: DraftStore, tmp_path: Path) -> None:
    labels = in_voting(store, "t.one")
    in_voting(store, "t.two", seed=3)
    jsonl = write_jsonl(
        tmp_path,
        [
            {"vote_id": "v1", "task_id": "t.one", "voter": "ann", "winner": "B"},
            {"vote_id": "v2", "task_id": "t.one", "voter": "bob", "ranking": "C>A>B",
             "created_at": "2026-11-30T10:00:00+01:00"},
            {"vote_id": "v3", "task_id": "t.two", "voter": "ann", "winner": "tie"},
        ],
    )  # fmt: skip
    summary = import_votes(store, jsonl)
    assert (summary.read, summary.recorded, summary.replaced, summary.already_recorded) == (
        3, 3, 0, 0,
    )  # fmt: skip
    rows = [
        {"vote_id": "v4", "task_id": "t.two", "voter": "cy", "winner": "all_bad"},
        # A later vote of ann on t.one replaces her first.
        {"vote_id": "v5", "task_id": "t.one", "voter": "ann", "ranking": "A>C>B",
         "created_at": "2099-01-01T00:00:00"},
    ]  # fmt: skip
    summary = import_votes(store, write_csv(tmp_path, rows))
    assert (summary.recorded, summary.replaced) == (2, 1)

    by_id = {vote.vote_id: vote for vote in store.vote_outcomes()}
    assert sorted(by_id) == ["v2", "v3", "v4", "v5"]
    provider = labels.__getitem__
    # A ranking of three is three pairs, best over each below it.
    assert by_id["v5"].pairs() == [
        (provider("A"), provider("C"), 1.0),
        (provider("A"), provider("B"), 1.0),
        (provider("C"), provider("B"), 1.0),
    ]
    assert by_id["v2"].created_at.isoformat() == "2026-11-30T09:00:00+00:00"
    assert by_id["v5"].created_at.isoformat() == "2099-01-01T00:00:00+00:00"


def test_reimport_is_a_no_op(store: DraftStore, tmp_path: Path) -> None:
    in_voting(store, "t.one")
    path = write_jsonl(
        tmp_path,
        [
            {"vote_id": "v1", "task_id": "t.one", "voter": "ann", "winner": "b"},
            {"vote_id": "v2", "task_id": "t.one", "voter": "bob", "ranking": "C > A > B"},
        ],
    )
    assert import_votes(store, path).recorded == 2
    again = import_votes(store, path)
    assert (again.read, again.recorded, again.already_recorded) == (2, 0, 2)
    assert len(store.vote_outcomes()) == 2


def test_every_bad_record_is_reported_and_nothing_recorded(
    store: DraftStore, tmp_path: Path
) -> None:
    in_voting(store, "t.one")
    store.add_tasks([make_task("t.drafting")])
    good = {"vote_id": "ok", "task_id": "t.one", "voter": "ann", "winner": "A"}
    path = tmp_path / "votes.jsonl"
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"vote_id": "v4", "task_id": "t.one", "voter": "bob"}),
        json.dumps({"vote_id": "v5", "task_id": "t.one", "voter": "bob", "winner": "A",
                    "ranking": "A>B>C"}),
        json.dumps({"vote_id": "v6", "task_id": "t.one", "voter": "bob", "winner": "A>B>C"}),
        json.dumps({"vote_id": "v7", "task_id": "t.one", "voter": "bob", "ranking": "A"}),
        json.dumps({"vote_id": "v8", "task_id": "t.one", "voter": 7, "winner": "A"}),
        json.dumps({"vote_id": "v9", "task_id": "t.one", "voter": "bob", "winner": "A",
                    "created_at": "yesterday", "colour": "red"}),
        json.dumps({"vote_id": "v10", "task_id": "t.drafting", "voter": "bob", "winner": "A"}),
        json.dumps({"vote_id": "v11", "task_id": "t.nope", "voter": "bob", "winner": "A"}),
        json.dumps({"vote_id": "v12", "task_id": "t.one", "voter": "bob", "winner": "F"}),
        json.dumps({"vote_id": "v13", "task_id": "t.one", "voter": "bob", "ranking": "A>B"}),
        json.dumps({**good, "winner": "B"}),
        json.dumps({"vote_id": "v15", "task_id": "t.one", "voter": "bob", "winner": "best"}),
        json.dumps({"vote_id": "v16", "task_id": "t.one", "voter": "bob", "winner": None}),
        json.dumps({"vote_id": "v17", "task_id": "t.one", "voter": "bob", "winner": None,
                    "ranking": "A>B"}),
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    problems = rejection(store, path)
    assert problems == [
        "line 2: bad JSON: Expecting property name enclosed in double quotes (column 2)",
        "line 3: not a JSON object, got an array",
        "line 4: missing field 'winner' or 'ranking'",
        "line 5: give 'winner' or 'ranking', not both",
        "line 6: field 'winner' holds a ranking ('A>B>C'): put it in 'ranking'",
        "line 7: field 'ranking' holds 'A': a ranking orders every label, as B>A>C",
        "line 8: field 'voter' must be a string, got a number (7)",
        "line 9: unknown field 'colour'",
        "line 9: field 'created_at' is not an ISO 8601 time: 'yesterday'",
        "line 10: task 't.drafting' is in drafting, not voting: it takes no votes",
        "line 11: task 't.nope' does not exist",
        "line 12: task 't.one': label(s) F not on the ballot (it has A, B, C)",
        "line 13: task 't.one': ranking A>B leaves out C: rank every label",
        "line 14: vote id 'ok' is given twice for different votes",
        "line 15: field 'winner': choice 'best' is not a label (A), a ranking (B>A>C), "
        "'tie' or 'all_bad'",
        # A null choice is no choice: the record is judged by the other field.
        "line 16: missing field 'winner' or 'ranking'",
        "line 17: task 't.one': ranking A>B leaves out C: rank every label",
    ]
    assert store.vote_outcomes() == []


def test_a_vote_names_the_ballot_it_was_cast_on(store: DraftStore, tmp_path: Path) -> None:
    in_voting(store, "t.one")
    in_voting(store, "t.two", seed=3)
    # Votes cast on t.one's first ballot, imported after it was reopened and balloted again.
    second = reopened_in_voting(store, "t.one", seed=5)
    vote = {"task_id": "t.one", "winner": "A"}
    stale = write_jsonl(
        tmp_path,
        [
            {**vote, "vote_id": "v1", "voter": "ann", "ballot": 2},
            {**vote, "vote_id": "v2", "voter": "bob", "ballot": 1},
            {**vote, "vote_id": "v3", "voter": "cy", "ballot": "2"},
            {**vote, "vote_id": "v4", "voter": "dee", "ballot": 0},
            {"vote_id": "v5", "task_id": "t.two", "voter": "ann", "winner": "B", "ballot": 1},
        ],
    )
    assert rejection(store, stale) == [
        "line 2: task 't.one' was reopened: the vote is for ballot 1, its current ballot is 2",
        "line 3: field 'ballot' must be an integer, got a string ('2')",
        "line 4: field 'ballot' is 0: ballots are numbered from 1",
    ]
    assert store.vote_outcomes() == []

    csv_rows = [
        {"vote_id": "v1", "task_id": "t.one", "voter": "ann", "winner": "A", "ballot": "2"},
        {"vote_id": "v5", "task_id": "t.two", "voter": "ann", "winner": "B", "ballot": "1"},
        # Written before votes carried their ballot: the current one.
        {"vote_id": "v6", "task_id": "t.one", "voter": "bob", "winner": "C", "ballot": ""},
    ]
    path = write_csv(tmp_path, csv_rows, header=[*CSV_HEADER, "ballot"])
    assert import_votes(store, path).recorded == 3
    outcomes = {outcome.vote_id: outcome for outcome in store.vote_outcomes()}
    assert {vote_id: o.ballot for vote_id, o in outcomes.items()} == {"v1": 2, "v5": 1, "v6": 2}
    assert outcomes["v1"].order == (second["A"],)
    bad = write_csv(
        tmp_path,
        [{"vote_id": "v7", "task_id": "t.one", "voter": "cy", "winner": "A", "ballot": "1"}],
        header=[*CSV_HEADER, "ballot"],
    )
    assert rejection(store, bad) == [
        "line 2: task 't.one' was reopened: the vote is for ballot 1, its current ballot is 2"
    ]


def test_a_bad_csv_header_and_rows(store: DraftStore, tmp_path: Path) -> None:
    in_voting(store, "t.one")
    header = write_csv(tmp_path, [], header=["vote_id", "task", "voter", "winner"])
    assert rejection(store, header) == [
        "line 1: unknown column 'task'",
        "line 1: missing column 'task_id'",
    ]
    rows = write_csv(
        tmp_path,
        [
            {"vote_id": "v1", "task_id": "t.one", "voter": "ann", "winner": "A"},
            {"vote_id": "", "task_id": "t.one", "voter": "bob", "winner": "A"},
            {"vote_id": "v3", "task_id": "t.one", "voter": "cy"},
        ],
    )
    assert rejection(store, rows) == [
        "line 3: field 'vote_id' is empty",
        "line 4: missing field 'winner' or 'ranking'",
    ]
    assert store.vote_outcomes() == []


@pytest.mark.slow
def test_the_command_exits_2_naming_each_bad_line(store: DraftStore, tmp_path: Path) -> None:
    in_voting(store, "t.one")
    good = write_jsonl(
        tmp_path, [{"vote_id": "v1", "task_id": "t.one", "voter": "ann", "winner": "A"}]
    )
    env = {"DRAFTS_DATABASE_URL": store.database_url, "PATH": "/usr/bin:/bin"}

    def command(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "drafts_pipeline", "votes", "import", str(path)],
            capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
        )  # fmt: skip

    done = command(good)
    assert (done.returncode, done.stdout.strip()) == (
        0,
        "1 vote(s) read, 1 recorded (0 replacing a voter's earlier vote), 0 already recorded",
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"vote_id": "v2", "task_id": "t.one", "voter": "bob", "winner": "Q"}\n')
    refused = command(bad)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"error: {bad}: 1 bad row(s), nothing imported:",
        "  line 1: task 't.one': label(s) Q not on the ballot (it has A, B, C)",
    ]
    assert [vote.vote_id for vote in store.vote_outcomes()] == ["v1"]
