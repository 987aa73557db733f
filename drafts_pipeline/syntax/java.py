"""Java: a method's facts, and the public methods that have no Javadoc comment (`/** ... */`)
right above them.

Public: a `public` or `protected` method, or any method of an interface that is not `private`,
in a type that is itself public (a top-level `public` type; a nested type that is `public`,
`protected`, or a member of an interface), including interface and abstract methods that have
no body. Constructors and `@Override` methods (Javadoc copies the overridden method's comment)
are not tasks, nor are methods of anonymous or local classes. Overloaded methods are told apart
by their parameter types: `Shelf.find(String, int...)`.
"""

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

FUNCTIONS = frozenset({"method_declaration", "constructor_declaration"})
TYPES = frozenset(
    {"class_declaration", "interface_declaration", "enum_declaration", "record_declaration"}
)
BOUNDARIES = FUNCTIONS | TYPES | {"lambda_expression", "class_body"}


def is_comment(node: Node) -> bool:
    return node.type in ("block_comment", "line_comment")


def function_facts(node: Node, language: str) -> SymbolFacts:
    """Facts of a method: what it declares it throws and the exceptions its body creates."""
    body = node.child_by_field_name("body")
    own = list(own_nodes(body, BOUNDARIES)) if body is not None else []
    returned = node.child_by_field_name("type")
    declared = [
        text(kind)
        for clause in node.children
        if clause.type == "throws"
        for kind in clause.named_children
    ]
    thrown = [_thrown(n) for n in own if n.type == "throw_statement" and n.named_children]
    return facts_from(
        name=field_text(node, "name"),
        language=language,
        signature=_signature(node),
        returns_value=returned is not None and returned.type != "void_type",
        return_annotation=text(returned) if returned is not None else None,
        raises=[*declared, *thrown],
    )


def _signature(node: Node) -> list[Parameter]:
    parameters = node.child_by_field_name("parameters")
    found: list[Parameter] = []
    for child in parameters.named_children if parameters else []:
        if child.type == "formal_parameter":
            found.append(Parameter(field_text(child, "name"), annotation=field_text(child, "type")))
        elif child.type == "spread_parameter":
            declarator = next(
                (c for c in child.named_children if c.type == "variable_declarator"), None
            )
            kind = next((c for c in child.named_children if c.type != "modifiers"), None)
            if declarator is not None:
                found.append(
                    Parameter(
                        field_text(declarator, "name"), "variadic", annotation=f"{text(kind)}..."
                    )
                )
    return found


def _thrown(node: Node) -> str:
    thrown = node.named_children[0]
    if thrown.type == "object_creation_expression":
        return field_text(thrown, "type")
    return text(thrown)


def _modifiers(node: Node) -> tuple[set[str], set[str]]:
    """The keywords (`public`, `static`) and annotation names (`Override`) of a declaration."""
    modifiers = next((c for c in node.children if c.type == "modifiers"), None)
    keywords: set[str] = set()
    annotations: set[str] = set()
    for child in modifiers.children if modifiers else []:
        if child.type in ("marker_annotation", "annotation"):
            annotations.add(field_text(child, "name").rsplit(".", 1)[-1])
        else:
            keywords.add(text(child))
    return keywords, annotations


def undocumented(tree: Tree, source: bytes, language: str) -> Iterator[Definition]:
    """The public methods of one file that have no Javadoc comment."""
    reader = _FileReader(tree, source)
    for declaration in tree.root_node.named_children:
        if declaration.type in TYPES and "public" in _modifiers(declaration)[0]:
            yield from reader.type_members(declaration, (), ())


class _FileReader:
    def __init__(self, tree: Tree, source: bytes) -> None:
        root = tree.root_node
        self.lines = source.decode("utf-8", errors="replace").split("\n")
        self.comments = Comments(tree, source, is_comment)
        self.header = joined(
            [
                text(c)
                for c in root.named_children
                if c.type in ("package_declaration", "import_declaration")
            ]
        )

    def type_members(
        self, declaration: Node, names: tuple[str, ...], headers: tuple[str, ...]
    ) -> Iterator[Definition]:
        body = declaration.child_by_field_name("body")
        if body is None:
            return
        names = (*names, field_text(declaration, "name"))
        headers = (
            *headers,
            lines_between(
                self.lines, self.comments.start_with_run(declaration), body.start_point.row
            ),
        )
        is_interface = declaration.type == "interface_declaration"
        members = [
            member
            for child in body.named_children
            for member in (
                child.named_children if child.type == "enum_body_declarations" else [child]
            )
        ]
        overloads = _overloaded(members)
        for member in members:
            keywords, annotations = _modifiers(member)
            public = bool(keywords & {"public", "protected"}) or (
                is_interface and "private" not in keywords
            )
            if member.type in TYPES and public:
                yield from self.type_members(member, names, headers)
            elif member.type == "method_declaration" and public and "Override" not in annotations:
                yield from self._method(member, names, headers, overloads)

    def _method(
        self, method: Node, names: tuple[str, ...], headers: tuple[str, ...], overloads: set[str]
    ) -> Iterator[Definition]:
        run = self.comments.above(method.start_byte)
        if any(text(c).startswith("/**") and comment_words(text(c)) for c in run):
            return
        name = field_text(method, "name")
        if name in overloads:
            types = ", ".join(p.annotation or "" for p in _signature(method))
            name = f"{name}({' '.join(types.split())})"
        symbol = ".".join([*names, name])
        yield Definition(
            symbol=symbol,
            key=symbol,
            line=method.start_point.row + 1,
            code=lines_between(self.lines, method.start_point.row, method.end_point.row),
            context=joined([self.header, *headers]),
        )


def _overloaded(members: list[Node]) -> set[str]:
    seen: set[str] = set()
    twice: set[str] = set()
    for member in members:
        if member.type == "method_declaration":
            name = field_text(member, "name")
            (twice if name in seen else seen).add(name)
    return twice
