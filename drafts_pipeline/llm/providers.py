"""The configured providers, as data: a fourth provider is one more entry of the providers
file (`provider_file.py`), and `DRAFTS_PROVIDERS` chooses among them for a run.

`provider_resources(mode)` makes one resource per spec: `OfflineProvider` in offline mode, else
the spec's wire API resource. A malformed providers file fails loudly (it is what the
definitions are built from); beyond it nothing here raises for a bad environment, so the code
location always loads, and a problem fails the run that needs the provider, naming the variable:

- The key is passed as `dg.EnvVar(<key_env>)`, which Dagster resolves when a run starts (the UI
  shows the variable's name, never the key). A variable unset when the definitions load leaves
  the key empty instead, so the run fails with our message naming it and the offline mode,
  rather than with Dagster's generic "environment variable ... is not set". Keys are checked
  (`keys.require_keys`) by whatever calls the providers, all of them before the first call.
- A `DRAFTS_<PROVIDER>_<SETTING>` value that does not parse makes a `MisconfiguredProvider`,
  whose setup (and `require_key`, which the CLI calls before a run) raises the problem.
"""

import os
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import dagster as dg
from pydantic import Field

from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.llm.anthropic_messages import AnthropicMessagesProvider
from drafts_pipeline.llm.budget import DailyBudget
from drafts_pipeline.llm.calling import OnStart
from drafts_pipeline.llm.generation import CallLog, Generation
from drafts_pipeline.llm.limits import PaceBook
from drafts_pipeline.llm.offline import STYLES, OfflineProvider
from drafts_pipeline.llm.openai_chat import OpenAIChatProvider
from drafts_pipeline.llm.pricing import ModelPrice
from drafts_pipeline.llm.provider import DraftRequest, LiveProvider, Outcome
from drafts_pipeline.llm.provider_file import (
    SHIPPED_PROVIDERS_FILE,
    ProviderSpec,
    configured_providers,
    read_providers_file,
)
from drafts_pipeline.settings import LLM_MODES

API_CLASSES: dict[str, type[LiveProvider]] = {
    "anthropic-messages": AnthropicMessagesProvider,
    "openai-chat": OpenAIChatProvider,
}

PROVIDERS_ENV = "DRAFTS_PROVIDERS"
SHIPPED_PROVIDERS = read_providers_file(SHIPPED_PROVIDERS_FILE)
__all__ = ["ProviderSpec", "configured_providers"]
"""The providers the package ships (Claude, OpenAI, Kimi): what runs without a providers file."""


def selected_providers(
    specs: tuple[ProviderSpec, ...], environ: Mapping[str, str] = os.environ
) -> tuple[ProviderSpec, ...]:
    """The providers a run drafts with: those `DRAFTS_PROVIDERS` names (comma-separated), else
    those the file marks `default = true`, in the file's order. A name the file does not
    list is a `ConfigurationError` naming the variable and the known names."""
    raw = environ.get(PROVIDERS_ENV, "").strip()
    if not raw:
        return tuple(spec for spec in specs if spec.default)
    wanted = {name.strip() for name in raw.split(",") if name.strip()}
    known = [spec.name for spec in specs]
    unknown = sorted(wanted - set(known))
    if unknown or not wanted:
        raise ConfigurationError(
            f"{PROVIDERS_ENV}={raw!r} names no provider of the providers file "
            f"({', '.join(unknown) or 'none given'}); known: {', '.join(known)}"
        )
    return tuple(spec for spec in specs if spec.name in wanted)


# Settings a deployment tunes per provider, read from `DRAFTS_<PROVIDER>_<SETTING>`,
# e.g. DRAFTS_CLAUDE_REQUESTS_PER_MINUTE=50 or DRAFTS_KIMI_MAX_ATTEMPTS=6.
TUNABLE_SETTINGS: dict[str, type] = {
    "max_output_tokens": int,
    "temperature": float,
    "timeout_s": float,
    "max_attempts": int,
    "initial_delay_s": float,
    "max_delay_s": float,
    "retry_after_cap_s": float,
    "max_in_flight": int,
    "requests_per_minute": int,
    "input_usd_per_mtok": float,
    "cached_input_usd_per_mtok": float,
    "output_usd_per_mtok": float,
    "batch_price_factor": float,
    "daily_budget_usd": float,
    "token_limit_parameter": str,
    "submit_mode": str,
    "fallback_model": str,
    "structured_output": str,
}


def settings_from_environment(
    provider: str, api: type[LiveProvider], environ: Mapping[str, str] = os.environ
) -> tuple[dict[str, Any], list[str]]:
    """The tunable settings of one provider that the environment sets, and the variables whose
    values do not parse, each said as a problem to fix."""
    found: dict[str, Any] = {}
    problems: list[str] = []
    for setting, kind in TUNABLE_SETTINGS.items():
        if setting not in api.model_fields:
            continue
        variable = f"DRAFTS_{provider.upper()}_{setting.upper()}"
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            found[setting] = kind(raw)
        except ValueError:
            problems.append(f"{variable}={raw!r} is not a valid {kind.__name__}")
    return found, problems


class MisconfiguredProvider(dg.ConfigurableResource):
    """Stands in for a provider whose settings in the environment are wrong: the code location
    loads, and a run that needs the provider fails at its start saying what to fix."""

    name: str = Field(description="Provider name, e.g. `claude`.")
    problem: str = Field(description="What is wrong, naming the environment variable.")

    def _error(self) -> ConfigurationError:
        return ConfigurationError(f"{self.name}: {self.problem}; fix or unset it")

    @property
    def effective_model(self) -> str:
        raise self._error()

    def settings_hash(self) -> str:
        raise self._error()

    def require_key(self) -> None:
        raise self._error()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        raise self._error()

    def share_pace(self, book: PaceBook) -> None:
        raise self._error()

    def price(self) -> ModelPrice | None:
        raise self._error()

    def daily_budget(self) -> Decimal | None:
        raise self._error()

    def generate(
        self,
        request: DraftRequest,
        *,
        on_start: OnStart | None = None,
        call_log: CallLog | None = None,
        budget: DailyBudget | None = None,
    ) -> Generation:
        raise self._error()

    def generate_each(
        self,
        requests: list[DraftRequest],
        on_start: OnStart | None = None,
        call_log: CallLog | None = None,
        budget: DailyBudget | None = None,
    ) -> Iterator[Outcome]:
        raise self._error()


ProviderResource = LiveProvider | OfflineProvider | MisconfiguredProvider


def provider_resource(spec: ProviderSpec, mode: str, variant: int = 0) -> ProviderResource:
    """The resource for one provider, configured from its spec and the environment;
    `variant` tells offline providers of no known style apart (`offline.py`)."""
    if mode not in LLM_MODES:
        raise ConfigurationError(f"LLM mode {mode!r} is not one of {', '.join(LLM_MODES)}")
    if mode == "offline":
        return OfflineProvider(name=spec.name, variant=variant)
    api = API_CLASSES[spec.api]
    tuned, problems = settings_from_environment(spec.name, api)
    if problems:
        return MisconfiguredProvider(name=spec.name, problem="; ".join(problems))
    key = dg.EnvVar(spec.key_env) if os.environ.get(spec.key_env) else None
    options: dict[str, Any] = {**dict(spec.settings), **tuned}
    return api(
        name=spec.name,
        model=os.environ.get(spec.model_env) or spec.default_model,
        api_key=key,
        api_key_env_var=spec.key_env,
        base_url=(spec.base_url_env and os.environ.get(spec.base_url_env)) or spec.default_base_url,
        family=list(spec.family),
        **options,
    )


def provider_resources(
    mode: str, specs: tuple[ProviderSpec, ...] | None = None
) -> dict[str, ProviderResource]:
    """One resource per provider of `specs` (default: the providers file's)."""
    chosen = configured_providers() if specs is None else specs
    variants = offline_variants(chosen)
    return {
        spec.resource_key: provider_resource(spec, mode, variants.get(spec.name, 0))
        for spec in chosen
    }


def offline_variants(specs: tuple[ProviderSpec, ...]) -> dict[str, int]:
    """Each provider without an offline style of its own -> its place among them, so that no
    two offline providers write the same draft."""
    generic = [spec.name for spec in specs if spec.name not in STYLES]
    return {name: place for place, name in enumerate(generic)}
