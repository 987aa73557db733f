"""What the source of a symbol says about it, read with `ast` (Python only)."""

import ast
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SymbolFacts:
    """The facts a docstring must agree with."""

    name: str
    parameters: tuple[str, ...]
    annotations: dict[str, str]
    is_async: bool
    returns_value: bool
    return_annotation: str | None
    raises: tuple[str, ...]
    yields: bool


def symbol_facts(code: str) -> SymbolFacts | None:
    """Facts of the first function in `code`; None when it is not a parseable Python function."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    function = next(
        (
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        ),
        None,
    )
    if function is None:
        return None
    arguments = function.args
    names = [a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]]
    if arguments.vararg:
        names.insert(len(arguments.posonlyargs) + len(arguments.args), arguments.vararg.arg)
    if arguments.kwarg:
        names.append(arguments.kwarg.arg)
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
    annotations = {a.arg: ast.unparse(a.annotation) for a in every if a.annotation is not None}
    body = list(_own_nodes(function))
    return SymbolFacts(
        name=function.name,
        parameters=tuple(names),
        annotations=annotations,
        is_async=isinstance(function, ast.AsyncFunctionDef),
        returns_value=any(isinstance(n, ast.Return) and n.value is not None for n in body),
        return_annotation=ast.unparse(function.returns) if function.returns else None,
        raises=tuple(
            dict.fromkeys(_raised_name(n) for n in body if isinstance(n, ast.Raise) and n.exc)
        ),
        yields=any(isinstance(n, ast.Yield | ast.YieldFrom) for n in body),
    )


def _own_nodes(function: ast.AST) -> Iterator[ast.AST]:
    """Nodes of a function's body, not of the functions or classes nested in it."""
    stack = list(ast.iter_child_nodes(function))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))


def _raised_name(node: ast.Raise) -> str:
    exc = node.exc
    if isinstance(exc, ast.Call):
        exc = exc.func
    return ast.unparse(exc) if exc is not None else "Exception"
