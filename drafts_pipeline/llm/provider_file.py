"""The providers file (`providers.toml`): which providers take part, as data.

`DRAFTS_PROVIDERS_FILE` names the file; without it the copy shipped in this package is read
(Claude, OpenAI and Kimi). Each `[providers.<name>]` table becomes one `ProviderSpec`. The file
is checked whole before anything is built from it: a mistake is a `ProvidersFileError` naming
the file, the entry and the field, so that a code location never loads half a set of
providers. Field reference: docs/providers.md.
"""

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from drafts_pipeline.errors import ConfigurationError

PROVIDERS_FILE_ENV = "DRAFTS_PROVIDERS_FILE"
SHIPPED_PROVIDERS_FILE = Path(str(resources.files("drafts_pipeline.llm") / "providers.toml"))

# Lower case, so that `DRAFTS_<NAME>_<SETTING>` maps back to one provider; at most 32
# characters, the width of the store's `provider` columns.
NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
WIRE_APIS = ("anthropic-messages", "openai-chat")
KINDS = {"anthropic-messages": "anthropic", "openai-chat": "openai"}

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Dollars = Annotated[float, Field(ge=0)]


class ProvidersFileError(ConfigurationError):
    """The providers file cannot be read or says something that cannot work."""


@dataclass(frozen=True)
class ProviderSpec:
    """One provider: its wire API, its default model and the variables that configure it."""

    name: str
    api: str
    kind: str
    default_model: str
    key_env: str
    base_url_env: str | None = None
    default_base_url: str | None = None
    settings: tuple[tuple[str, object], ...] = ()
    """Resource settings the file gives (limits, retries, prices ...): over the API class's
    defaults, under `DRAFTS_<NAME>_<SETTING>`."""
    default: bool = True
    """Whether the provider takes part when DRAFTS_PROVIDERS does not choose."""
    family: tuple[str, ...] = ()
    """More words that name the provider's model (blindness leaks), beside its model ids."""

    @property
    def resource_key(self) -> str:
        return f"{self.name}_llm"

    @property
    def asset_name(self) -> str:
        return f"{self.name}_draft"

    @property
    def model_env(self) -> str:
        return f"DRAFTS_{self.name.upper()}_MODEL"

    @property
    def leak_names(self) -> tuple[str, ...]:
        """The model ids and family words a draft by this provider must not speak."""
        fallback = dict(self.settings).get("fallback_model")
        names = (self.default_model, *([str(fallback)] if fallback else []), *self.family)
        return tuple(dict.fromkeys(names))


class ProviderEntry(BaseModel):
    """One `[providers.<name>]` table as the file must write it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    api: Literal["anthropic-messages", "openai-chat"]
    model: Annotated[str, Field(min_length=1, max_length=128)]
    api_key_env: Annotated[str, Field(pattern=ENV_NAME)]
    base_url: str | None = None
    base_url_env: Annotated[str, Field(pattern=ENV_NAME)] | None = None
    kind: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")] | None = None
    default: bool = True
    family: list[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9-]{2,}$")]] = []
    fallback_model: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    timeout_s: PositiveFloat | None = None
    max_attempts: PositiveInt | None = None
    initial_delay_s: Dollars | None = None
    max_delay_s: Dollars | None = None
    retry_after_cap_s: Dollars | None = None
    max_in_flight: PositiveInt | None = None
    requests_per_minute: PositiveInt | None = None
    input_usd_per_mtok: Dollars | None = None
    cached_input_usd_per_mtok: Dollars | None = None
    output_usd_per_mtok: Dollars | None = None
    batch_price_factor: Annotated[float, Field(gt=0, le=1)] | None = None
    daily_budget_usd: Dollars | None = None
    token_limit_parameter: Literal["max_completion_tokens", "max_tokens"] | None = None
    submit_mode: Literal["live"] | None = None
    structured_output: Literal["schema", "json", "tool", "off"] | None = None

    @field_validator("family", mode="before")
    @classmethod
    def one_word_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("base_url")
    @classmethod
    def http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("token_limit_parameter")
    @classmethod
    def of_openai_chat(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("api", "openai-chat") != "openai-chat":
            raise ValueError("is a setting of the openai-chat API only")
        return value

    @field_validator("fallback_model")
    @classmethod
    def another_model(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value == info.data.get("model"):
            raise ValueError("must name a model other than `model`")
        return value

    def spec(self, name: str) -> ProviderSpec:
        """The provider this entry describes, under `name`."""
        fixed = {"api", "model", "api_key_env", "base_url", "base_url_env", "kind", "default"}
        settings = tuple(
            (field, getattr(self, field))
            for field in type(self).model_fields
            if field not in fixed | {"family"} and getattr(self, field) is not None
        )
        return ProviderSpec(
            name=name,
            api=self.api,
            kind=self.kind or KINDS[self.api],
            default_model=self.model,
            key_env=self.api_key_env,
            base_url_env=self.base_url_env,
            default_base_url=self.base_url,
            settings=settings,
            default=self.default,
            family=tuple(self.family),
        )


def entry_problems(name: str, table: object) -> list[str]:
    """What is wrong with one entry, each naming its field; empty when it is fine."""
    where = f"[providers.{name}]" if NAME.match(name) else f"[providers.{name!r}]"
    if not NAME.match(name):
        return [
            f"{where} name: must be lower-case letters, digits and `_`, starting with a letter, "
            "at most 32 characters (it names the provider's asset, resource and variables)"
        ]
    if not isinstance(table, dict):
        return [f"{where}: must be a table of fields, not {type(table).__name__}"]
    try:
        ProviderEntry.model_validate(table)
    except ValidationError as error:
        return [_said(where, problem) for problem in error.errors(include_url=False)]
    return []


def _said(where: str, problem: Mapping[str, Any]) -> str:
    """One pydantic problem as `[providers.x] field: message`, without the value's text
    where the value is not the problem's subject."""
    fields = [str(part) for part in problem["loc"] if not isinstance(part, int)]
    field = ".".join(fields) or "entry"
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"{where} {field}: {message}"


def read_providers_file(path: Path) -> tuple[ProviderSpec, ...]:
    """Every provider the file at `path` lists, in its order; a `ProvidersFileError` naming
    the file, the entry and the field for each mistake."""
    said = f"providers file {path}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ProvidersFileError(f"{said}: cannot be read ({error.strerror or error})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ProvidersFileError(f"{said}: not valid TOML ({error})") from None
    unknown = sorted(set(data) - {"providers"})
    if unknown:
        raise ProvidersFileError(
            f"{said}: unknown table(s) {', '.join(unknown)}; providers go in [providers.<name>]"
        )
    tables = data.get("providers")
    if not isinstance(tables, dict) or not tables:
        raise ProvidersFileError(f"{said}: no [providers.<name>] entry; list at least one")
    problems = [p for name, table in tables.items() for p in entry_problems(name, table)]
    if problems:
        raise ProvidersFileError(f"{said}: " + "; ".join(problems))
    return tuple(ProviderEntry.model_validate(table).spec(name) for name, table in tables.items())


def providers_file(environ: Mapping[str, str] = os.environ) -> Path:
    """The file `DRAFTS_PROVIDERS_FILE` names, else the one shipped in the package."""
    named = environ.get(PROVIDERS_FILE_ENV, "").strip()
    return Path(named).expanduser().resolve() if named else SHIPPED_PROVIDERS_FILE


def configured_providers(environ: Mapping[str, str] = os.environ) -> tuple[ProviderSpec, ...]:
    """Every provider of the providers file (`DRAFTS_PROVIDERS_FILE`, else the shipped one);
    a `ProvidersFileError` when the file is wrong."""
    return read_providers_file(providers_file(environ))


def leak_names(specs: Iterable[ProviderSpec]) -> frozenset[str]:
    """Every model id and family word the providers configure."""
    return frozenset(name for spec in specs for name in spec.leak_names)
