"""Regenerate on purpose: redraft tasks with some providers, another model or another template,
as new versions. No Dagster here; the drafting assets take the request as run config (or run
tags, for backfills) and hand it to these functions.

A task in `voting` is reopened first (cause `regenerate`, a new ballot); the labelled drafts of
the providers not regenerated are carried into the new ballot as they are (`store/history.py`),
so its ballot has every provider again without calling the others.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.llm.offline import OfflineProvider
from drafts_pipeline.llm.provider import LiveProvider, LLMProvider
from drafts_pipeline.prompts.templates import known_template, template_names

# Run tags that ask for a regenerate where run config cannot be given (Dagster's backfill
# dialog takes tags): providers (comma-separated, or `all`), and the overrides.
REGENERATE_TAG = "drafts/regenerate"
MODEL_TAG = "drafts/regenerate-model"
TEMPLATE_TAG = "drafts/regenerate-template"


@dataclass(frozen=True)
class Regeneration:
    """A checked request to regenerate: the providers to call again, and the overrides."""

    providers: tuple[str, ...]
    model: str | None = None
    template: str | None = None

    def reason(self) -> str:
        """What the reopening row records."""
        parts = [f"providers {', '.join(self.providers)}"]
        if self.model is not None:
            parts.append(f"model {self.model}")
        if self.template is not None:
            parts.append(f"template {self.template}")
        return "regenerate: " + "; ".join(parts)


def regeneration(
    providers: Sequence[str] | None,
    model: str | None,
    template: str | None,
    selected: Sequence[str],
) -> Regeneration:
    """The request checked against the providers the run materialises (`selected`): no
    providers named means all of them. A provider not in the run, an empty model or an unknown
    template is a `ConfigurationError` saying which."""
    names = list(dict.fromkeys(name.strip() for name in providers or () if name.strip()))
    if providers is not None and not names:
        raise ConfigurationError("regenerate.providers is empty: name providers, or leave it out")
    missing = [name for name in names if name not in selected]
    if missing:
        raise ConfigurationError(
            f"regenerate names provider(s) {', '.join(missing)}, which this run does not "
            f"materialise (it has {', '.join(selected) or 'none'}); select their draft assets"
        )
    if model is not None and not model.strip():
        raise ConfigurationError("regenerate.model is empty: name a model, or leave it out")
    if template is not None and not known_template(template.strip()):
        raise ConfigurationError(
            f"regenerate.template {template!r} is not a template; known: "
            f"{', '.join(template_names())}"
        )
    return Regeneration(
        tuple(names or selected),
        None if model is None else model.strip(),
        None if template is None else template.strip(),
    )


def tagged_regeneration(
    tags: Mapping[str, str],
) -> tuple[list[str] | None, str | None, str | None] | None:
    """`(providers, model, template)` the run's tags ask for (providers None: all), or None
    when no `drafts/regenerate` tag is set. An override tag without it is an error: it would
    silently do nothing."""
    chosen = tags.get(REGENERATE_TAG)
    model, template = tags.get(MODEL_TAG), tags.get(TEMPLATE_TAG)
    if chosen is None:
        given = [tag for tag, value in ((MODEL_TAG, model), (TEMPLATE_TAG, template)) if value]
        if given:
            raise ConfigurationError(
                f"run tag {', '.join(given)} given without {REGENERATE_TAG} (`all` or "
                "comma-separated providers): nothing would be regenerated"
            )
        return None
    providers = None if chosen.strip().lower() == "all" else chosen.split(",")
    return providers, model, template


def with_model(provider: LLMProvider, model: str) -> LLMProvider:
    """`provider` asking `model` instead of its own."""
    if isinstance(provider, LiveProvider | OfflineProvider):
        return provider.with_model(model)
    raise ConfigurationError(f"{provider.name}: cannot take a model override")
