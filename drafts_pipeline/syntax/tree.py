"""What every language's reader needs from a tree-sitter tree: node text, a function's own
nodes, the comments written directly above a definition, and the definitions discovery finds."""

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tree_sitter import Node, Tree


@dataclass(frozen=True)
class Definition:
    """A public, undocumented function or method found in a file.

    `symbol` is its name as its language writes it (`Shelf.add`, Ruby's `Shop::Shelf#add`);
    `key` the dotted name the task id is made of; `line` 1-based.
    """

    symbol: str
    key: str
    line: int
    code: str
    context: str


def text(node: Node | None) -> str:
    if node is None or node.text is None:
        return ""
    return node.text.decode("utf-8", errors="replace")


def field_text(node: Node, name: str) -> str:
    return text(node.child_by_field_name(name))


def own_nodes(node: Node, boundaries: frozenset[str]) -> Iterator[Node]:
    """The nodes of a function's body, not of the functions and classes nested in it."""
    stack = list(node.children)
    while stack:
        child = stack.pop()
        yield child
        if child.type not in boundaries:
            stack.extend(child.children)


def first_of(node: Node, types: frozenset[str]) -> Node | None:
    """The first node of one of `types` in source order, `node` itself included."""
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type in types:
            return current
        stack.extend(reversed(current.children))
    return None


def has_token(node: Node, token: str) -> bool:
    """Whether one of `node`'s own children is the keyword or mark `token` (`async`, `*`)."""
    return any(child.type == token for child in node.children)


class Comments:
    """The comments of one file, to find the run of comments written right above a definition:
    comments separated from each other and from the definition by nothing but one line break."""

    def __init__(self, tree: Tree, source: bytes, is_comment: Callable[[Node], bool]) -> None:
        self._source = source
        found: list[Node] = []
        stack = [tree.root_node]
        while stack:
            node = stack.pop()
            if is_comment(node):
                found.append(node)
            else:
                stack.extend(node.children)
        self._comments = sorted(found, key=lambda node: node.end_byte)
        self._ends = [node.end_byte for node in self._comments]

    def above(self, start_byte: int) -> list[Node]:
        """The run of comments right above `start_byte`, nearest last."""
        run: list[Node] = []
        index = bisect.bisect_right(self._ends, start_byte) - 1
        while index >= 0:
            comment = self._comments[index]
            gap = self._source[comment.end_byte : start_byte]
            if gap.strip() or gap.count(b"\n") > 1:
                break
            run.insert(0, comment)
            start_byte = comment.start_byte
            index -= 1
        return run

    def start_with_run(self, node: Node) -> int:
        """The row where `node` starts, or where the comments right above it start."""
        run = self.above(node.start_byte)
        return run[0].start_point.row if run else node.start_point.row


def comment_words(comment: str) -> str:
    """A comment without its markers (`/**`, `*/`, a line's leading `*`, `//`, `#`)."""
    body = comment.strip()
    for opener, closer in (("/**", "*/"), ("/*", "*/"), ("=begin", "=end")):
        if body.startswith(opener) and body.endswith(closer):
            body = body[len(opener) : len(body) - len(closer)]
            break
    lines = (line.strip().lstrip("*/#").strip() for line in body.splitlines())
    return "\n".join(line for line in lines if line)


def lines_between(lines: list[str], first_row: int, last_row: int) -> str:
    """Whole lines `first_row`..`last_row` (0-based, inclusive), indentation kept."""
    return "\n".join(lines[first_row : last_row + 1])


def joined(parts: list[str]) -> str:
    return "\n".join(part for part in parts if part)
