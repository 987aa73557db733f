"""What drafting will cost before anyone is called: tokens from the characters a call sends,
dollars from the price table. Nothing here calls a provider or reads a store.

No tokenizer is used: Anthropic's and Moonshot's are not available offline, and tiktoken
downloads its encodings on first use. Input tokens are the characters sent divided by a number
of characters per token, calibrated on the provider's own answers once there are enough of them
(the input tokens the provider counted, over the characters of the prompts it was sent), and a
default for code-heavy prompts before that. Output tokens are the mean of the provider's valid
drafts so far, or a default. Input is priced at the model's input rate, except the share its
drafts so far read from or wrote to a prompt cache, priced at those rates (before there are
enough drafts, no cache hit is assumed: an upper bound); output at the output rate.
"""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from drafts_pipeline.llm.generation import TokenUsage
from drafts_pipeline.llm.pricing import ModelPrice, cost_usd

DEFAULT_CHARS_PER_TOKEN = 3.5
DEFAULT_OUTPUT_TOKENS = 600
# Valid drafts a provider needs before its own ratio and mean replace the defaults, and the
# newest drafts read for them.
MIN_CALIBRATION_DRAFTS = 20
CALIBRATION_SAMPLE = 1000
DEFAULT_RATIO_ERROR = (
    "against OpenAI's o200k_base tokenizer it counts 23% more input tokens than there are on "
    "the sample project's prompts, 24% more on 2,000 SQLAlchemy functions "
    "(benchmarks/estimate_error.py); Claude's and Kimi's tokenizers are not available "
    "offline, so its error for them is not measured"
)


@dataclass(frozen=True)
class DraftSample:
    """One valid draft as the calibration reads it: the characters its prompt sent, and the
    tokens the provider counted."""

    prompt_chars: int
    input_tokens: int
    output_tokens: int | None
    cached_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class TokenRatio:
    """Characters per input token, and what it rests on: `drafts` valid drafts (0: the
    default), with the error a single call's estimate had on them."""

    chars_per_token: float
    drafts: int = 0
    mean_error: float = 0.0
    worst_error: float = 0.0

    def tokens(self, chars: int) -> int:
        return math.ceil(chars / self.chars_per_token) if chars > 0 else 0

    def describe(self) -> str:
        if self.drafts == 0:
            return (
                f"{self.chars_per_token:g} characters per token, the default (fewer than "
                f"{MIN_CALIBRATION_DRAFTS} valid drafts to calibrate on); {DEFAULT_RATIO_ERROR}"
            )
        return (
            f"{self.chars_per_token:.2f} characters per token, calibrated on the provider's "
            f"{self.drafts} newest valid drafts (input tokens it counted over the characters "
            f"sent); on those drafts one call's estimate is off by {self.mean_error:.1%} on "
            f"average and {self.worst_error:.1%} at most"
        )


def token_ratio(samples: Sequence[DraftSample]) -> TokenRatio:
    """The provider's own ratio (sum of characters over sum of input tokens) where enough
    valid drafts have both, else the default."""
    usable = [s for s in samples if s.input_tokens > 0 and s.prompt_chars > 0]
    if len(usable) < MIN_CALIBRATION_DRAFTS:
        return TokenRatio(DEFAULT_CHARS_PER_TOKEN)
    ratio = sum(s.prompt_chars for s in usable) / sum(s.input_tokens for s in usable)
    errors = [abs(s.prompt_chars / ratio - s.input_tokens) / s.input_tokens for s in usable]
    return TokenRatio(ratio, len(usable), statistics.fmean(errors), max(errors))


def output_per_call(samples: Sequence[DraftSample]) -> tuple[int, str]:
    """Expected output tokens of a call, and where the figure comes from."""
    counted = [s.output_tokens for s in samples if s.output_tokens is not None]
    if len(counted) < MIN_CALIBRATION_DRAFTS:
        return DEFAULT_OUTPUT_TOKENS, (
            f"{DEFAULT_OUTPUT_TOKENS} a call, the default (fewer than {MIN_CALIBRATION_DRAFTS} "
            "valid drafts)"
        )
    mean = math.ceil(statistics.fmean(counted))
    return mean, f"{mean} a call, the mean of the provider's {len(counted)} newest valid drafts"


@dataclass(frozen=True)
class CacheShares:
    """The shares of input tokens a provider's calls read from its prompt cache and wrote to
    it, and what they rest on."""

    read: float = 0.0
    written: float = 0.0
    method: str = (
        f"no cache hit assumed (fewer than {MIN_CALIBRATION_DRAFTS} valid drafts): every input "
        "token at the uncached rate, an upper bound"
    )


def cache_shares(samples: Sequence[DraftSample]) -> CacheShares:
    """The provider's own cache shares over its newest valid drafts where there are enough."""
    usable = [s for s in samples if s.input_tokens > 0]
    if len(usable) < MIN_CALIBRATION_DRAFTS:
        return CacheShares()
    total = sum(s.input_tokens for s in usable)
    read = sum(s.cached_tokens for s in usable) / total
    written = sum(s.cache_write_tokens for s in usable) / total
    return CacheShares(
        read,
        written,
        f"{read:.0%} read from the prompt cache and {written:.0%} written to it, as in the "
        f"provider's {len(usable)} newest valid drafts",
    )


@dataclass(frozen=True)
class ProviderEstimate:
    """The calls one provider is expected to make for a set of tasks, and their cost."""

    provider: str
    model: str
    tasks: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None
    """None when it cannot be known: `cost_note` says why (never a made-up zero)."""
    cost_note: str | None
    input_method: str
    output_method: str
    cache_method: str = CacheShares.method

    @property
    def call_cost_usd(self) -> Decimal | None:
        """The mean estimated cost of one call; None with no call or no cost."""
        if self.cost_usd is None or self.tasks == 0:
            return None
        return self.cost_usd / self.tasks

    def cost_text(self) -> str:
        return f"${self.cost_usd:.6f}" if self.cost_usd is not None else "unknown"

    def summary(self) -> str:
        """One line for a log: the figures and how they were reached."""
        cost = self.cost_text() + (f" ({self.cost_note})" if self.cost_note else "")
        return (
            f"{self.provider} ({self.model}) estimate: {self.tasks} call(s), "
            f"{self.input_tokens} input tokens at {self.input_method}; {self.output_tokens} "
            f"output tokens at {self.output_method}; cost {cost}"
        )


@dataclass(frozen=True)
class CallEstimator:
    """One provider's calls priced before they are sent, from the texts each sends."""

    provider: str
    model: str
    price: ModelPrice | None
    ratio: TokenRatio
    output_tokens: int
    output_method: str
    cache: CacheShares = CacheShares()

    @classmethod
    def from_history(
        cls,
        provider: str,
        model: str,
        price: ModelPrice | None,
        samples: Sequence[DraftSample],
    ) -> "CallEstimator":
        output_tokens, output_method = output_per_call(samples)
        return cls(
            provider,
            model,
            price,
            token_ratio(samples),
            output_tokens,
            output_method,
            cache_shares(samples),
        )

    def batched(self) -> "CallEstimator":
        """The same calls sent in the provider's batch API, at its batch price."""
        return replace(self, price=self.price.batch() if self.price is not None else None)

    def input_tokens(self, texts: Sequence[str]) -> int:
        return self.ratio.tokens(sum(len(text) for text in texts))

    def cost_usd(self, texts: Sequence[str]) -> Decimal | None:
        """One call's estimated cost; None when the price, or the tariff for a prompt this
        long, is unknown."""
        tokens = self.input_tokens(texts)
        usage = TokenUsage(
            input_tokens=tokens,
            output_tokens=self.output_tokens,
            cached_tokens=math.floor(tokens * self.cache.read),
            cache_write_tokens=math.floor(tokens * self.cache.written),
        )
        return cost_usd(usage, self.price, self.model)

    def estimate(self, calls: Sequence[Sequence[str]]) -> ProviderEstimate:
        """The estimate for `calls`, each the texts one call sends."""
        input_tokens = [self.input_tokens(texts) for texts in calls]
        costs = [self.cost_usd(texts) for texts in calls]
        total: Decimal | None = sum((c for c in costs if c is not None), Decimal(0))
        note = None
        if self.price is None:
            total = None
            note = (
                f"no price for model {self.model!r}: set DRAFTS_{self.provider.upper()}_INPUT_"
                f"USD_PER_MTOK and DRAFTS_{self.provider.upper()}_OUTPUT_USD_PER_MTOK"
            )
        elif None in costs:
            total = None
            over = costs.count(None)
            note = (
                f"{over} call(s) above the {self.price.max_prompt_tokens}-token prompt of the "
                "model's short-context tariff, which the price table does not hold"
            )
        return ProviderEstimate(
            provider=self.provider,
            model=self.model,
            tasks=len(calls),
            input_tokens=sum(input_tokens),
            output_tokens=self.output_tokens * len(calls),
            cost_usd=total,
            cost_note=note,
            input_method=self.ratio.describe(),
            output_method=self.output_method,
            cache_method=self.cache.method,
        )
