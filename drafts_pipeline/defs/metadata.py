"""Helpers for materialisation metadata."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def markdown_table(frame: "pd.DataFrame") -> str:
    """`frame` as a Markdown table for `MetadataValue.md` (no extra library needed)."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "/") for v in row) + " |")
    return "\n".join(lines)
