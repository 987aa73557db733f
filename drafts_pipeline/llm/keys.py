"""API keys, checked before any call: what an HTTP header cannot carry is a configuration error.

A key that is unset, empty, only whitespace, has whitespace around it, or holds a line break,
another control character or a non-ASCII character never reaches a provider: the SDK's HTTP
layer would refuse the header (a "connection" error, retried) or the provider would answer 401.
The messages name the variable and what is wrong with it, never the key or any part of it.
"""

from collections.abc import Iterable
from typing import Protocol

from drafts_pipeline.errors import ConfigurationError

OFFLINE_HINT = "or DRAFTS_LLM_MODE=offline to draft locally"
MISSING = "is not set or empty"


def key_problem(value: str) -> str | None:
    """Why `value` cannot be sent as an API key, said without quoting it; None if it can."""
    if not value:
        return MISSING
    if not value.strip():
        return "holds only whitespace"
    if "\n" in value or "\r" in value:
        return "contains a line break"
    if value != value.strip():
        return "has whitespace at its start or end"
    if any(ord(character) < 0x20 or ord(character) == 0x7F for character in value):
        return "contains a control character"
    if not value.isascii():
        return "contains a non-ASCII character"
    return None


def keys_message(problems: Iterable[tuple[str, str, str]]) -> str:
    """One line for every unusable key, each as (provider, variable, problem)."""
    listed = [f"{variable} ({provider}) {problem}" for provider, variable, problem in problems]
    it = "it" if len(listed) == 1 else "each"
    return (
        f"API keys: {', '.join(listed)}; set {it} to the key alone (printable ASCII, no space "
        f"or line break around it), {OFFLINE_HINT}"
    )


class UnusableKey(ConfigurationError):
    """A provider's key is missing or cannot be sent; the message names the variable only."""

    def __init__(self, provider: str, variable: str, problem: str) -> None:
        self.provider = provider
        self.variable = variable
        self.problem = problem
        super().__init__(keys_message([(provider, variable, problem)]))


class KeyHolder(Protocol):
    def require_key(self) -> None: ...


def require_keys(providers: Iterable[KeyHolder]) -> None:
    """Check every provider's key (and settings) before any of them is called; one
    `ConfigurationError` names every unusable key and every other problem at once."""
    keys: list[tuple[str, str, str]] = []
    others: list[str] = []
    for provider in providers:
        try:
            provider.require_key()
        except UnusableKey as error:
            keys.append((error.provider, error.variable, error.problem))
        except ConfigurationError as error:
            others.append(str(error))
    if keys:
        others.append(keys_message(keys))
    if others:
        raise ConfigurationError("; ".join(others))
