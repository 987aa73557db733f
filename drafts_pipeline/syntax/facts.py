"""What the source of a symbol says about it, in any language: the value object drafts are
checked against."""

from collections.abc import Sequence
from dataclasses import dataclass, field

PARAMETER_KINDS = frozenset(
    {"positional", "keyword", "variadic", "keyword_variadic", "block", "unnamed"}
)
"""`variadic`: JavaScript `...rest`, Python `*args`, Ruby `*rest`, Go `args ...T`, Java `T... args`;
`keyword_variadic`: Python `**kwargs`, Ruby `**opts`; `block`: Ruby `&block`; `unnamed`: a
destructured parameter (`{ title, author }`), which has no name a draft could repeat."""

_SIGILS = "*&."
_SUFFIXES = "?:"


@dataclass(frozen=True)
class Parameter:
    """One parameter as declared: `name` is the pattern's text when `kind` is `unnamed`."""

    name: str
    kind: str = "positional"
    default: str | None = None
    annotation: str | None = None


@dataclass(frozen=True)
class SymbolFacts:
    """The facts a docstring must agree with.

    `parameters` names the parameters a draft documents, in order (not Python's `self`/`cls`,
    not a Go method's receiver, not a destructured parameter); `signature` has every declared
    parameter with its kind, default value and type.
    """

    name: str
    parameters: tuple[str, ...]
    annotations: dict[str, str]
    is_async: bool
    returns_value: bool
    return_annotation: str | None
    raises: tuple[str, ...]
    yields: bool
    language: str = "python"
    signature: tuple[Parameter, ...] = field(default=())

    @property
    def has_unnamed_parameters(self) -> bool:
        return any(parameter.kind == "unnamed" for parameter in self.signature)

    def parameter_problems(self, documented: Sequence[str]) -> list[str]:
        """What is wrong with the parameter names a draft documents: the ones it leaves out, and
        the ones the signature does not have. A name may carry its language's sigil (`*args`,
        `...rest`, `&block`, `key:`); beside a destructured parameter any other name is allowed,
        since the draft has to name that parameter somehow."""
        names = [bare_parameter_name(name) for name in documented]
        missing = [p for p in self.parameters if p not in names]
        unknown = (
            []
            if self.has_unnamed_parameters
            else [
                raw
                for raw, name in zip(documented, names, strict=True)
                if name not in self.parameters
            ]
        )
        return ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"not in the signature: {', '.join(unknown)}"] if unknown else []
        )


def bare_parameter_name(name: str) -> str:
    """`*args` -> `args`, `...rest` -> `rest`, `&block` -> `block`, `key:` -> `key`."""
    return name.strip().lstrip(_SIGILS).rstrip(_SUFFIXES)


def facts_from(
    *,
    name: str,
    language: str,
    signature: Sequence[Parameter],
    is_async: bool = False,
    returns_value: bool,
    return_annotation: str | None = None,
    raises: Sequence[str] = (),
    yields: bool = False,
) -> SymbolFacts:
    """`SymbolFacts` with the documented names and types derived from the signature."""
    named = [p for p in signature if p.kind != "unnamed"]
    return SymbolFacts(
        name=name,
        parameters=tuple(p.name for p in named),
        annotations={p.name: p.annotation for p in named if p.annotation},
        is_async=is_async,
        returns_value=returns_value,
        return_annotation=return_annotation,
        raises=tuple(dict.fromkeys(raises)),
        yields=yields,
        language=language,
        signature=tuple(signature),
    )
