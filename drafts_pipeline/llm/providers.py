"""The configured providers, as data: a fourth provider is one more `ProviderSpec`."""

import os
from dataclasses import dataclass

from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.llm.anthropic_messages import AnthropicMessagesProvider
from drafts_pipeline.llm.openai_chat import OpenAIChatProvider
from drafts_pipeline.llm.resource import LLMProvider


@dataclass(frozen=True)
class ProviderSpec:
    """One provider: its wire API, its default model and the variables that configure it."""

    name: str
    api: str
    kind: str
    default_model: str
    model_env: str
    key_env: str
    base_url_env: str
    default_base_url: str | None = None
    settings: tuple[tuple[str, object], ...] = ()
    """Resource settings of this provider that differ from its API class's defaults."""

    @property
    def resource_key(self) -> str:
        return f"{self.name}_llm"

    @property
    def asset_name(self) -> str:
        return f"{self.name}_draft"


PROVIDER_SPECS: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        name="claude",
        api="anthropic",
        kind="anthropic",
        default_model="claude-sonnet-5-5",
        model_env="DRAFTS_CLAUDE_MODEL",
        key_env="ANTHROPIC_API_KEY",
        base_url_env="ANTHROPIC_BASE_URL",
    ),
    ProviderSpec(
        name="openai",
        api="openai",
        kind="openai",
        default_model="gpt-6.2-sol",
        model_env="DRAFTS_OPENAI_MODEL",
        key_env="OPENAI_API_KEY",
        base_url_env="OPENAI_BASE_URL",
        settings=(("token_limit_parameter", "max_completion_tokens"),),
    ),
    ProviderSpec(
        name="kimi",
        api="openai",
        kind="moonshot",
        default_model="kimi-k3",
        model_env="DRAFTS_KIMI_MODEL",
        key_env="MOONSHOT_API_KEY",
        base_url_env="MOONSHOT_BASE_URL",
        default_base_url="https://api.moonshot.ai/v1",
        settings=(("token_limit_parameter", "max_tokens"),),
    ),
)

API_CLASSES: dict[str, type[LLMProvider]] = {
    "anthropic": AnthropicMessagesProvider,
    "openai": OpenAIChatProvider,
}


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
    "token_limit_parameter": str,
}


def settings_from_environment(provider: str, api: type[LLMProvider]) -> dict[str, object]:
    """The tunable settings of one provider that the environment sets."""
    found: dict[str, object] = {}
    for setting, kind in TUNABLE_SETTINGS.items():
        if setting not in api.model_fields:
            continue
        variable = f"DRAFTS_{provider.upper()}_{setting.upper()}"
        raw = os.environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            found[setting] = kind(raw)
        except ValueError:
            raise ConfigurationError(f"{variable}={raw!r} is not a valid {kind.__name__}") from None
    return found


def provider_resource(spec: ProviderSpec, mode: str) -> LLMProvider:
    """The resource for one provider, configured from the environment."""
    api = API_CLASSES[spec.api]
    return api(
        name=spec.name,
        mode=mode,
        model=os.environ.get(spec.model_env) or spec.default_model,
        api_key_env_var=spec.key_env,
        base_url=os.environ.get(spec.base_url_env) or spec.default_base_url,
        **{**dict(spec.settings), **settings_from_environment(spec.name, api)},
    )


def provider_resources(
    mode: str, specs: tuple[ProviderSpec, ...] = PROVIDER_SPECS
) -> dict[str, LLMProvider]:
    return {spec.resource_key: provider_resource(spec, mode) for spec in specs}
