"""Reading the JSON object out of a provider's answer: strictly first, then leniently.

Models asked for "one JSON object and nothing else" still wrap it in prose and a Markdown
fence, leave a trailing comma, or use single quotes. `read_json` tries, in order:

1. **strict**: the whole answer is one JSON document (`json.loads`, surrounding whitespace
   allowed);
2. **fenced**: the answer holds one fenced block (```` ``` ```` or `~~~`, any info string)
   whose content is an object, with prose before or after it, and that content is strict JSON;
3. **repaired**: the object-like fenced block, else the first fenced block, else the whole
   answer, mended by `json-repair` (trailing commas, single quotes, a missing closing brace,
   prose around the object, ...).

An answer that holds two JSON objects (two object blocks, or two objects side by side) is
ambiguous: no step picks one of them, since either may be the draft the model meant.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from json_repair import repair_json

# A fenced block: an opening fence at the start of a line (an info string may follow it), the
# content, then the same fence at the end of a line (`}```` closes it too) or the end of the
# answer (a fence the answer never closed).
_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[^\n]*\n(?P<body>.*?)(?:(?P=fence)[`~]*[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)

STRICT, FENCED, REPAIRED = "strict", "fenced", "repaired"


@dataclass(frozen=True)
class JsonReading:
    """What `read_json` made of an answer: the value read and how (`read_as`: `strict`,
    `fenced`, `repaired`; None when nothing was read), and `note`: why nothing was read, or
    what was not strict about what was."""

    value: Any
    read_as: str | None
    note: str

    @property
    def strict_ok(self) -> bool:
        return self.read_as == STRICT

    @property
    def lenient_ok(self) -> bool:
        return self.read_as is not None


def fenced_blocks(text: str) -> list[str]:
    """The contents of the answer's fenced blocks, in order."""
    return [match.group("body") for match in _FENCE.finditer(text)]


def read_json(text: str) -> JsonReading:
    """The JSON value of an answer, read strictly, from a fenced block, or repaired."""
    try:
        return JsonReading(json.loads(text), STRICT, "")
    except json.JSONDecodeError as error:
        not_json = defect = _said(error)
    except (ValueError, RecursionError) as error:
        return JsonReading(None, None, _unreadable(error))
    blocks = fenced_blocks(text)
    objects = [block for block in blocks if block.lstrip().startswith("{")]
    if len(objects) > 1:
        return JsonReading(None, None, _ambiguous(len(objects), "fenced JSON objects"))
    candidate = (objects or blocks or [text])[0]
    if objects or blocks:
        try:
            return JsonReading(json.loads(candidate), FENCED, "read from a fenced block")
        except json.JSONDecodeError as error:
            defect = f"{_said(error)} in the fenced block"
        except (ValueError, RecursionError) as error:
            return JsonReading(None, None, f"{_unreadable(error)} in the fenced block")
    if "{" not in candidate:
        return JsonReading(None, None, not_json)
    if (count := top_level_objects(candidate)) > 1:
        return JsonReading(None, None, _ambiguous(count, "JSON objects"))
    try:
        repaired = repair_json(candidate, return_objects=True, skip_json_loads=True)
    except (ValueError, RecursionError):
        return JsonReading(None, None, not_json)
    values = repaired if isinstance(repaired, list) else [repaired]
    found = [value for value in values if isinstance(value, dict) and value]
    if len(found) > 1:
        return JsonReading(None, None, _ambiguous(len(found), "JSON objects"))
    if not found:
        return JsonReading(None, None, not_json)
    return JsonReading(found[0], REPAIRED, f"repaired with json-repair; strictly {defect}")


def top_level_objects(text: str) -> int:
    """How many brace-balanced objects `text` holds side by side, braces inside the objects'
    double-quoted strings not counted. `json-repair` cannot say: it reads two objects with the
    same keys as one updated object, keeping the last."""
    depth, count, in_string, escaped = 0, 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif in_string:
            escaped, in_string = char == "\\", char != '"'
        elif char == '"' and depth:
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            count += depth == 0
    return count


def _said(error: json.JSONDecodeError) -> str:
    return f"not JSON: {error.msg} (character {error.pos})"


def _unreadable(error: BaseException) -> str:
    """JSON that Python will not read: an integer of thousands of digits (`ValueError`),
    nesting deeper than the recursion limit (`RecursionError`)."""
    return f"not readable as JSON: {str(error)[:200]}"


def _ambiguous(count: int, what: str) -> str:
    return f"ambiguous: the answer holds {count} {what}, and any of them may be the draft"
