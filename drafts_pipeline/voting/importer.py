"""Import: votes from a JSONL or CSV file, all or nothing, like task import.

Each record has `vote_id`, `task_id`, `voter`, and `winner` (a label, `tie` or `all_bad`) or
`ranking` (every label of the ballot, best first: `B>A>C`), and may have `created_at` (ISO 8601;
without a timezone it is UTC) and `ballot` (the ballot the voter saw, as the voting-ready set
gives it: a vote on a ballot since closed is refused; without it, the current ballot).

A file with one bad record records nothing, and the rejection
lists every bad record by its line: malformed ones, then those the store refuses (a task not in
voting, a label its ballot lacks, a vote id already used for another vote). A vote id already
recorded with the same vote is not an error, so importing a file twice records it once.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from drafts_pipeline.errors import VotesRejected
from drafts_pipeline.row_files import describe, read_rows, rejection
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.votes import VoteInput, parse_choice

REQUIRED_FIELDS = ("vote_id", "task_id", "voter")
CHOICE_FIELDS = ("winner", "ranking")
KNOWN_FIELDS = frozenset({*REQUIRED_FIELDS, *CHOICE_FIELDS, "created_at", "ballot"})
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class VoteImportSummary:
    read: int
    recorded: int
    replaced: int
    """Earlier votes of the same voter and task that the file's votes replaced."""
    already_recorded: int


def import_votes(store: DraftStore, path: Path) -> VoteImportSummary:
    """Check every record of the file, then record the votes in one transaction."""
    rows, problems = read_rows(
        path, known=KNOWN_FIELDS, required=REQUIRED_FIELDS, cells=_filled_cells
    )
    votes: list[VoteInput] = []
    lines: list[int] = []
    for line, fields in rows:
        vote, row_problems = vote_from_fields(fields)
        problems.extend((line, problem) for problem in row_problems)
        if vote is not None:
            votes.append(vote)
            lines.append(line)
    try:
        # With bad records already found, the store only checks the rest (nothing is written),
        # so that one pass names every bad line.
        recorded = store.record_votes(votes, dry_run=bool(problems))
    except VotesRejected as rejected:
        problems.extend((lines[index], reason) for index, reason in rejected.problems)
    if problems:
        raise rejection(path, problems)
    return VoteImportSummary(len(votes), recorded.added, recorded.replaced, recorded.unchanged)


def _filled_cells(cells: dict[str, str]) -> dict[str, object]:
    """A CSV row as a JSON object would hold it: empty optional cells are absent, a ballot
    written in digits a number."""
    return {
        name: int(value) if name == "ballot" and _NUMBER.fullmatch(value.strip()) else value
        for name, value in cells.items()
        if name in REQUIRED_FIELDS or value.strip()
    }


def vote_from_fields(fields: dict[str, object]) -> tuple[VoteInput | None, list[str]]:
    """The vote one record describes, or every reason it cannot be one."""
    problems = [f"unknown field {name!r}" for name in fields if name not in KNOWN_FIELDS]
    text: dict[str, str] = {}
    for name in (*REQUIRED_FIELDS, *CHOICE_FIELDS, "created_at"):
        value = fields.get(name)
        if value is None:
            if name in REQUIRED_FIELDS:
                problems.append(f"missing field {name!r}")
        elif not isinstance(value, str):
            problems.append(f"field {name!r} must be a string, got {describe(value)}")
        elif not value.strip():
            problems.append(f"field {name!r} is empty")
        else:
            text[name] = value
    # A null choice field counts as absent, as an empty CSV cell does.
    present = [name for name in CHOICE_FIELDS if fields.get(name) is not None]
    if not present:
        problems.append("missing field 'winner' or 'ranking'")
    elif len(present) > 1:
        problems.append("give 'winner' or 'ranking', not both")
    elif present[0] in text:
        problems += _choice_problems(present[0], text[present[0]])
    created_at = None
    if "created_at" in text:
        try:
            created_at = datetime.fromisoformat(text["created_at"].strip())
        except ValueError:
            problems.append(f"field 'created_at' is not an ISO 8601 time: {text['created_at']!r}")
        else:
            if created_at.tzinfo is None:
                created_at = created_at.replace(tzinfo=UTC)
    ballot = fields.get("ballot")
    if ballot is not None and (not isinstance(ballot, int) or isinstance(ballot, bool)):
        problems.append(f"field 'ballot' must be an integer, got {describe(ballot)}")
    elif ballot is not None and ballot < 1:
        problems.append(f"field 'ballot' is {ballot}: ballots are numbered from 1")
    if problems:
        return None, problems
    return (
        VoteInput(
            vote_id=text["vote_id"],
            task_id=text["task_id"],
            voter=text["voter"],
            choice=text[present[0]],
            created_at=created_at,
            ballot=ballot if isinstance(ballot, int) else None,
        ),
        [],
    )


def _choice_problems(field: str, choice: str) -> list[str]:
    """A `winner` names one label, `tie` or `all_bad`; a `ranking` orders two labels or more.
    Whether the labels are the ballot's is the store's check."""
    try:
        kind, _ = parse_choice(choice)
    except ValueError as error:
        return [f"field {field!r}: {error}"]
    if field == "winner" and kind == "ranking":
        return [f"field 'winner' holds a ranking ({choice!r}): put it in 'ranking'"]
    if field == "ranking" and kind != "ranking":
        return [f"field 'ranking' holds {choice!r}: a ranking orders every label, as B>A>C"]
    return []
