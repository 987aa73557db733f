"""Go: a function's facts, and the exported functions and methods that have no doc comment
(`// Name ...` lines) right above them.

Exported: a function whose name starts with an upper-case letter; a method when its name and its
receiver's type both do. Test files (`_test.go`) are left out by discovery; function literals
are not tasks. Directives (`//go:generate`, `//nolint`) are not documentation.
"""

import re
from collections.abc import Iterator

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

FUNCTIONS = frozenset({"function_declaration", "method_declaration"})
BOUNDARIES = FUNCTIONS | {"func_literal"}
_DIRECTIVE = re.compile(r"//(?:[a-z0-9_]+:[a-z0-9]|line |nolint\b|export |extern )")


def is_comment(node: Node) -> bool:
    return node.type == "comment"


def function_facts(node: Node, language: str) -> SymbolFacts:
    """Facts of a function or method; its receiver is not a parameter, and a call to `panic`
    is what it raises."""
    body = node.child_by_field_name("body")
    own = list(own_nodes(body, BOUNDARIES)) if body is not None else []
    result = node.child_by_field_name("result")
    panics = any(n.type == "call_expression" and field_text(n, "function") == "panic" for n in own)
    return facts_from(
        name=field_text(node, "name"),
        language=language,
        signature=_signature(node.child_by_field_name("parameters")),
        returns_value=result is not None,
        return_annotation=text(result) or None,
        raises=["panic"] if panics else [],
    )


def _signature(parameters: Node | None) -> list[Parameter]:
    """Named parameters in order (`a, b int` is two); unnamed ones (`func(int)`) cannot be
    documented by name and are left out."""
    found: list[Parameter] = []
    for declaration in parameters.named_children if parameters else []:
        kind = "variadic" if declaration.type == "variadic_parameter_declaration" else "positional"
        annotation = field_text(declaration, "type") or None
        if kind == "variadic" and annotation:
            annotation = f"...{annotation}"
        for name in declaration.children_by_field_name("name"):
            found.append(Parameter(text(name), kind, None, annotation))
    return found


def _exported(name: str) -> bool:
    return name[:1].isupper()


def receiver_type(method: Node) -> str:
    """`Shelf` for `func (s *Shelf[T]) ...`."""
    receiver = method.child_by_field_name("receiver")
    declaration = receiver.named_children[0] if receiver and receiver.named_children else None
    kind = declaration.child_by_field_name("type") if declaration else None
    while kind is not None and kind.type in ("pointer_type", "generic_type", "parenthesized_type"):
        kind = kind.child_by_field_name("type") or next(iter(kind.named_children), None)
    return text(kind)


def undocumented(tree: Tree, source: bytes, language: str) -> Iterator[Definition]:
    """The exported functions and methods of one file that have no doc comment."""
    root = tree.root_node
    lines = source.decode("utf-8", errors="replace").split("\n")
    comments = Comments(tree, source, is_comment)
    package = next((c for c in root.named_children if c.type == "package_clause"), None)
    package_line = text(package)
    header = joined(
        [package_line, *(text(c) for c in root.named_children if c.type == "import_declaration")]
    )
    types = {
        field_text(spec, "name"): declaration
        for declaration in root.named_children
        if declaration.type == "type_declaration"
        for spec in declaration.named_children
        if spec.type in ("type_spec", "type_alias")
    }
    for declaration in root.named_children:
        if declaration.type not in FUNCTIONS:
            continue
        name = field_text(declaration, "name")
        symbol = name
        context = header
        if declaration.type == "method_declaration":
            owner = receiver_type(declaration)
            if not _exported(owner):
                continue
            symbol = f"{owner}.{name}"
            owner_declaration = types.get(owner)
            context = joined(
                [
                    package_line,
                    lines_between(
                        lines,
                        comments.start_with_run(owner_declaration),
                        owner_declaration.end_point.row,
                    )
                    if owner_declaration is not None
                    else "",
                ]
            )
        if not _exported(name) or _documented(comments.above(declaration.start_byte)):
            continue
        yield Definition(
            symbol=symbol,
            key=symbol,
            line=declaration.start_point.row + 1,
            code=lines_between(lines, declaration.start_point.row, declaration.end_point.row),
            context=context,
        )


def _documented(run: list[Node]) -> bool:
    prose = [
        line
        for comment in run
        for line in text(comment).splitlines()
        if not _DIRECTIVE.match(line.strip())
    ]
    return bool(comment_words("\n".join(prose)))
