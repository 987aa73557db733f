"""What the source of a symbol says about it: Python read with `ast`, JavaScript, TypeScript,
Ruby, Go and Java with tree-sitter (`drafts_pipeline.syntax`)."""

import ast
import textwrap
from collections.abc import Iterator

from drafts_pipeline.syntax.facts import Parameter, SymbolFacts
from drafts_pipeline.syntax.grammars import canonical_language
from drafts_pipeline.syntax.languages import tree_symbol_facts

__all__ = ["Parameter", "SymbolFacts", "symbol_facts"]


def symbol_facts(code: str, language: str = "python") -> SymbolFacts | None:
    """Facts of the first function or method in `code`, read as `language` (a task's language;
    `js`, `ts`, `rb` and `golang` are understood); None when that language has no reader or
    the code holds no function it can read."""
    if canonical_language(language) == "python":
        return python_facts(code)
    return tree_symbol_facts(code, language)


def python_facts(code: str) -> SymbolFacts | None:
    """Facts of the first function in `code`; None when it is not a parseable Python function.
    A method's code keeps its class's indentation, so it is dedented first."""
    try:
        tree = ast.parse(textwrap.dedent(code))
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
        signature=tuple(p for p in _signature(arguments, annotations) if p.name in names),
    )


def _signature(arguments: ast.arguments, annotations: dict[str, str]) -> Iterator[Parameter]:
    """Every parameter in declaration order, with its kind and default value."""
    positional = [*arguments.posonlyargs, *arguments.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(arguments.defaults))
    for argument, default in zip(positional, [*defaults, *arguments.defaults], strict=True):
        yield _parameter(argument, "positional", default, annotations)
    if arguments.vararg:
        yield _parameter(arguments.vararg, "variadic", None, annotations)
    for argument, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
        yield _parameter(argument, "keyword", default, annotations)
    if arguments.kwarg:
        yield _parameter(arguments.kwarg, "keyword_variadic", None, annotations)


def _parameter(
    argument: ast.arg, kind: str, default: ast.expr | None, annotations: dict[str, str]
) -> Parameter:
    return Parameter(
        argument.arg,
        kind,
        ast.unparse(default) if default is not None else None,
        annotations.get(argument.arg),
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
