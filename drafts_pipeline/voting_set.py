"""The voting-ready set: what the voting application reads. It never names a provider or model."""

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

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
    "label",
    "content",
    "voting_since",
]
EXPORT_FORMATS = ("jsonl", "parquet")
FORBIDDEN_COLUMNS = {"provider", "model"}


def voting_ready_frame(store: DraftStore) -> "pd.DataFrame":
    """One row per task in `voting` and label."""
    import pandas as pd

    frame = pd.DataFrame(store.voting_ready_rows(), columns=COLUMNS)
    return frame.astype({"label": "string", "content": "string"})


def identity_leaks(frame: "pd.DataFrame", names: set[str]) -> list[str]:
    """Columns or cells that would tell a voter who wrote a draft."""
    leaks = sorted(FORBIDDEN_COLUMNS & set(frame.columns))
    lowered = [name.lower() for name in names if name]
    for row in frame.itertuples(index=False):
        text = str(row.content).lower()
        leaks += [f"{row.task_id}/{row.label}: {name}" for name in lowered if name in text]
    return leaks


def export_voting_set(frame: "pd.DataFrame", fmt: str, output: Path) -> int:
    """Write the set to `output`; returns the number of rows written."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    output.parent.mkdir(parents=True, exist_ok=True)
    # A temporary file of this writer's own: runs that finish together publish to one path,
    # and each rename must find its own file whole.
    handle, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial")
    os.close(handle)
    temporary = Path(name)
    try:
        if fmt == "jsonl":
            frame.to_json(temporary, orient="records", lines=True, date_format="iso")
        else:
            frame.to_parquet(temporary, index=False)
        temporary.replace(output)
    finally:
        temporary.unlink(missing_ok=True)
    return len(frame)
