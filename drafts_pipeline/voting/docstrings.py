"""A draft's docstring split back into its sections, so that the voting page can lay each out
for reading (a list of parameters, the example as code) instead of one block of text.

A draft's `content` is what `drafting.validation.render_docstring` wrote: a summary paragraph,
description paragraphs, then `Args:`, `Returns:`, `Raises:` and `Example:` sections whose lines
are indented by four spaces. A line of a parameter's or exception's text that runs on to a new
line keeps that line's own indentation (none), so any line inside a section that does not start
a new `name: text` entry continues the entry before it.
"""

import re
from dataclasses import dataclass

_HEADERS = {
    "Args:": "parameters",
    "Returns:": "returns",
    "Raises:": "raises",
    "Example:": "example",
}
_INDENT = "    "
_ENTRY = re.compile(r"    (?P<name>[^\s:][^:]{0,79}?):(?:[ \t]+(?P<text>.*))?$")


@dataclass(frozen=True)
class Entry:
    """One parameter (`name`) or one exception (`name` is the exception) and its text."""

    name: str
    text: str


@dataclass(frozen=True)
class DocstringSections:
    summary: str
    description: tuple[str, ...]
    """Paragraphs."""
    parameters: tuple[Entry, ...] = ()
    returns: str = ""
    raises: tuple[Entry, ...] = ()
    example: str = ""


def docstring_sections(text: str) -> DocstringSections:
    """The sections of a Google-style docstring; text before any section header is the summary
    (its first paragraph) and the description (the other paragraphs)."""
    intro: list[str] = []
    sections: dict[str, list[str]] = {}
    current = intro
    for line in text.expandtabs(4).strip("\n").splitlines():
        section = _HEADERS.get(line.rstrip())
        if section is not None:
            current = sections.setdefault(section, [])
        else:
            current.append(line.rstrip())
    summary, *description = _paragraphs(intro) or [""]
    return DocstringSections(
        summary=" ".join(summary.split()),
        description=tuple(description),
        parameters=_entries(sections.get("parameters", [])),
        returns="\n".join(_dedented(sections.get("returns", []))).strip(),
        raises=_entries(sections.get("raises", [])),
        example="\n".join(_dedented(sections.get("example", []))).strip("\n"),
    )


def _paragraphs(lines: list[str]) -> list[str]:
    text = "\n".join(line.strip() for line in lines)
    return [paragraph.strip() for paragraph in re.split(r"\n\s*\n", text) if paragraph.strip()]


def _dedented(lines: list[str]) -> list[str]:
    return [line.removeprefix(_INDENT) for line in lines]


def _entries(lines: list[str]) -> tuple[Entry, ...]:
    entries: list[tuple[str, list[str]]] = []
    for line in lines:
        found = _ENTRY.match(line)
        if found is not None:
            entries.append((found["name"], [found["text"] or ""]))
        elif entries:
            entries[-1][1].append(line.strip())
        elif line.strip():
            entries.append(("", [line.strip()]))
    return tuple(Entry(name, "\n".join(text).strip()) for name, text in entries)
