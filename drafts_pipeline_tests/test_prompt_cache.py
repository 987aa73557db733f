"""Prompt caching: the fixed part of the prompt is the same bytes in every request, it is marked
for caching where the model can cache it, and what a cache reads and writes is priced and kept
per call, per draft and per day. Requests go through the real SDKs to the fake provider server,
which caches as each API documents (`fake_prompt_cache.py`)."""

import json
from datetime import UTC, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import select

from drafts_pipeline.defs.usage.assets import daily_llm_usage
from drafts_pipeline.drafting.provider_batch import draft_with_provider
from drafts_pipeline.drafting.validation import validate_draft
from drafts_pipeline.errors import TaskValidationError
from drafts_pipeline.llm.generation import TokenUsage
from drafts_pipeline.llm.offline import OfflineProvider
from drafts_pipeline.llm.prompt_cache import estimated_tokens
from drafts_pipeline.llm.provider import DraftRequest, LiveProvider
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS, ProviderSpec
from drafts_pipeline.prompts import docstring_v2
from drafts_pipeline.prompts.code_facts import symbol_facts
from drafts_pipeline.prompts.templates import TEMPLATES, fixed_part, prompt_for, prompt_hash
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DocumentationTask, LLMCall
from drafts_pipeline_tests.factories import make_task, with_prompts
from drafts_pipeline_tests.fake_clock import FakeTime
from drafts_pipeline_tests.fake_providers import FakeProviderServer

FAST: dict[str, Any] = {
    "initial_delay_s": 0.01,
    "max_delay_s": 0.05,
    "requests_per_minute": 60_000,
    "timeout_s": 5.0,
}
providers = pytest.mark.parametrize("spec", SHIPPED_PROVIDERS, ids=lambda spec: spec.name)

# A fixed part of 6,000 characters (1,500 tokens at the fake's four characters a token), task
# parts of 800 (200 tokens) that differ from their first character, an answer of 400 (100).
# The fixed part of the template the tasks here are drafted with (Python functions).
PY_SYSTEM = TEMPLATES["python-function"].system
FIXED = "Keep to the schema given. " * 230 + "Answer in JSON only!"
TASK_A = "A" + "a" * 799
TASK_B = "B" + "b" * 799
ANSWER = "x" * 400


def live(fake: FakeProviderServer, name: str, **overrides: Any) -> LiveProvider:
    return fake.resource(name, **{**FAST, **overrides})


def fixed_request(task_id: str, task_part: str, system: str = FIXED) -> DraftRequest:
    return DraftRequest(task_id, task_part, symbol="f", code="def f():\n    pass\n", system=system)


def two_tasks(store: DraftStore) -> list[DocumentationTask]:
    """Two tasks with their prompts recorded, as `pending_tasks` leaves them."""
    store.add_tasks(
        [
            make_task("shop.orders.compute_total"),
            make_task(
                "shop.tax.apply_vat",
                code="def apply_vat(amount, rate=0.2):\n    return round(amount * (1 + rate), 2)\n",
                context='"""Taxes."""',
            ),
        ]
    )
    return with_prompts(store, ["shop.orders.compute_total", "shop.tax.apply_vat"])


def system_of(spec: ProviderSpec, body: dict[str, Any]) -> Any:
    """What carries the fixed part in a request body: Anthropic's `system`, else the first
    message."""
    return body["system"] if spec.api == "anthropic-messages" else body["messages"][0]


def system_text(spec: ProviderSpec, body: dict[str, Any]) -> str:
    carrier = system_of(spec, body)
    content = carrier if spec.api == "anthropic-messages" else carrier["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


@providers
def test_the_fixed_part_is_the_same_bytes_in_every_request(
    store: DraftStore, fake_providers: FakeProviderServer, spec: ProviderSpec
) -> None:
    tasks = two_tasks(store)

    report = draft_with_provider(store, live(fake_providers, spec.name), tasks, run_id="run-1")

    assert report.outcomes["valid"] == 2
    first, second = (request.body for request in fake_providers.script(spec.name).requests)
    assert json.dumps(system_of(spec, first)) == json.dumps(system_of(spec, second))
    assert system_text(spec, first) == PY_SYSTEM
    # Only the task part, each task's own, differs; it holds nothing of the fixed part.
    task_parts = {body["messages"][-1]["content"] for body in (first, second)}
    assert task_parts == {task.prompt for task in tasks}
    assert not any("# What to avoid" in part for part in task_parts)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_the_fixed_part_is_long_enough_to_be_cached_by_the_default_models(template: str) -> None:
    # Four characters a token is a low estimate for English prose; 1,024 is the minimum of
    # claude-sonnet-5-5 and of OpenAI's automatic caching.
    assert estimated_tokens(TEMPLATES[template].system) >= 1.5 * 1024


@pytest.mark.parametrize(
    ("model", "marked"),
    [("claude-sonnet-5-5", True), ("claude-opus-5-5", True), ("claude-haiku-4-5", False)],
)
def test_claude_marks_the_fixed_part_where_the_model_caches_it(
    fake_providers: FakeProviderServer, model: str, marked: bool
) -> None:
    request = fixed_request("t.a", TASK_A, system=PY_SYSTEM)

    generation = live(fake_providers, "claude", model=model).generate(request)

    body = fake_providers.script("claude").requests[-1].body
    (block,) = body["system"]
    assert block["text"] == PY_SYSTEM
    # Haiku 4.5 caches from 4,096 tokens on: a mark would be ignored, so none is sent.
    assert ("cache_control" in block) is marked
    if marked:
        assert block["cache_control"] == {"type": "ephemeral"}
    assert generation.usage is not None
    written = estimated_tokens(PY_SYSTEM) if marked else 0
    assert generation.usage.cache_write_tokens == written


@pytest.mark.parametrize(
    ("provider", "model", "breakpoint"),
    [("openai", "gpt-6.2-sol", True), ("openai", "gpt-5.1", False), ("kimi", "kimi-k3", False)],
)
def test_openai_marks_the_end_of_the_fixed_part_from_gpt_5_6_on(
    fake_providers: FakeProviderServer, provider: str, model: str, breakpoint: bool
) -> None:
    request = fixed_request("t.a", TASK_A, system=PY_SYSTEM)

    live(fake_providers, provider, model=model).generate(request)

    body = fake_providers.script(provider).requests[-1].body
    system, user = body["messages"]
    assert user == {"role": "user", "content": TASK_A}
    if breakpoint:
        assert system["content"] == [
            {
                "type": "text",
                "text": PY_SYSTEM,
                "prompt_cache_breakpoint": {"mode": "explicit"},
            }
        ]
        # Without it, OpenAI would also write each task's whole prompt, never to read it.
        assert body["prompt_cache_options"] == {"mode": "explicit"}
    else:
        assert system == {"role": "system", "content": PY_SYSTEM}
        assert "prompt_cache_options" not in body


def test_a_fixed_part_below_the_minimum_is_not_marked(fake_providers: FakeProviderServer) -> None:
    short = "Answer with one JSON object. " * 20  # 580 characters, about 145 tokens
    for provider in ("claude", "openai"):
        live(fake_providers, provider).generate(fixed_request("t.a", TASK_A, system=short))
        live(fake_providers, provider).generate(fixed_request("t.b", TASK_B, system=short))

    claude = [request.body for request in fake_providers.script("claude").requests]
    assert [body["system"] for body in claude] == [[{"type": "text", "text": short}]] * 2
    assert all(
        request.response_body["usage"]["cache_creation_input_tokens"] == 0
        and request.response_body["usage"]["cache_read_input_tokens"] == 0
        for request in fake_providers.script("claude").requests
    )
    openai = [request.body for request in fake_providers.script("openai").requests]
    assert [body["messages"][0] for body in openai] == [{"role": "system", "content": short}] * 2
    assert all("prompt_cache_options" not in body for body in openai)


# (provider, model, usage and cost of the first call, of the second), worked by hand from the
# price table: USD per million tokens of uncached input, cache reads, cache writes, output.
HAND_WORKED = [
    # claude-sonnet-5-5 at 2 / 0.10 / 2.50 / 10. First: 1,500 written, 200 input, 100 output:
    # 1500 * 2.50 + 200 * 2 + 100 * 10 = 5150. Second: 1,500 read: 150 + 400 + 1000 = 1550.
    (
        "claude",
        "claude-sonnet-5-5",
        (TokenUsage(1700, 100, cache_write_tokens=1500), Decimal("0.00515")),
        (TokenUsage(1700, 100, cached_tokens=1500), Decimal("0.00155")),
    ),
    # gpt-6.2-sol at the same rates, its breakpoint at the end of the fixed part.
    (
        "openai",
        "gpt-6.2-sol",
        (TokenUsage(1700, 100, cache_write_tokens=1500), Decimal("0.00515")),
        (TokenUsage(1700, 100, cached_tokens=1500), Decimal("0.00155")),
    ),
    # gpt-5.1 at 1.25 / 0.125 / - / 10, automatic caching in 128-token blocks: the 6,000
    # shared characters hold 11 blocks of 512, 1,408 tokens. First: 1700 * 1.25 + 1000 = 3125.
    # Second: 1408 * 0.125 + 292 * 1.25 + 1000 = 176 + 365 + 1000 = 1541.
    (
        "openai",
        "gpt-5.1",
        (TokenUsage(1700, 100), Decimal("0.003125")),
        (TokenUsage(1700, 100, cached_tokens=1408), Decimal("0.001541")),
    ),
    # kimi-k3 at 3 / 0.30 / - / 15, Moonshot's automatic caching in 256-token blocks: 5
    # blocks of 1,024 characters, 1,280 tokens. First: 1700 * 3 + 100 * 15 = 6600. Second:
    # 1280 * 0.30 + 420 * 3 + 1500 = 384 + 1260 + 1500 = 3144.
    (
        "kimi",
        "kimi-k3",
        (TokenUsage(1700, 100), Decimal("0.0066")),
        (TokenUsage(1700, 100, cached_tokens=1280), Decimal("0.003144")),
    ),
]


@pytest.mark.parametrize(
    ("provider", "model", "first", "second"),
    HAND_WORKED,
    ids=[f"{provider}-{model}" for provider, model, _, _ in HAND_WORKED],
)
def test_the_second_call_reads_the_cache_at_the_cached_rate(
    fake_providers: FakeProviderServer,
    provider: str,
    model: str,
    first: tuple[TokenUsage, Decimal],
    second: tuple[TokenUsage, Decimal],
) -> None:
    fake_providers.script(provider).answer = lambda prompt: ANSWER
    resource = live(fake_providers, provider, model=model)

    one = resource.generate(fixed_request("t.a", TASK_A))
    two = resource.generate(fixed_request("t.b", TASK_B))

    assert (one.usage, one.cost_usd) == first
    assert (two.usage, two.cost_usd) == second
    assert one.calls[0].usage == one.usage and two.calls[0].cost_usd == two.cost_usd


def test_an_anthropic_cache_lives_five_minutes_from_its_last_use(
    fake_providers: FakeProviderServer,
) -> None:
    time = FakeTime()
    fake_providers.script("claude").prompt_cache.clock = time.monotonic
    resource = live(fake_providers, "claude")

    def cache_use() -> tuple[int, int]:
        usage = resource.generate(fixed_request("t.a", TASK_A)).usage
        assert usage is not None
        return usage.cache_write_tokens, usage.cached_tokens

    assert cache_use() == (1500, 0)
    time.advance(200)
    assert cache_use() == (0, 1500)
    time.advance(200)  # 400 s after the write, 200 after the last read
    assert cache_use() == (0, 1500)
    time.advance(301)
    assert cache_use() == (1500, 0)


def test_cache_reads_and_writes_are_kept_per_call_and_per_draft(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    tasks = two_tasks(store)

    draft_with_provider(store, live(fake_providers, "claude"), tasks, run_id="run-1")

    fixed = estimated_tokens(PY_SYSTEM)
    with store._session() as session:
        calls = session.scalars(select(LLMCall)).all()
    # Whichever task went first wrote the fixed part; the other read it.
    assert sorted((c.cache_write_tokens, c.cached_tokens) for c in calls) == [
        (0, fixed),
        (fixed, 0),
    ]
    drafts = store.latest_drafts([task.id for task in tasks], "claude")
    assert sorted((d.cache_write_tokens, d.cached_tokens) for d in drafts.values()) == [
        (0, fixed),
        (fixed, 0),
    ]
    by_task = {call.task_id: call for call in calls}
    for task in tasks:
        draft, call = drafts[task.id], by_task[task.id]
        assert (draft.input_tokens, draft.cost_usd) == (call.input_tokens, call.cost_usd)


def test_daily_llm_usage_shows_the_cache_hit_rate(
    store: DraftStore, fake_providers: FakeProviderServer, instance: dg.DagsterInstance
) -> None:
    tasks = two_tasks(store)
    draft_with_provider(store, live(fake_providers, "openai"), tasks, run_id="run-1")
    # Today has no partition until it ends: the calls are moved to yesterday.
    with store._session() as session, session.begin():
        for call in session.scalars(select(LLMCall)):
            call.started_at -= timedelta(days=1)
    with store._session() as session:
        calls = session.scalars(select(LLMCall)).all()
    day = calls[0].started_at.astimezone(UTC).date().isoformat()

    result = dg.materialize(
        [daily_llm_usage], instance=instance, resources={"store": store}, partition_key=day
    )

    fixed = estimated_tokens(PY_SYSTEM)
    input_tokens = sum(call.input_tokens or 0 for call in calls)
    (row,) = result.output_for_node("daily_llm_usage").to_dict("records")
    assert (row["provider"], row["calls"]) == ("openai", 2)
    assert (row["cached_tokens"], row["cache_write_tokens"]) == (fixed, fixed)
    assert row["cache_hit_rate"] == fixed / input_tokens
    metadata = result.asset_materializations_for_node("daily_llm_usage")[0].metadata
    assert metadata["cache_hit_rate"].value == fixed / input_tokens
    assert metadata["cache_hit_rate_by_provider"].value == {"openai": fixed / input_tokens}
    assert metadata["cache_write_tokens"].value == fixed


def test_the_offline_provider_counts_the_fixed_part_as_input() -> None:
    request = fixed_request("t.a", TASK_A)

    generation = OfflineProvider(name="claude").generate(request)

    assert generation.usage is not None and generation.usage.input_tokens == 1700


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_the_worked_example_passes_the_validation_it_teaches(template: str) -> None:
    system = TEMPLATES[template].system
    code = system.split("For this Python function:\n\n")[1].split("\n\na good")[0]
    answer = system.split("a good answer is:\n\n")[1].split("\n\nNote what")[0]
    code = "\n".join(line.removeprefix("    ") for line in code.splitlines())

    verdict = validate_draft(answer, "stop", symbol_facts(code), code)

    assert verdict.status == "valid", verdict.reasons
    assert verdict.checks["parameters"]["ok"]


def test_the_prompt_hash_covers_the_fixed_part(store: DraftStore) -> None:
    (task, _) = two_tasks(store)
    built = prompt_for(task)

    assert built.template_version == "python-function-v1"
    assert built.prompt_hash == prompt_hash("python-function-v1", PY_SYSTEM, built.text)
    assert built.prompt_hash != prompt_hash("python-function-v1", PY_SYSTEM + " ", built.text)
    assert built.full_text == f"{PY_SYSTEM}\n\n{built.text}"


def test_a_stored_v1_prompt_is_sent_without_a_fixed_part_and_an_unknown_version_is_refused() -> (
    None
):
    assert fixed_part("t.a", "docstring-v1") == ""
    assert fixed_part("t.a", "docstring-v2") == docstring_v2.SYSTEM
    assert fixed_part("t.a", "python-function-v1") == PY_SYSTEM
    with pytest.raises(TaskValidationError, match=r"task t\.a: .*'docstring-v9'.*pending_tasks"):
        fixed_part("t.a", "docstring-v9")
