"""The settings the definitions need while the code location loads (the backfill policy's
batch, the sensor's interval, the first usage day, the providers), read once here.

A bad value leaves its default in place so that the location still loads; the tick or run that
needs the value reads the settings again and fails naming the variable. The providers file is
the exception: the per-provider assets, checks and resources are built from it, so a malformed
file fails the load, naming the file, the entry and the field.
"""

from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.llm.provider_file import ProviderSpec
from drafts_pipeline.llm.providers import configured_providers, selected_providers
from drafts_pipeline.settings import Settings

LOADED_SETTINGS = Settings.from_environment()

LOADED_PROVIDERS = configured_providers()
"""Every provider of the providers file: each has its asset, checks and resource."""


def drafting_providers(specs: tuple[ProviderSpec, ...]) -> tuple[ProviderSpec, ...]:
    """The providers the drafting job runs (`DRAFTS_PROVIDERS`, else the file's defaults);
    the defaults when the variable names an unknown provider, whose runs then fail on it."""
    try:
        return selected_providers(specs)
    except ConfigurationError:
        return tuple(spec for spec in specs if spec.default)
