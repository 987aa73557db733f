"""Cost: exact decimals, nested token counts never counted twice, overrides, unknown models."""

import logging
from decimal import Decimal

import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion

from drafts_pipeline.llm.anthropic_messages import messages_reply
from drafts_pipeline.llm.generation import TokenUsage
from drafts_pipeline.llm.openai_chat import OpenAIChatProvider, chat_reply
from drafts_pipeline.llm.pricing import (
    PRICES,
    ModelPrice,
    cost_usd,
    resolve_price,
    table_price,
    token_count,
)
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS, ProviderSpec

PRICE = ModelPrice(
    input=Decimal("2"),
    cached_input=Decimal("0.10"),
    output=Decimal("10"),
    cache_write=Decimal("2.5"),
)


def anthropic_message(**usage: object) -> Message:
    return Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-5-5",
            "content": [{"type": "text", "text": "{}"}],
            "stop_reason": "end_turn",
            "usage": usage,
        }
    )


def chat_completion(usage: dict[str, object]) -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-6.2-sol",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "{}"},
                }
            ],
            "usage": usage,
        }
    )


def test_cost_is_an_exact_decimal() -> None:
    usage = TokenUsage(input_tokens=1234, output_tokens=567)

    cost = cost_usd(usage, PRICE)

    assert isinstance(cost, Decimal)
    assert cost == Decimal("0.008138")  # (1234 * 2 + 567 * 10) / 1e6


def test_cached_reasoning_and_cache_write_tokens_are_parts_not_extras() -> None:
    usage = TokenUsage(
        input_tokens=1000,
        output_tokens=500,
        cached_tokens=200,
        cache_write_tokens=100,
        reasoning_tokens=300,
    )

    # 700 uncached * 2 + 200 cached * 0.10 + 100 written * 2.5 + 500 out (reasoning included) * 10
    assert cost_usd(usage, PRICE) == Decimal("0.00667")


def test_cache_writes_cost_the_input_rate_when_the_table_has_no_write_rate() -> None:
    price = ModelPrice(input=Decimal("1"), cached_input=Decimal("0.1"), output=Decimal("4"))

    cost = cost_usd(TokenUsage(input_tokens=100, output_tokens=0, cache_write_tokens=100), price)

    assert cost == Decimal("0.0001")


def test_many_small_costs_add_up_exactly() -> None:
    one = cost_usd(TokenUsage(input_tokens=1, output_tokens=1), PRICE)

    assert one is not None
    assert sum([one] * 1000, Decimal(0)) == Decimal("0.012")


def test_anthropic_usage_adds_cache_reads_and_writes_to_input() -> None:
    reply = messages_reply(
        anthropic_message(
            input_tokens=800,
            cache_read_input_tokens=200,
            cache_creation_input_tokens=100,
            output_tokens=500,
            output_tokens_details={"thinking_tokens": 300},
        )
    )

    assert reply.usage == TokenUsage(
        input_tokens=1100,
        output_tokens=500,
        cached_tokens=200,
        cache_write_tokens=100,
        reasoning_tokens=300,
    )
    assert cost_usd(reply.usage, table_price("claude-sonnet-5-5")) == Decimal("0.00687")


def test_openai_usage_already_includes_cached_and_reasoning_tokens() -> None:
    reply = chat_reply(
        chat_completion(
            {
                "prompt_tokens": 1000,
                "completion_tokens": 500,
                "total_tokens": 1500,
                "prompt_tokens_details": {"cached_tokens": 200},
                "completion_tokens_details": {"reasoning_tokens": 300},
            }
        )
    )

    assert reply.usage == TokenUsage(
        input_tokens=1000, output_tokens=500, cached_tokens=200, reasoning_tokens=300
    )
    # 800 * 2 + 200 * 0.10 + 500 * 10, per million
    assert cost_usd(reply.usage, table_price("gpt-6.2-sol")) == Decimal("0.00662")


def test_moonshot_reports_cached_tokens_at_the_top_of_usage() -> None:
    reply = chat_reply(
        chat_completion(
            {
                "prompt_tokens": 1000,
                "completion_tokens": 100,
                "total_tokens": 1100,
                "cached_tokens": 600,
            }
        )
    )

    assert reply.usage == TokenUsage(input_tokens=1000, output_tokens=100, cached_tokens=600)
    # 400 * 3 + 600 * 0.30 + 100 * 15, per million
    assert cost_usd(reply.usage, table_price("kimi-k3")) == Decimal("0.00288")


@pytest.mark.parametrize("spec", SHIPPED_PROVIDERS, ids=lambda spec: spec.name)
def test_every_default_model_has_a_price(spec: ProviderSpec) -> None:
    assert table_price(spec.default_model) is not None


@pytest.mark.parametrize(
    ("model", "listed"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("gpt-6.2-sol-2026-10-01", "gpt-6.2-sol"),
        ("gpt-6.2-sol", "gpt-6.2-sol"),
    ],
)
def test_dated_snapshots_share_their_model_price(model: str, listed: str) -> None:
    assert table_price(model) == PRICES[listed]


def test_a_variant_is_not_priced_as_its_family() -> None:
    assert table_price("gpt-6.2-sol-mini") is None
    assert table_price("claude-sonnet-5-5-fast") is None


def test_offline_models_cost_nothing() -> None:
    price = resolve_price("offline-claude")

    assert cost_usd(TokenUsage(input_tokens=10_000, output_tokens=5_000), price) == Decimal(0)


def test_unknown_model_has_no_cost_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="drafts_pipeline.llm.pricing"):
        first = resolve_price("unheard-of-model-7")
        second = resolve_price("unheard-of-model-7")

    assert first is None and second is None
    assert cost_usd(TokenUsage(input_tokens=10, output_tokens=10), first) is None
    warnings = [r for r in caplog.records if "unheard-of-model-7" in r.getMessage()]
    assert len(warnings) == 1
    assert "input_usd_per_mtok" in warnings[0].getMessage()


def test_overrides_win_over_the_table() -> None:
    price = resolve_price("gpt-6.2-sol", input_usd_per_mtok=1.1, output_usd_per_mtok=0.0)

    assert price is not None
    assert price.input == Decimal("1.1")
    assert price.output == Decimal("0")
    assert price.cached_input == PRICES["gpt-6.2-sol"].cached_input
    assert price.cache_write_rate == Decimal("1.1")


def test_overrides_price_an_unknown_model() -> None:
    price = resolve_price("in-house-model", input_usd_per_mtok=0.5, output_usd_per_mtok=1.5)

    assert price == ModelPrice(
        input=Decimal("0.5"), cached_input=Decimal("0.5"), output=Decimal("1.5")
    )


def test_half_an_override_does_not_price_an_unknown_model() -> None:
    assert resolve_price("in-house-model-2", input_usd_per_mtok=0.5) is None


def test_the_resource_config_overrides_reach_the_price() -> None:
    resource = OpenAIChatProvider(
        name="openai",
        model="gpt-6.2-sol",
        api_key_env_var="OPENAI_API_KEY",
        input_usd_per_mtok=3,
        cached_input_usd_per_mtok=0.3,
        output_usd_per_mtok=12,
    )

    assert resource.price() == ModelPrice(
        input=Decimal("3"),
        cached_input=Decimal("0.3"),
        output=Decimal("12"),
        max_prompt_tokens=272_000,
    )


def test_a_prompt_above_the_short_context_tariff_has_no_cost() -> None:
    price = table_price("gpt-6.2-sol")

    assert cost_usd(TokenUsage(input_tokens=272_000, output_tokens=1), price) is not None
    assert cost_usd(TokenUsage(input_tokens=272_001, output_tokens=1), price, "gpt-6.2-sol") is None


def test_usage_that_does_not_add_up_has_no_cost() -> None:
    usage = TokenUsage(input_tokens=10, output_tokens=1, cached_tokens=20)

    assert cost_usd(usage, PRICE, "odd-model") is None


@pytest.mark.parametrize("value", ["12", 1.5, True])
def test_token_counts_must_be_integers(value: object) -> None:
    with pytest.raises(TypeError):
        token_count(value)


def test_an_absent_token_count_is_zero() -> None:
    assert token_count(None) == 0
    assert token_count(7) == 7
