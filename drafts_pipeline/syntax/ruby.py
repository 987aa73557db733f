"""Ruby: a method's facts, and the public methods that have no comment (YARD or RDoc, `#` lines)
right above them.

Public: a method at the top of a file, or in a class or module body, that is not made private or
protected (a bare `private` before it, `private def ...`, `private :name`,
`private_class_method :name`; YARD leaves protected methods out by default too), is not
`initialize`, does not start with `_`, and is not marked `:nodoc:`. `def self.name` and methods
in `class << self` are class methods (`Shelf.build`); others are instance methods
(`Shelf#add`), as YARD names them. Methods defined inside methods or blocks are not tasks.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

from tree_sitter import Node, Tree

from drafts_pipeline.syntax.facts import Parameter, SymbolFacts, facts_from
from drafts_pipeline.syntax.tree import (
    Comments,
    Definition,
    comment_words,
    field_text,
    joined,
    lines_between,
    own_nodes,
    text,
)

FUNCTIONS = frozenset({"method", "singleton_method"})
BOUNDARIES = FUNCTIONS | {"class", "module", "singleton_class", "lambda"}
VISIBILITY = frozenset({"private", "protected", "public"})
_NO_VALUE = frozenset(
    {"assignment", "operator_assignment", "while", "until", "for", "nil", "return"}
)
_NO_VALUE_CALLS = frozenset({"raise", "fail", "puts", "print"})
_NODOC = re.compile(r"#\s*:nodoc:")
_DIRECTIVES = ("rubocop:", "frozen_string_literal:", "typed:", "encoding:", "warn_indent:")
_PARAMETER_KINDS = {
    "splat_parameter": "variadic",
    "hash_splat_parameter": "keyword_variadic",
    "block_parameter": "block",
    "keyword_parameter": "keyword",
    "optional_parameter": "positional",
}


def is_comment(node: Node) -> bool:
    return node.type == "comment"


def function_facts(node: Node, language: str) -> SymbolFacts:
    body = node.child_by_field_name("body")
    own = list(own_nodes(body, BOUNDARIES)) if body is not None else []
    explicit = any(n.type == "return" and n.named_child_count > 0 for n in own)
    return facts_from(
        name=field_text(node, "name"),
        language=language,
        signature=_signature(node),
        returns_value=explicit or _ends_in_value(body),
        raises=[raised for n in own if (raised := _raised(n)) is not None],
        yields=any(n.type == "yield" for n in own),
    )


def _signature(node: Node) -> list[Parameter]:
    parameters = node.child_by_field_name("parameters")
    if parameters is None:
        return []
    found: list[Parameter] = []
    for child in parameters.named_children:
        if child.type == "identifier":
            found.append(Parameter(text(child)))
        elif child.type == "destructured_parameter":
            found.append(Parameter(text(child), "unnamed"))
        elif child.type in _PARAMETER_KINDS and child.child_by_field_name("name") is not None:
            value = child.child_by_field_name("value")
            found.append(
                Parameter(
                    field_text(child, "name"),
                    _PARAMETER_KINDS[child.type],
                    text(value) if value is not None else None,
                )
            )
    return found


def _ends_in_value(body: Node | None) -> bool:
    """Ruby returns a method's last expression: whether that is a value worth documenting (not an
    assignment, a loop, `nil`, or a call to `raise` or `puts`)."""
    if body is None:
        return False
    if body.type != "body_statement":
        return True
    statements = [
        c for c in body.named_children if c.type not in ("comment", "rescue", "else", "ensure")
    ]
    if not statements:
        return False
    last = statements[-1]
    if last.type in _NO_VALUE:
        return False
    if last.type == "identifier" and text(last) in _NO_VALUE_CALLS:
        return False
    return not (last.type == "call" and _called(last) in _NO_VALUE_CALLS)


def _called(node: Node) -> str | None:
    if node.child_by_field_name("receiver") is not None:
        return None
    return field_text(node, "method")


def _raised(node: Node) -> str | None:
    """The class a `raise`/`fail` call raises: `raise Error, "..."`, `raise Error.new(...)`;
    `RuntimeError` for `raise "message"`; None for what is not a raise or re-raises."""
    if node.type != "call" or _called(node) not in ("raise", "fail"):
        return None
    arguments = node.child_by_field_name("arguments")
    first = arguments.named_children[0] if arguments and arguments.named_children else None
    if first is None:
        return None
    if first.type == "call" and field_text(first, "method") == "new":
        return field_text(first, "receiver")
    if first.type in ("string", "string_content"):
        return "RuntimeError"
    return text(first)


@dataclass(frozen=True)
class _Scope:
    names: tuple[str, ...]
    headers: tuple[str, ...]
    singleton: bool = False


def undocumented(tree: Tree, source: bytes, language: str) -> Iterator[Definition]:
    """The public methods of one file that have no comment above them."""
    reader = _FileReader(tree, source)
    yield from reader.scope(tree.root_node, _Scope((), (reader.file_header(),)))


class _FileReader:
    def __init__(self, tree: Tree, source: bytes) -> None:
        self.root = tree.root_node
        self.lines = source.decode("utf-8", errors="replace").split("\n")
        self.comments = Comments(tree, source, is_comment)

    def scope(self, node: Node, scope: _Scope) -> Iterator[Definition]:
        """The methods of one file, class or module body, in order, with their visibility."""
        body = node if node.type == "program" else node.child_by_field_name("body")
        if body is None:
            return
        statements = body.named_children
        hidden = _hidden_by_name(statements)
        visibility = "public"
        for statement in statements:
            if statement.type == "identifier" and text(statement) in VISIBILITY:
                visibility = text(statement)
            elif statement.type in FUNCTIONS:
                yield from self._method(statement, statement, scope, visibility, hidden)
            elif statement.type == "call" and _called(statement) in VISIBILITY:
                arguments = statement.child_by_field_name("arguments")
                for method in arguments.named_children if arguments else []:
                    if method.type in FUNCTIONS:
                        yield from self._method(
                            statement, method, scope, _called(statement) or "", hidden
                        )
            elif statement.type in ("class", "module", "singleton_class"):
                yield from self.scope(statement, self._inner(statement, scope))

    def _inner(self, node: Node, scope: _Scope) -> _Scope:
        header = self._header(node)
        if node.type == "singleton_class":
            return _Scope(scope.names, (*scope.headers, header), singleton=True)
        headers = scope.headers if scope.names else ()
        return _Scope((*scope.names, field_text(node, "name")), (*headers, header))

    def _method(
        self, outer: Node, method: Node, scope: _Scope, visibility: str, hidden: set[str]
    ) -> Iterator[Definition]:
        name = field_text(method, "name")
        singleton = scope.singleton or method.type == "singleton_method"
        if method.type == "singleton_method" and field_text(method, "object") != "self":
            return
        if visibility != "public" or name == "initialize" or name.startswith("_"):
            return
        if ("." if singleton else "#") + name in hidden:
            return
        comments = [comment_words(text(c)) for c in self.comments.above(outer.start_byte)]
        if _NODOC.search(self.lines[outer.start_point.row]) or any(
            ":nodoc:" in words for words in comments
        ):
            return
        if any(words and not words.startswith(_DIRECTIVES) for words in comments):
            return
        namespace = "::".join(scope.names)
        key = ".".join([*scope.names, *(["self"] if singleton else []), name])
        symbol = f"{namespace}{'.' if singleton else '#'}{name}" if namespace else name
        yield Definition(
            symbol=symbol,
            key=key,
            line=method.start_point.row + 1,
            code=lines_between(self.lines, outer.start_point.row, outer.end_point.row),
            context=joined(list(scope.headers)),
        )

    def _header(self, node: Node) -> str:
        """A class or module's comments and its opening line (`class Shelf < Base`)."""
        ends = [node.child_by_field_name(f) for f in ("name", "superclass", "value")]
        last = max(end.end_point.row for end in ends if end is not None)
        return lines_between(self.lines, self.comments.start_with_run(node), last)

    def file_header(self) -> str:
        """The comments the file opens with and its `require` calls."""
        parts: list[str] = []
        opening = True
        for statement in self.root.named_children:
            opening = opening and is_comment(statement)
            if opening or (
                statement.type == "call" and _called(statement) in ("require", "require_relative")
            ):
                parts.append(text(statement))
        return joined(parts)


def _hidden_by_name(statements: list[Node]) -> set[str]:
    """Methods made private by name: `private :a, :b` (`#a`), `private_class_method :c` (`.c`)."""
    hidden: set[str] = set()
    for statement in statements:
        called = _called(statement) if statement.type == "call" else None
        if called not in ("private", "protected", "private_class_method"):
            continue
        marker = "." if called == "private_class_method" else "#"
        arguments = statement.child_by_field_name("arguments")
        for argument in arguments.named_children if arguments else []:
            if argument.type == "simple_symbol":
                hidden.add(marker + text(argument).lstrip(":"))
    return hidden
