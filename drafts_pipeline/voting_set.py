"""The voting-ready set: what the voting application reads. It never names a provider or model.
Each row carries its task's ballot, so that a vote cast from it says which drafts it judged."""

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from drafts_pipeline.drafting.blindness import blindness_leaks
from drafts_pipeline.llm.provider_file import configured_providers, leak_names
from drafts_pipeline.store import DraftStore

if TYPE_CHECKING:
    # Imported where a frame is made: the runs that draft never need pandas (0.3 s to import).
    import pandas as pd

COLUMNS = [
    "task_id",
    "symbol",
    "language",
    "source_path",
    "code",
    "ballot",
    "label",
    "content",
    "voting_since",
]
EXPORT_FORMATS = ("jsonl", "parquet")
FORBIDDEN_COLUMNS = {"provider", "model"}


@dataclass(frozen=True)
class VotingSet:
    """The rows voters may see, and the labelled drafts left out of them because their text
    would tell a voter who wrote them (each `task/label: reason`)."""

    frame: "pd.DataFrame"
    withheld: list[str]

    @property
    def leaks(self) -> list[str]:
        """Everything that breaks blindness: forbidden columns, then the withheld drafts."""
        return sorted(FORBIDDEN_COLUMNS & set(self.frame.columns)) + self.withheld


def voting_set(store: DraftStore) -> VotingSet:
    """Every task in `voting` and label, each draft judged by `row_leaks` (the rule of draft
    validation); a draft that breaks it (stored before the rule caught it) is left out."""
    import pandas as pd

    frame = pd.DataFrame(store.voting_ready_rows(), columns=COLUMNS)
    frame = frame.astype({"ballot": "int64", "label": "string", "content": "string"})
    # UTC on every database (SQLite hands back naive times, all of them written in UTC).
    frame["voting_since"] = pd.to_datetime(frame["voting_since"], utc=True)
    reasons = row_leaks(frame, store.draft_models() | leak_names(configured_providers()))
    withheld = [
        f"{row.task_id}/{row.label}: {reason}"
        for row, reason in zip(frame.itertuples(index=False), reasons, strict=True)
        if reason
    ]
    keep = pd.Series([not reason for reason in reasons], index=frame.index, dtype=bool)
    blind = frame.loc[keep].reset_index(drop=True)
    return VotingSet(blind, withheld)


def voting_ready_frame(store: DraftStore) -> "pd.DataFrame":
    """One row per task in `voting` and label; withheld drafts are not in it."""
    return voting_set(store).frame


def row_leaks(frame: "pd.DataFrame", model_ids: Iterable[str]) -> list[str]:
    """Per row of a voting-ready frame, why its content breaks blindness ("" when it does not),
    by `blindness_leaks` against the row's own code: the rule draft validation applies."""
    names = frozenset(name for name in model_ids if name)
    return [
        "; ".join(map(str, blindness_leaks(str(row.content), str(row.code), names)))
        for row in frame.itertuples(index=False)
    ]


def export_voting_set(frame: "pd.DataFrame", fmt: str, output: Path) -> int:
    """Write the set to `output` whole or not at all; returns the number of rows written.
    JSON lines keep the times to the microsecond (`2026-11-30T12:00:00.123456Z`)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "jsonl":
        write_whole(
            output,
            lambda path: frame.to_json(
                path, orient="records", lines=True, date_format="iso", date_unit="us"
            ),
        )
    else:
        write_whole(output, lambda path: frame.to_parquet(path, index=False))
    return len(frame)


def write_whole(output: Path, write: Callable[[Path], object]) -> None:
    """`write(path)` to a temporary file beside `output`, then renamed to it: a reader finds
    the earlier file or the new one whole, never a part."""
    output.parent.mkdir(parents=True, exist_ok=True)
    # A temporary file of this writer's own: runs that finish together publish to one path,
    # and each rename must find its own file whole.
    handle, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial")
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        temporary.replace(output)
    finally:
        temporary.unlink(missing_ok=True)
