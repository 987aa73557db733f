"""One contract, run against every configured provider through its real SDK and the fake server.

Each test is parametrised over `SHIPPED_PROVIDERS`, so a fourth provider is covered by adding its
spec (and its wire to the fake server), not by copying tests.
"""

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest

from drafts_pipeline.drafting.validation import (
    INCOMPLETE_FINISH_REASONS,
    REFUSAL_FINISH_REASONS,
    validate_draft,
)
from drafts_pipeline.errors import ConfigurationError, ProviderError
from drafts_pipeline.llm.generation import Generation, TokenUsage
from drafts_pipeline.llm.keys import UnusableKey, key_problem, require_keys
from drafts_pipeline.llm.limits import RequestLimiter
from drafts_pipeline.llm.offline import OfflineProvider
from drafts_pipeline.llm.pricing import PRICES, cost_usd
from drafts_pipeline.llm.provider import DraftRequest, LiveProvider
from drafts_pipeline.llm.providers import (
    SHIPPED_PROVIDERS,
    MisconfiguredProvider,
    ProviderSpec,
    provider_resource,
)
from drafts_pipeline.llm.retry import retry_after_seconds
from drafts_pipeline.llm.structured_output import draft_schema
from drafts_pipeline.prompts.code_facts import symbol_facts
from drafts_pipeline.prompts.templates import build_prompt
from drafts_pipeline_tests.fake_clock import FakeTime
from drafts_pipeline_tests.fake_providers import (
    WIRES,
    FakeProviderServer,
    FixedUsage,
    unused_base_url,
)
from drafts_pipeline_tests.provider_doubles import RecordingCallLog

CODE = '''def parse_config(path: str, strict: bool = False) -> dict:
    """Read the file."""
    if not path:
        raise ValueError("empty path")
    return {"path": path, "strict": strict}
'''
EXPECTED_STOP = {"anthropic": "end_turn", "openai": "stop", "moonshot": "stop"}
CUT_SHORT = {"anthropic": "max_tokens", "openai": "length", "moonshot": "length"}

providers = pytest.mark.parametrize("spec", SHIPPED_PROVIDERS, ids=lambda spec: spec.name)


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


def draft_request(task_id: str = "cfg.parse_config") -> DraftRequest:
    prompt = build_prompt(
        task_id=task_id,
        template="docstring",
        language="python",
        symbol="cfg.parse_config",
        source_path="cfg.py",
        code=CODE,
        context='"""Configuration."""',
    )
    return DraftRequest(
        task_id=task_id,
        prompt=prompt.text,
        symbol="cfg.parse_config",
        code=CODE,
        system=prompt.system,
    )


def live(fake: FakeProviderServer, spec: ProviderSpec, **overrides: Any) -> LiveProvider:
    """The provider's live resource on the fake, with tiny delays so retries cost milliseconds."""
    settings: dict[str, Any] = {
        "initial_delay_s": 0.01,
        "max_delay_s": 0.05,
        "timeout_s": 2.0,
        "requests_per_minute": 60_000,
        **overrides,
    }
    return fake.resource(spec.name, **settings)


def wire(spec: ProviderSpec) -> str:
    return WIRES[spec.name]


def expected_cost(model: str, usage: FixedUsage) -> Decimal:
    price = PRICES[model]
    uncached = usage.input_tokens - usage.cached_tokens
    return (
        uncached * price.input
        + usage.cached_tokens * price.cached_input
        + usage.output_tokens * price.output
    ) / Decimal(1_000_000)


def everything_said(outcome: Generation | ProviderError) -> str:
    """Every text a generation or an error carries, as it could reach a table or a log."""
    calls = outcome.calls
    parts = [repr(outcome), str(outcome), *(repr(call) for call in calls)]
    return "\n".join(parts)


@providers
def test_an_answer_is_parsed_with_usage_cost_and_request_id(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    usage = FixedUsage(
        input_tokens=1200, output_tokens=300, cached_tokens=200, reasoning_tokens=100
    )
    fake.script(spec.name).usage = usage

    generation = live(fake, spec).generate(draft_request())

    answered = fake.script(spec.name).requests[-1]
    reasoning = 0 if wire(spec) == "moonshot" else 100
    request_id = answered.response_headers.get("request-id") or answered.response_headers.get(
        "x-request-id", answered.response_body["id"]
    )
    assert validate_draft(generation.text, generation.finish_reason, symbol_facts(CODE)).status == (
        "valid"
    )
    assert generation.provider == spec.name
    assert generation.model == spec.default_model
    assert generation.finish_reason == EXPECTED_STOP[wire(spec)]
    assert generation.request_id == request_id
    assert generation.usage == TokenUsage(
        input_tokens=1200, output_tokens=300, cached_tokens=200, reasoning_tokens=reasoning
    )
    assert isinstance(generation.cost_usd, Decimal)
    assert generation.cost_usd == expected_cost(spec.default_model, usage)
    assert generation.attempts == 1
    (call,) = generation.calls
    assert (call.attempt, call.status_code, call.error_type) == (1, 200, None)
    assert call.usage == generation.usage
    assert call.cost_usd == generation.cost_usd
    assert call.request_id == request_id


@providers
def test_the_request_is_what_the_api_documents(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    live(fake, spec, max_output_tokens=777).generate(draft_request())

    body = fake.script(spec.name).requests[-1].body
    limit = "max_tokens" if spec.name != "openai" else "max_completion_tokens"
    assert body["model"] == spec.default_model
    assert body[limit] == 777
    request = draft_request()
    # The fixed part first, as the system prompt; the task part as the one user message.
    if wire(spec) == "anthropic":
        assert [block["text"] for block in body["system"]] == [request.system]
        assert body["messages"] == [{"role": "user", "content": request.prompt}]
    else:
        system, *rest = body["messages"]
        assert system["role"] == "system"
        content = system["content"]
        parts = [content] if isinstance(content, str) else [part["text"] for part in content]
        assert parts == [request.system]
        assert rest == [{"role": "user", "content": request.prompt}]
    assert "temperature" not in body
    # The answer's shape, natively (`structured_output.py`): the draft's schema, or for Kimi,
    # whose API documents JSON mode only, a JSON object.
    structured = {
        "claude": {"output_config": {"format": {"type": "json_schema", "schema": draft_schema()}}},
        "openai": {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "doc_draft", "schema": draft_schema(), "strict": True},
            }
        },
        "kimi": {"response_format": {"type": "json_object"}},
    }[spec.name]
    assert {key: body[key] for key in structured} == structured
    # Nothing else: the system prompt is Anthropic's own field, the cache options OpenAI's.
    extra = {"system"} if wire(spec) == "anthropic" else {"prompt_cache_options"} & set(body)
    assert set(body) == {"model", "messages", limit, *structured, *extra}


@providers
def test_a_configured_temperature_is_sent(fake: FakeProviderServer, spec: ProviderSpec) -> None:
    live(fake, spec, temperature=0.2).generate(draft_request())

    assert fake.script(spec.name).requests[-1].body["temperature"] == 0.2


@providers
def test_the_key_travels_only_in_the_auth_header(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    key = fake.script(spec.name).api_key
    assert key is not None
    fake.script(spec.name).fail("server_error")

    generation = live(fake, spec).generate(draft_request())

    for request in fake.script(spec.name).requests:
        carrying = [name for name, value in request.headers.items() if key in value]
        assert carrying in (["authorization"], ["x-api-key"])
        assert key not in str(request.body)
    assert key not in everything_said(generation)


RETRYABLE_FAULTS = {
    "rate_limit": (429, "rate_limited"),
    "server_error": (500, "server_error"),
    "unavailable": (503, "server_error"),
    "request_timeout": (408, "request_timeout"),
    "conflict": (409, "conflict"),
    "timeout": (None, "timeout"),
    "disconnect": (None, "connection"),
    "malformed": (None, "malformed_response"),
    "schema": (200, "malformed_response"),
}


@providers
@pytest.mark.parametrize("kind", RETRYABLE_FAULTS)
def test_a_transient_fault_is_retried_then_succeeds(
    fake: FakeProviderServer, spec: ProviderSpec, kind: str
) -> None:
    fake.script(spec.name).fail(kind, delay_s=1.0)

    generation = live(fake, spec, timeout_s=0.3).generate(draft_request())

    status, error_type = RETRYABLE_FAULTS[kind]
    first, second = generation.calls
    assert fake.script(spec.name).calls == 2
    assert generation.attempts == 2
    assert (first.attempt, first.status_code, first.error_type) == (1, status, error_type)
    assert first.error_message
    assert (second.attempt, second.status_code, second.error_type) == (2, 200, None)
    assert generation.text


@pytest.mark.parametrize("spec", [SHIPPED_PROVIDERS[0]], ids=["claude"])
def test_claude_overloaded_529_is_retried(fake: FakeProviderServer, spec: ProviderSpec) -> None:
    fake.script(spec.name).fail("overloaded", times=2)

    generation = live(fake, spec).generate(draft_request())

    assert [call.status_code for call in generation.calls] == [529, 529, 200]
    assert generation.calls[0].error_type == "overloaded"


@providers
def test_a_malformed_answer_is_caught_without_strict_validation(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    fake.script(spec.name).fail("schema")

    generation = live(fake, spec, strict=False).generate(draft_request())

    assert generation.calls[0].error_type == "malformed_response"
    assert generation.attempts == 2


@providers
def test_a_billed_answer_without_readable_content_keeps_its_tokens_and_cost(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    """A 200 whose usage is readable but whose content is not (a null `content`, no choices)
    was paid for: its attempt's row carries the tokens and their cost, so spend and budget
    count it, and the draft is asked for again."""
    fake.script(spec.name).fail("unreadable")
    provider = live(fake, spec, strict=False)

    generation = provider.generate(draft_request())

    first, second = generation.calls
    assert (first.error_type, second.error_type) == ("malformed_response", None)
    assert first.usage is not None and first.usage.output_tokens > 0
    assert second.usage is not None
    assert first.usage.output_tokens == second.usage.output_tokens
    assert first.cost_usd is not None and first.cost_usd > 0
    assert first.cost_usd == cost_usd(first.usage, PRICES[provider.model], provider.model)
    assert first.request_id
    assert fake.script(spec.name).calls == 2
    # The draft's cost is what it was paid: both answers.
    assert second.cost_usd is not None
    assert generation.cost_usd == first.cost_usd + second.cost_usd


PERMANENT_FAULTS = {
    "unauthorized": (401, "authentication"),
    "bad_request": (400, "bad_request"),
    "forbidden": (403, "permission"),
    "not_found": (404, "not_found"),
    "unprocessable": (422, "unprocessable"),
    "quota": (429, "quota"),
}


@providers
@pytest.mark.parametrize("kind", PERMANENT_FAULTS)
def test_a_permanent_fault_is_not_retried(
    fake: FakeProviderServer, spec: ProviderSpec, kind: str
) -> None:
    fake.script(spec.name).fail(kind)

    with pytest.raises(ProviderError) as raised:
        live(fake, spec).generate(draft_request())

    status, error_type = PERMANENT_FAULTS[kind]
    error = raised.value
    assert fake.script(spec.name).calls == 1
    assert (error.status_code, error.error_type, error.retryable) == (status, error_type, False)
    assert error.provider == spec.name
    (call,) = error.calls
    assert (call.attempt, call.status_code, call.error_type) == (1, status, error_type)


@providers
def test_errors_say_what_to_do(fake: FakeProviderServer, spec: ProviderSpec) -> None:
    resource = live(fake, spec, api_key="a-wrong-key-0123456789")
    with pytest.raises(ProviderError) as unauthorized:
        resource.generate(draft_request())
    fake.script(spec.name).fail("quota")
    with pytest.raises(ProviderError) as broke:
        live(fake, spec).generate(draft_request())

    assert f"401 authentication failed: check {spec.key_env}" in str(unauthorized.value)
    assert "add credit" in str(broke.value)


@providers
def test_no_key_in_any_record_message_or_log(
    fake: FakeProviderServer, spec: ProviderSpec, caplog: pytest.LogCaptureFixture
) -> None:
    # The tail is not hexadecimal, so no random request id in the log can contain it by chance.
    wrong = "a-wrong-key-0123456-wxyz"
    right = fake.script(spec.name).api_key
    assert right is not None
    echoed = f"the key {right} is not allowed here"
    outcomes: list[Generation | ProviderError] = []
    with caplog.at_level(logging.DEBUG):
        for resource, kind, message in [
            (live(fake, spec, api_key=wrong), None, None),
            (live(fake, spec), "quota", None),
            (live(fake, spec, max_attempts=2), "server_error", echoed),
            (live(fake, spec), "rate_limit", echoed),
            (live(fake, spec), "bad_request", echoed),
        ]:
            if kind is not None:
                fake.script(spec.name).fail(kind, times=2, message=message)
            try:
                outcomes.append(resource.generate(draft_request()))
            except ProviderError as error:
                outcomes.append(error)

    said = "\n".join(everything_said(outcome) for outcome in outcomes) + caplog.text
    assert len(outcomes) == 5
    assert wrong not in said and right not in said
    assert wrong[-4:] not in said
    assert "is not allowed here" in said


@providers
@pytest.mark.parametrize(
    "header", [{"retry_after": "0.3"}, {"retry_after_ms": "300"}], ids=["seconds", "milliseconds"]
)
def test_retry_after_is_honoured(
    fake: FakeProviderServer, spec: ProviderSpec, header: dict[str, Any]
) -> None:
    fake.script(spec.name).fail("rate_limit", **header)

    generation = live(fake, spec, initial_delay_s=0.001, max_delay_s=0.001).generate(
        draft_request()
    )

    first, second = fake.script(spec.name).requests
    assert generation.attempts == 2
    assert second.received_at - first.received_at >= 0.29


@providers
def test_retry_after_above_the_cap_fails_fast(fake: FakeProviderServer, spec: ProviderSpec) -> None:
    fake.script(spec.name).fail("rate_limit", retry_after="3600")
    clock = FakeTime()
    resource = live(fake, spec, retry_after_cap_s=5, clock=clock)

    with pytest.raises(ProviderError) as first:
        resource.generate(draft_request())
    with pytest.raises(ProviderError) as second:
        resource.generate(draft_request("cfg.other"))

    assert [wait for wait in clock.slept if wait > 5] == []
    assert fake.script(spec.name).calls == 1
    assert "retry_after_cap_s=5" in str(first.value)
    assert (first.value.status_code, len(first.value.calls)) == (429, 1)
    assert "retry_after_cap_s=5" in str(second.value)
    assert second.value.calls == ()


@providers
def test_attempts_are_bounded(fake: FakeProviderServer, spec: ProviderSpec) -> None:
    fake.script(spec.name).down = "500"

    with pytest.raises(ProviderError) as raised:
        live(fake, spec, max_attempts=3).generate(draft_request())

    assert fake.script(spec.name).calls == 3
    assert [call.attempt for call in raised.value.calls] == [1, 2, 3]
    assert {call.status_code for call in raised.value.calls} == {500}
    assert "gave up after 3 attempt(s)" in str(raised.value)
    assert raised.value.retryable


@providers
def test_every_attempt_is_recorded(fake: FakeProviderServer, spec: ProviderSpec) -> None:
    fake.script(spec.name).fail("rate_limit").fail("server_error")

    generation = live(fake, spec).generate(draft_request())

    calls = generation.calls
    assert [call.attempt for call in calls] == [1, 2, 3]
    assert [call.status_code for call in calls] == [429, 500, 200]
    assert [call.error_type for call in calls] == ["rate_limited", "server_error", None]
    assert calls[0].started_at <= calls[1].started_at <= calls[2].started_at
    assert all(call.provider == spec.name and call.model == spec.default_model for call in calls)
    assert all(call.cost_usd is None for call in calls[:2])
    assert calls[-1].latency_ms is not None
    assert generation.latency_ms >= calls[-1].latency_ms
    if wire(spec) != "moonshot":
        assert all(call.request_id for call in calls)


@providers
def test_a_refused_connection_is_retried_then_reported(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    resource = live(fake, spec, base_url=unused_base_url(spec.name), max_attempts=2)

    with pytest.raises(ProviderError) as raised:
        resource.generate(draft_request())

    assert raised.value.error_type == "connection"
    assert len(raised.value.calls) == 2
    assert "base_url" in str(raised.value)


@providers
def test_a_provider_that_hangs_up_every_time_fails_after_its_attempts(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    fake.script(spec.name).down = "disconnect"

    with pytest.raises(ProviderError) as raised:
        live(fake, spec, max_attempts=2).generate(draft_request())

    assert fake.script(spec.name).calls == 2
    assert raised.value.error_type == "connection"


@providers
def test_live_mode_without_a_key_names_the_variable(
    fake: FakeProviderServer, spec: ProviderSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(spec.key_env, raising=False)
    resource = live(fake, spec, api_key=None)

    with pytest.raises(ConfigurationError, match=spec.key_env):
        resource.generate(draft_request())

    assert fake.script(spec.name).calls == 0


UNUSABLE_KEYS = {
    "empty": ("", "is not set or empty"),
    "spaces": ("   ", "holds only whitespace"),
    "trailing newline": ("sk-secret-tail-4242\n", "contains a line break"),
    "newline inside": ("sk-secret-half\nother-half", "contains a line break"),
    "leading space": (" sk-secret-lead-4242", "has whitespace at its start or end"),
    "tab inside": ("sk-secret\tx-4242", "contains a control character"),
    "non-ASCII": ("sk-secr\u00e9t-4242", "contains a non-ASCII character"),
}


@pytest.mark.parametrize(("key", "problem"), UNUSABLE_KEYS.values(), ids=UNUSABLE_KEYS)
def test_what_an_http_header_cannot_carry_is_an_unusable_key(key: str, problem: str) -> None:
    assert key_problem(key) == problem


def test_a_key_a_header_carries_is_usable() -> None:
    assert key_problem("sk-ant-api03-Ab_9-x~") is None
    assert key_problem("two words") is None  # a header carries an inner space


@providers
@pytest.mark.parametrize(("key", "problem"), UNUSABLE_KEYS.values(), ids=UNUSABLE_KEYS)
def test_an_unusable_key_fails_before_any_request_naming_only_the_variable(
    fake: FakeProviderServer, spec: ProviderSpec, key: str, problem: str
) -> None:
    resource = live(fake, spec, api_key=key)

    with pytest.raises(UnusableKey) as raised:
        resource.generate(draft_request())
    with pytest.raises(UnusableKey):
        resource.require_key()

    said = str(raised.value)
    assert f"{spec.key_env} ({spec.name}) {problem}" in said
    assert "secret" not in said and "4242" not in said and "\n" not in said
    assert fake.script(spec.name).calls == 0


def test_every_unusable_key_and_setting_is_named_in_one_message(
    fake: FakeProviderServer,
) -> None:
    claude, openai, kimi = SHIPPED_PROVIDERS
    resources = [
        live(fake, claude, api_key=None),
        live(fake, openai, api_key="sk-secret-4242\n"),
        live(fake, kimi),
        MisconfiguredProvider(
            name="kimi", problem="DRAFTS_KIMI_MAX_ATTEMPTS='x' is not a valid int"
        ),
        OfflineProvider(name="claude"),
    ]

    with pytest.raises(ConfigurationError) as raised:
        require_keys(resources)

    said = str(raised.value)
    assert f"{claude.key_env} (claude) is not set or empty" in said
    assert f"{openai.key_env} (openai) contains a line break" in said
    assert "DRAFTS_KIMI_MAX_ATTEMPTS" in said and kimi.key_env not in said
    assert "sk-secret" not in said and "\n" not in said
    require_keys([live(fake, kimi), OfflineProvider(name="openai")])
    assert all(script.calls == 0 for script in fake.scripts.values())


@providers
def test_setup_checks_the_settings_before_any_call(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    with pytest.raises(ConfigurationError, match="max_attempts"):
        live(fake, spec, max_attempts=0).setup_for_execution(dg.build_init_resource_context())
    assert fake.script(spec.name).calls == 0


@providers
def test_the_key_may_come_from_its_environment_variable(
    fake: FakeProviderServer, spec: ProviderSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = fake.script(spec.name).api_key
    assert key is not None
    monkeypatch.setenv(spec.key_env, key)

    generation = live(fake, spec, api_key=dg.EnvVar(spec.key_env)).generate(draft_request())

    assert generation.attempts == 1


@providers
def test_finish_reasons_stay_raw_and_validation_flags_them(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    fake.script(spec.name).finish_reason = CUT_SHORT[wire(spec)]

    generation = live(fake, spec).generate(draft_request())

    verdict = validate_draft(generation.text, generation.finish_reason, symbol_facts(CODE))
    assert generation.finish_reason == CUT_SHORT[wire(spec)]
    assert generation.finish_reason in INCOMPLETE_FINISH_REASONS
    assert verdict.status == "invalid"


@pytest.mark.parametrize("spec", SHIPPED_PROVIDERS[1:], ids=lambda spec: spec.name)
def test_a_chat_refusal_is_reported_as_a_refusal(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    fake.script(spec.name).refusal = "I can't help with that."

    generation = live(fake, spec).generate(draft_request())

    assert generation.finish_reason == "refusal"
    assert generation.finish_reason in REFUSAL_FINISH_REASONS


@providers
def test_an_unknown_model_has_no_cost(fake: FakeProviderServer, spec: ProviderSpec) -> None:
    generation = live(fake, spec, model=f"{spec.name}-model-from-the-future").generate(
        draft_request()
    )

    assert generation.cost_usd is None
    assert generation.usage is not None


@providers
def test_configured_prices_win(fake: FakeProviderServer, spec: ProviderSpec) -> None:
    fake.script(spec.name).usage = FixedUsage(input_tokens=1000, output_tokens=1000)

    generation = live(fake, spec, input_usd_per_mtok=1, output_usd_per_mtok=2.5).generate(
        draft_request()
    )

    assert generation.cost_usd == Decimal("0.0035")


@providers
def test_the_client_is_built_once_per_resource(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    resource = live(fake, spec)

    with ThreadPoolExecutor(max_workers=8) as pool:
        clients = set(map(id, pool.map(lambda _: resource.sdk_client(), range(16))))

    assert len(clients) == 1
    assert resource.sdk_client().max_retries == 0


@providers
def test_an_account_failure_stops_the_other_calls(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    fake.script(spec.name).fail("quota")
    requests = [draft_request(f"task-{n}") for n in range(4)]

    outcomes = live(fake, spec, max_in_flight=1).generate_many(requests)

    assert fake.script(spec.name).calls == 1
    assert all(isinstance(outcome, ProviderError) for outcome in outcomes.values())
    assert sum(len(outcome.calls) for outcome in outcomes.values()) == 1


@providers
def test_concurrent_calls_stay_under_max_in_flight(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    fake.script(spec.name).answer_when_in_flight = 3
    resource = live(fake, spec, max_in_flight=3)
    started = threading.Barrier(8)

    def call(n: int) -> Generation:
        started.wait()
        return resource.generate(draft_request(f"task-{n}"))

    with ThreadPoolExecutor(max_workers=8) as pool:
        generations = list(pool.map(call, range(8)))

    assert len(generations) == 8
    assert fake.script(spec.name).max_in_flight == 3


@providers
def test_generate_many_runs_concurrently(fake: FakeProviderServer, spec: ProviderSpec) -> None:
    """The server answers only once all six requests are in flight at once."""
    fake.script(spec.name).answer_when_in_flight = 6
    requests = [draft_request(f"task-{n}") for n in range(6)]

    outcomes = live(fake, spec, max_in_flight=6).generate_many(requests)

    assert fake.script(spec.name).max_in_flight == 6
    assert set(outcomes) == {request.task_id for request in requests}
    assert all(isinstance(outcome, Generation) for outcome in outcomes.values())


@providers
def test_the_configured_rate_keeps_clear_of_the_provider_limit(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    """Paced at 5 a second under a limit of 10: no 429 (unpaced, the same calls draw some). The
    margin is wide so that a busy machine, which bunches the requests' arrivals, keeps clear."""
    script = fake.script(spec.name)
    script.rate_limit, script.rate_window_s = 5, 0.5
    requests = [draft_request(f"task-{n}") for n in range(9)]

    outcomes = live(fake, spec, requests_per_minute=300, max_in_flight=4).generate_many(requests)

    assert all(isinstance(outcome, Generation) for outcome in outcomes.values())
    assert 429 not in script.statuses


@providers
def test_after_a_429_no_thread_calls_until_the_wait_is_over(
    fake: FakeProviderServer, spec: ProviderSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Configured far above the provider's limit: a 429 pauses every thread, not only the one
    that got it, so no request goes out for as long as the provider asked.

    Observed where the client stands: when each pause began and when each attempt was really
    sent. (At the server, a busy machine blurs the order: a 429 can reach its thread after
    requests that other threads sent meanwhile.)"""
    script = fake.script(spec.name)
    script.rate_limit, script.rate_window_s, script.latency_s = 4, 0.3, 0.15
    requests = [draft_request(f"task-{n}") for n in range(12)]
    pauses: list[tuple[float, float]] = []
    pause = RequestLimiter.on_rate_limited

    def recorded_pause(limiter: RequestLimiter, pause_s: float) -> None:
        pause(limiter, pause_s)
        pauses.append((time.time(), pause_s))

    monkeypatch.setattr(RequestLimiter, "on_rate_limited", recorded_pause)
    log = RecordingCallLog()
    # Each pause lets at least one request in (the wait runs until a place frees), so as many
    # attempts as requests always suffice; fewer failed on a slow machine, where the requests
    # a pause released arrived spread out and took its freed places one at a time.
    provider = live(fake, spec, max_in_flight=8, max_attempts=len(requests) + 1)

    outcomes = dict(provider.generate_each(requests, call_log=log))

    assert all(isinstance(outcome, Generation) for outcome in outcomes.values())
    limited = [request for request in script.requests if request.status == 429]
    asked = [retry_after_seconds(refusal.response_headers) for refusal in limited]
    # Every 429 paused everyone for exactly what it asked.
    assert limited and sorted(pause_s for _, pause_s in pauses) == pytest.approx(sorted(asked))
    sent = [call.started_at.timestamp() for kind, _, call in log.events if kind == "finished"]
    assert len(sent) == len(script.requests)
    for began, pause_s in pauses:
        # A thread past its start when the pause began may still send a moment after it.
        quiet = (began + 0.1, began + pause_s - 0.02)
        assert not [at for at in sent if quiet[0] < at < quiet[1]], (began, pause_s)


@providers
def test_each_attempt_is_in_the_call_log_before_the_server_sees_it(
    fake: FakeProviderServer, spec: ProviderSpec
) -> None:
    script = fake.script(spec.name)
    script.fail("server_error")
    log = RecordingCallLog()
    seen_at_send: list[int] = []
    record_sent = log.call_sent

    def call_sent(task_id: str, call: Any) -> object:
        seen_at_send.append(script.calls)
        return record_sent(task_id, call)

    log.call_sent = call_sent  # type: ignore[method-assign]

    generation = live(fake, spec).generate(draft_request(), call_log=log)

    assert seen_at_send == [0, 1]
    assert [(kind, call.attempt, call.status_code) for kind, _, call in log.events] == [
        ("sent", 1, None), ("finished", 1, 500), ("sent", 2, None), ("finished", 2, 200),
    ]  # fmt: skip
    assert [call for kind, _, call in log.events if kind == "finished"] == list(generation.calls)
    assert {task for _, task, _ in log.events} == {draft_request().task_id}


@providers
def test_a_failing_call_log_sends_nothing(fake: FakeProviderServer, spec: ProviderSpec) -> None:
    log = RecordingCallLog(fail_on_send=RuntimeError("call log unavailable"))

    with pytest.raises(RuntimeError, match="call log unavailable"):
        live(fake, spec).generate(draft_request(), call_log=log)

    assert fake.script(spec.name).calls == 0


@providers
def test_offline_drafting_is_logged_as_one_free_attempt(spec: ProviderSpec) -> None:
    log = RecordingCallLog()
    starts: list[int] = []
    offline = provider_resource(spec, "offline")
    assert isinstance(offline, OfflineProvider)

    ((_, generation),) = offline.generate_each(
        [draft_request()], lambda: starts.append(1), call_log=log
    )

    assert isinstance(generation, Generation)
    assert (offline.effective_model, generation.model) == (f"offline-{spec.name}",) * 2
    assert validate_draft(generation.text, generation.finish_reason, symbol_facts(CODE)).status == (
        "valid"
    )
    assert [kind for kind, _, _ in log.events] == ["sent", "finished"]
    assert log.events[1][2] == generation.calls[0]
    assert generation.cost_usd == Decimal(0) and generation.usage is not None
    assert starts == [1]
    offline.require_key()


def needs_provider(spec: ProviderSpec) -> dg.AssetsDefinition:
    @dg.asset(name=f"{spec.name}_probe", required_resource_keys={spec.resource_key})
    def probe(context: dg.AssetExecutionContext) -> str:
        return getattr(context.resources, spec.resource_key).generate(draft_request()).text

    return probe


def run_failure(spec: ProviderSpec) -> str:
    """The error a run needing the live provider, configured from the environment, fails with."""
    resources = {spec.resource_key: provider_resource(spec, "live")}
    result = dg.materialize([needs_provider(spec)], resources=resources, raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node(f"{spec.name}_probe") or result.get_run_failure_event()
    return str(failure)


@providers
def test_a_run_without_the_key_fails_before_any_request_naming_the_variable(
    fake: FakeProviderServer, spec: ProviderSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(spec.key_env, raising=False)
    monkeypatch.setenv(spec.base_url_env, fake.base_url(spec.name))

    with pytest.raises(ConfigurationError) as outside:
        provider_resource(spec, "live").require_key()
    said = run_failure(spec)

    expected = f"{spec.key_env} ({spec.name}) is not set or empty; set it to the key alone"
    assert expected in str(outside.value)
    assert "or DRAFTS_LLM_MODE=offline to draft locally" in str(outside.value)
    assert expected in said
    assert fake.script(spec.name).calls == 0


@providers
def test_the_key_comes_through_an_env_var_resolved_when_used(
    fake: FakeProviderServer, spec: ProviderSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = fake.script(spec.name).api_key
    assert key is not None
    monkeypatch.setenv(spec.key_env, key)
    monkeypatch.setenv(spec.base_url_env, fake.base_url(spec.name))
    if spec.name == "kimi":
        monkeypatch.setenv("MOONSHOT_BASE_URL", fake.base_url(spec.name))

    resource = provider_resource(spec, "live")
    assert isinstance(resource, LiveProvider) and isinstance(resource.api_key, dg.EnvVar)
    assert key not in repr(resource)
    with dg.build_resources({"provider": resource}) as built:
        assert built.provider.api_key == key
        generation = built.provider.generate(draft_request())
    outside = resource.generate(draft_request("cfg.outside"))

    assert generation.attempts == outside.attempts == 1


@providers
def test_a_bad_setting_fails_the_run_not_the_code_location(
    spec: ProviderSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable = f"DRAFTS_{spec.name.upper()}_MAX_ATTEMPTS"
    monkeypatch.setenv(variable, "four")
    monkeypatch.setenv(spec.key_env, "a-key-that-is-never-used")

    resource = provider_resource(spec, "live")
    dg.Definitions(assets=[needs_provider(spec)], resources={spec.resource_key: resource})
    with pytest.raises(ConfigurationError) as outside:
        resource.require_key()
    said = run_failure(spec)

    assert isinstance(resource, MisconfiguredProvider)
    assert f"{variable}='four' is not a valid int" in str(outside.value)
    assert f"{variable}='four' is not a valid int" in said
    assert isinstance(provider_resource(spec, "offline"), OfflineProvider)
