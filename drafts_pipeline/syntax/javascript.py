"""JavaScript and TypeScript: a function's facts, and the public functions and methods that
have no JSDoc comment (`/** ... */`) right above them.

Public: in a module (a file with an `export`), what it exports, by `export` on the declaration or
in an `export { ... }` list, and the public methods of an exported class; in a script, every
top-level function and class whose name does not start with `_`; anywhere, a function assigned
to `exports.name` or `module.exports.name`. A method is public unless its name starts with `_`
or `#` or it is marked `private` (a `protected` method is there for subclasses, and TypeDoc and
Javadoc show it by default). Constructors, setters of a property that has a
getter, overload signatures and functions nested in other functions are not tasks.
"""

from collections.abc import Iterator

from tree_sitter import Node, Tree

from drafts_pipeline.syntax.facts import Parameter, SymbolFacts, facts_from
from drafts_pipeline.syntax.tree import (
    Comments,
    Definition,
    comment_words,
    field_text,
    has_token,
    joined,
    lines_between,
    own_nodes,
    text,
)

FUNCTIONS = frozenset(
    {
        "function_declaration",
        "generator_function_declaration",
        "function_expression",
        "function",
        "generator_function",
        "arrow_function",
        "method_definition",
        "function_signature",
        "abstract_method_signature",
        "method_signature",
    }
)
FUNCTION_VALUES = frozenset(
    {"function_expression", "function", "generator_function", "arrow_function"}
)
CLASSES = frozenset({"class_declaration", "abstract_class_declaration"})
BOUNDARIES = FUNCTIONS | CLASSES | {"class"}
WRAPPER = "class Wrapper {\n%s\n}"
"""A method's code alone is not a program; inside a class it is."""


def is_comment(node: Node) -> bool:
    return node.type == "comment"


def function_facts(node: Node, language: str) -> SymbolFacts:
    body = node.child_by_field_name("body")
    own = list(own_nodes(body, BOUNDARIES)) if body is not None else []
    returns = field_text(node, "return_type").lstrip(":").strip() or None
    return facts_from(
        name=function_name(node),
        language=language,
        signature=_signature(node),
        is_async=has_token(node, "async"),
        returns_value=(body is not None and body.type != "statement_block")
        or any(n.type == "return_statement" and n.named_child_count > 0 for n in own),
        return_annotation=returns,
        raises=[_thrown(n) for n in own if n.type == "throw_statement" and n.named_children],
        yields=any(n.type == "yield_expression" for n in own),
    )


def function_name(node: Node) -> str:
    """A function's own name, else the name it is assigned to (`const find = () => ...`)."""
    name = node.child_by_field_name("name")
    if name is not None:
        return text(name)
    parent = node.parent
    if parent is not None and parent.type == "variable_declarator":
        return field_text(parent, "name")
    if parent is not None and parent.type == "assignment_expression":
        left = parent.child_by_field_name("left")
        if left is not None and left.type == "member_expression":
            return field_text(left, "property")
        return text(left)
    if parent is not None and parent.type == "pair":
        return field_text(parent, "key")
    return "default"


def _signature(node: Node) -> list[Parameter]:
    single = node.child_by_field_name("parameter")
    if single is not None:
        return [Parameter(text(single))]
    parameters = node.child_by_field_name("parameters")
    if parameters is None:
        return []
    found: list[Parameter] = []
    for child in parameters.named_children:
        parameter = _parameter(child)
        if parameter is not None:
            found.append(parameter)
    return found


def _parameter(node: Node) -> Parameter | None:
    """One entry of a parameter list; None for TypeScript's `this` type and for comments."""
    annotation: str | None = None
    default: str | None = None
    if node.type in ("required_parameter", "optional_parameter"):
        annotation = field_text(node, "type").lstrip(":").strip() or None
        value = node.child_by_field_name("value")
        default = text(value) if value is not None else None
        pattern = node.child_by_field_name("pattern")
        if pattern is None or pattern.type == "this":
            return None
        node = pattern
    if node.type == "assignment_pattern":
        default = field_text(node, "right")
        left = node.child_by_field_name("left")
        if left is None:
            return None
        node = left
    if node.type == "identifier":
        return Parameter(text(node), "positional", default, annotation)
    if node.type == "rest_pattern":
        name = next((text(c) for c in node.named_children if c.type == "identifier"), "")
        return Parameter(name, "variadic", default, annotation) if name else None
    if node.type in ("object_pattern", "array_pattern"):
        return Parameter(" ".join(text(node).split()), "unnamed", default, annotation)
    return None


def _thrown(node: Node) -> str:
    thrown = node.named_children[0]
    if thrown.type == "new_expression":
        return field_text(thrown, "constructor")
    return text(thrown)


def undocumented(tree: Tree, source: bytes, language: str) -> Iterator[Definition]:
    """The public functions and methods of one file that have no JSDoc comment."""
    reader = _FileReader(tree, source)
    yield from reader.definitions()


class _FileReader:
    def __init__(self, tree: Tree, source: bytes) -> None:
        self.root = tree.root_node
        self.lines = source.decode("utf-8", errors="replace").split("\n")
        self.comments = Comments(tree, source, is_comment)
        statements = self.root.named_children
        self.is_module = any(s.type == "export_statement" for s in statements)
        self.export_list = {
            field_text(specifier, "name")
            for statement in statements
            if statement.type == "export_statement"
            for clause in statement.named_children
            if clause.type == "export_clause"
            for specifier in clause.named_children
            if specifier.type == "export_specifier"
        }
        self.module_header = self._module_header()

    def definitions(self) -> Iterator[Definition]:
        for statement in self.root.named_children:
            exported = statement.type == "export_statement"
            declaration = (
                statement.child_by_field_name("declaration")
                or statement.child_by_field_name("value")
                if exported
                else statement
            )
            if declaration is None:
                continue
            if declaration.type in ("function_declaration", "generator_function_declaration"):
                name = field_text(declaration, "name")
                if self._public(name, exported):
                    yield from self._function(statement, declaration, name)
            elif declaration.type in ("lexical_declaration", "variable_declaration"):
                for declarator in declaration.named_children:
                    value = declarator.child_by_field_name("value")
                    name = field_text(declarator, "name")
                    is_function = value is not None and value.type in FUNCTION_VALUES
                    if is_function and value is not None and self._public(name, exported):
                        yield from self._function(statement, value, name)
            elif declaration.type in CLASSES:
                name = field_text(declaration, "name")
                if self._public(name, exported):
                    yield from self._methods(statement, declaration, name)
            elif declaration.type == "expression_statement":
                yield from self._exports_assignment(statement)

    def _public(self, name: str, exported: bool) -> bool:
        if self.is_module:
            return exported or name in self.export_list
        return bool(name) and not name.startswith("_")

    def _documented(self, start_byte: int) -> bool:
        return any(
            text(c).startswith("/**") and comment_words(text(c))
            for c in self.comments.above(start_byte)
        )

    def _function(self, outer: Node, function: Node, name: str) -> Iterator[Definition]:
        if self._documented(outer.start_byte):
            return
        yield Definition(
            symbol=name,
            key=name,
            line=outer.start_point.row + 1,
            code=lines_between(self.lines, outer.start_point.row, outer.end_point.row),
            context=self.module_header,
        )

    def _exports_assignment(self, statement: Node) -> Iterator[Definition]:
        """`exports.name = function ...` and `module.exports.name = (...) => ...`."""
        assignment = statement.named_children[0] if statement.named_children else None
        if assignment is None or assignment.type != "assignment_expression":
            return
        left = assignment.child_by_field_name("left")
        value = assignment.child_by_field_name("right")
        if left is None or value is None or value.type not in FUNCTION_VALUES:
            return
        if left.type != "member_expression" or field_text(left, "object") not in (
            "exports",
            "module.exports",
        ):
            return
        yield from self._function(statement, value, field_text(left, "property"))

    def _methods(self, outer: Node, cls: Node, class_name: str) -> Iterator[Definition]:
        body = cls.child_by_field_name("body")
        if body is None:
            return
        header = lines_between(
            self.lines, self.comments.start_with_run(outer), body.start_point.row
        )
        members = [m for m in body.named_children if m.type in FUNCTIONS]
        getters = {field_text(m, "name") for m in members if has_token(m, "get")}
        for member in members:
            name = field_text(member, "name")
            if not _public_method(member, name) or (has_token(member, "set") and name in getters):
                continue
            first = member
            while (
                first.prev_named_sibling is not None
                and first.prev_named_sibling.type == "decorator"
            ):
                first = first.prev_named_sibling
            if self._documented(first.start_byte):
                continue
            yield Definition(
                symbol=f"{class_name}.{name}",
                key=f"{class_name}.{name}",
                line=member.start_point.row + 1,
                code=lines_between(self.lines, first.start_point.row, member.end_point.row),
                context=header,
            )

    def _module_header(self) -> str:
        """The comments the file opens with, its imports and its `require` calls."""
        parts: list[str] = []
        opening = True
        for statement in self.root.children:
            opening = opening and is_comment(statement)
            if opening or statement.type == "import_statement" or _is_require(statement):
                parts.append(text(statement))
        return joined(parts)


def _public_method(member: Node, name: str) -> bool:
    if member.type == "method_signature" or not name or name == "constructor":
        return False
    if name.startswith(("_", "#")):
        return False
    modifier = next((c for c in member.children if c.type == "accessibility_modifier"), None)
    return modifier is None or text(modifier) != "private"


def _is_require(statement: Node) -> bool:
    if statement.type not in ("lexical_declaration", "variable_declaration"):
        return False
    values = (declarator.child_by_field_name("value") for declarator in statement.named_children)
    return any(
        value is not None
        and value.type == "call_expression"
        and field_text(value, "function") == "require"
        for value in values
    )
