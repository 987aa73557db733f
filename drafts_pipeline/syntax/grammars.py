"""The tree-sitter grammars of the languages read beside Python, by task language and by file
suffix.

Each grammar is its own package from the tree-sitter project, compiled into its wheel: nothing
is downloaded when a grammar is first used, so discovery and validation work offline.
"""

from functools import cache

import tree_sitter
import tree_sitter_go
import tree_sitter_java
import tree_sitter_javascript
import tree_sitter_ruby
import tree_sitter_typescript

_GRAMMARS = {
    "javascript": tree_sitter_javascript.language,
    "typescript": tree_sitter_typescript.language_typescript,
    "tsx": tree_sitter_typescript.language_tsx,
    "ruby": tree_sitter_ruby.language,
    "go": tree_sitter_go.language,
    "java": tree_sitter_java.language,
}

LANGUAGE_GRAMMARS: dict[str, tuple[str, ...]] = {
    "javascript": ("javascript",),
    "typescript": ("typescript", "tsx"),
    "ruby": ("ruby",),
    "go": ("go",),
    "java": ("java",),
}
"""The grammars that read a task's code, tried in order (TypeScript code may hold JSX)."""

SUFFIX_GRAMMARS: dict[str, tuple[str, str]] = {
    ".js": ("javascript", "javascript"),
    ".mjs": ("javascript", "javascript"),
    ".cjs": ("javascript", "javascript"),
    ".jsx": ("javascript", "javascript"),
    ".ts": ("typescript", "typescript"),
    ".mts": ("typescript", "typescript"),
    ".cts": ("typescript", "typescript"),
    ".tsx": ("typescript", "tsx"),
    ".rb": ("ruby", "ruby"),
    ".go": ("go", "go"),
    ".java": ("java", "java"),
}
"""File suffix -> (the task's language, the grammar that reads the file)."""

_ALIASES = {
    "js": "javascript",
    "jsx": "javascript",
    "node": "javascript",
    "ts": "typescript",
    "tsx": "typescript",
    "rb": "ruby",
    "golang": "go",
    "py": "python",
    "python3": "python",
}


def canonical_language(name: str) -> str:
    """A task's language as the parsers name it: `JS` -> `javascript`, `golang` -> `go`."""
    lowered = name.strip().lower()
    return _ALIASES.get(lowered, lowered)


@cache
def _grammar(name: str) -> tree_sitter.Language:
    return tree_sitter.Language(_GRAMMARS[name]())


def parse(source: bytes, grammar: str) -> tree_sitter.Tree:
    """The syntax tree of `source`; a new parser each time, since a parser is not shared safely
    between threads."""
    return tree_sitter.Parser(_grammar(grammar)).parse(source)
