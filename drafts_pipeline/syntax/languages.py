"""The languages read with tree-sitter, each with its reader: a symbol's facts from a task's
code, and the undocumented public definitions of a file."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType

from tree_sitter import Node, Tree

from drafts_pipeline.syntax import go, java, javascript, ruby
from drafts_pipeline.syntax.facts import SymbolFacts
from drafts_pipeline.syntax.grammars import LANGUAGE_GRAMMARS, canonical_language, parse
from drafts_pipeline.syntax.tree import Definition, first_of


@dataclass(frozen=True)
class Reader:
    functions: frozenset[str]
    facts: Callable[[Node, str], SymbolFacts]
    undocumented: Callable[[Tree, bytes, str], Iterator[Definition]]
    wrapper: str | None = None
    """How a method's code alone becomes a program: `%s` is the code."""


def _reader(module: ModuleType, wrapper: str | None = None) -> Reader:
    return Reader(module.FUNCTIONS, module.function_facts, module.undocumented, wrapper)


READERS = {
    "javascript": _reader(javascript, javascript.WRAPPER),
    "typescript": _reader(javascript, javascript.WRAPPER),
    "ruby": _reader(ruby),
    "go": _reader(go),
    "java": _reader(java),
}


def tree_symbol_facts(code: str, language: str) -> SymbolFacts | None:
    """Facts of the first function or method in `code`; None when the language has no reader
    or the code holds no function. Code that parses without errors wins; a method's code alone
    is read inside a class when it does not parse as it is."""
    name = canonical_language(language)
    reader = READERS.get(name)
    if reader is None:
        return None
    attempts = [code] + ([reader.wrapper % code] if reader.wrapper else [])
    fallback: Node | None = None
    for grammar in LANGUAGE_GRAMMARS[name]:
        for source in attempts:
            root = parse(source.encode("utf-8"), grammar).root_node
            function = first_of(root, reader.functions)
            if function is not None and not root.has_error:
                return reader.facts(function, name)
            fallback = fallback or function
    return reader.facts(fallback, name) if fallback is not None else None


def undocumented_definitions(source: bytes, language: str, grammar: str) -> list[Definition]:
    """The public, undocumented functions and methods of one file.

    Raises `SyntaxError` (with the line) when the file does not parse: its definitions could
    not be trusted.
    """
    tree = parse(source, grammar)
    if tree.root_node.has_error:
        broken = _first_broken(tree.root_node)
        line = broken.start_point.row + 1 if broken is not None else 1
        raise SyntaxError(f"the {grammar} grammar cannot read line {line}")
    return list(READERS[language].undocumented(tree, source, language))


def _first_broken(node: Node) -> Node | None:
    """The first node the grammar could not read, or one it had to assume."""
    stack = [node]
    while stack:
        current = stack.pop()
        if current.is_error or current.is_missing:
            return current
        stack.extend(reversed(current.children))
    return None
