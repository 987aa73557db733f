"""What a call cost, in exact decimal US dollars, from its token counts and a price table.

Every provider's usage is first normalised into `TokenUsage`, whose counts nest: `input_tokens`
is every prompt token the provider processed, `cached_tokens` and `cache_write_tokens` are parts
of it; `output_tokens` is every generated token, `reasoning_tokens` a part of it. Then one formula
prices them all, and no token is counted twice:

- OpenAI and Kimi: `prompt_tokens` already includes the cached tokens and `completion_tokens`
  already includes the reasoning tokens, so they map straight in.
- Anthropic: `input_tokens` excludes cache reads and cache writes, so the three are added up;
  `output_tokens` already includes thinking tokens.

Prices are the providers' standard (not batch, not priority) short-context rates, in USD per
million tokens; `ModelPrice.batch()` is the same model's price in a batch (every rate times the
model's `batch_factor`). A model missing from the table has no cost (None, and a warning once),
never a made-up zero; a prompt above a model's `max_prompt_tokens` is billed on another tariff,
so it also has no cost rather than a wrong one.
"""

import logging
import re
import threading
from dataclasses import dataclass, replace
from decimal import Decimal

from drafts_pipeline.llm.generation import TokenUsage

logger = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
# What a batch costs against the same tokens sent live, read 2026-11: Anthropic's Message Batches
# and OpenAI's Batch API charge 50% of the standard input and output rates (platform.claude.com/
# docs/en/build-with-claude/batch-processing, which applies the discount to all usage, cache reads
# and writes included; developers.openai.com/api/docs/pricing, batch column). Moonshot charges 60%
# (platform.kimi.ai/docs/pricing/batch: "60% of the standard model price"; its batch guide says
# "saving 40%"). Assumed where a page does not say it: cached input and cache writes in a batch
# take the same factor as every other rate (OpenAI's and Moonshot's cached input).
BATCH_DISCOUNT = Decimal("0.5")
MOONSHOT_BATCH_FACTOR = Decimal("0.6")
OFFLINE_PREFIX = "offline-"
SNAPSHOT_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens for one model."""

    input: Decimal
    cached_input: Decimal
    output: Decimal
    cache_write: Decimal | None = None
    max_prompt_tokens: int | None = None
    batch_factor: Decimal = BATCH_DISCOUNT

    @property
    def cache_write_rate(self) -> Decimal:
        """Cache writes cost the input rate unless the provider bills them apart."""
        return self.input if self.cache_write is None else self.cache_write

    def batch(self) -> "ModelPrice":
        """The price of the same tokens sent in a provider's batch: every rate, cached input
        and cache writes included, times `batch_factor`."""
        factor = self.batch_factor
        return replace(
            self,
            input=self.input * factor,
            cached_input=self.cached_input * factor,
            output=self.output * factor,
            cache_write=self.cache_write * factor if self.cache_write is not None else None,
        )


def token_count(value: object) -> int:
    """A token count from an API answer: absent is zero; a non-integer raises TypeError, which
    the providers report as a malformed answer."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a token count, got {value!r}")
    return value


def _price(
    input_: str,
    cached_input: str,
    output: str,
    cache_write: str | None = None,
    max_prompt_tokens: int | None = None,
    batch_factor: Decimal = BATCH_DISCOUNT,
) -> ModelPrice:
    return ModelPrice(
        input=Decimal(input_),
        cached_input=Decimal(cached_input),
        output=Decimal(output),
        cache_write=Decimal(cache_write) if cache_write is not None else None,
        max_prompt_tokens=max_prompt_tokens,
        batch_factor=batch_factor,
    )


# Sources, read 2026-10/11: platform.claude.com/docs (models/sonnet-5-5/overview, about-claude/
# pricing; Sonnet 5.5 cache reads cut to $0.10 on 2026-10-07), developers.openai.com/api/docs/
# models/<id> and /pricing (above 272K input tokens GPT-6 requests use a long-context tariff),
# platform.kimi.ai/docs/pricing/chat-k3. Cache writes: Anthropic 5-minute writes, OpenAI 30-minute.
PRICES: dict[str, ModelPrice] = {
    "claude-sonnet-5-5": _price("2", "0.10", "10", cache_write="2.50"),
    "claude-opus-5-5": _price("4", "0.20", "20", cache_write="5"),
    "claude-sonnet-4-5": _price("3", "0.30", "15", cache_write="3.75"),
    "claude-haiku-4-5": _price("1", "0.10", "5", cache_write="1.25"),
    "gpt-6.2-sol": _price("2", "0.10", "10", cache_write="2.50", max_prompt_tokens=272_000),
    "gpt-6-sol": _price("2", "0.20", "10", cache_write="2.50", max_prompt_tokens=272_000),
    "gpt-6-luna": _price("0.10", "0.01", "0.50", cache_write="0.125", max_prompt_tokens=272_000),
    "gpt-5.1": _price("1.25", "0.125", "10"),
    "kimi-k3": _price("3", "0.30", "15", batch_factor=MOONSHOT_BATCH_FACTOR),
}

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, message: str) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning(message)


def table_price(model: str) -> ModelPrice | None:
    """The table's price for a model id or a dated snapshot of it (`…-20250929`, `…-2025-11-13`)."""
    if model.startswith(OFFLINE_PREFIX):
        return ModelPrice(Decimal(0), Decimal(0), Decimal(0))
    return PRICES.get(model) or PRICES.get(SNAPSHOT_SUFFIX.sub("", model))


def _decimal(value: float | str | Decimal | None) -> Decimal | None:
    """A configured price as the decimal a person typed: 0.1 stays 0.1, not 0.1000…0555."""
    return None if value is None else Decimal(str(value))


def resolve_price(
    model: str,
    *,
    input_usd_per_mtok: float | str | Decimal | None = None,
    cached_input_usd_per_mtok: float | str | Decimal | None = None,
    output_usd_per_mtok: float | str | Decimal | None = None,
    batch_factor: float | str | Decimal | None = None,
) -> ModelPrice | None:
    """The table's price with configured overrides winning; None (and a warning once) when
    the input or output rate is known neither from config nor from the table.

    A cached-input rate not given anywhere defaults to the input rate (no discount assumed);
    cache writes follow the input rate once that is overridden; the batch factor is the
    configured one, else the table's, else `BATCH_DISCOUNT`.
    """
    listed = table_price(model)
    input_rate = _decimal(input_usd_per_mtok)
    if input_rate is None and listed is not None:
        input_rate = listed.input
    output_rate = _decimal(output_usd_per_mtok)
    if output_rate is None and listed is not None:
        output_rate = listed.output
    if input_rate is None or output_rate is None:
        _warn_once(
            model,
            f"no price for model {model!r}: its cost is recorded as unknown; add it to "
            "drafts_pipeline/llm/pricing.py or set the provider's input_usd_per_mtok and "
            "output_usd_per_mtok",
        )
        return None
    cached_rate = _decimal(cached_input_usd_per_mtok)
    if cached_rate is None:
        cached_rate = listed.cached_input if listed is not None else input_rate
    overridden_input = input_usd_per_mtok is not None
    factor = _decimal(batch_factor)
    if factor is None:
        factor = listed.batch_factor if listed is not None else BATCH_DISCOUNT
    return ModelPrice(
        input=input_rate,
        cached_input=cached_rate,
        output=output_rate,
        cache_write=listed.cache_write if listed is not None and not overridden_input else None,
        max_prompt_tokens=listed.max_prompt_tokens if listed is not None else None,
        batch_factor=factor,
    )


def cost_usd(usage: TokenUsage, price: ModelPrice | None, model: str = "") -> Decimal | None:
    """Exact cost of one call; None when the price, or the tariff for this prompt size, is
    unknown, or the usage does not add up."""
    if price is None:
        return None
    if price.max_prompt_tokens is not None and usage.input_tokens > price.max_prompt_tokens:
        _warn_once(
            f"{model}:long-context",
            f"{model or 'a model'}: a prompt of {usage.input_tokens} tokens is above "
            f"{price.max_prompt_tokens}, billed on a long-context tariff this table does not "
            "hold; its cost is recorded as unknown",
        )
        return None
    uncached = usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens
    if uncached < 0:
        _warn_once(
            f"{model}:inconsistent",
            f"{model or 'a model'}: usage reports more cached ({usage.cached_tokens}) and "
            f"cache-write ({usage.cache_write_tokens}) tokens than input tokens "
            f"({usage.input_tokens}); its cost is recorded as unknown",
        )
        return None
    micro_dollars = (
        uncached * price.input
        + usage.cached_tokens * price.cached_input
        + usage.cache_write_tokens * price.cache_write_rate
        + usage.output_tokens * price.output
    )
    return micro_dollars / MILLION
