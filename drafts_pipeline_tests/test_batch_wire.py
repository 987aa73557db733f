"""The batch APIs of every provider through its real SDK against the fake server's batch endpoints:
submit, poll, results, expiry, partial errors, cancel, auth and retries, and the batch price."""

import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest
from anthropic.types.messages import MessageBatchIndividualResponse
from openai.types.chat import ChatCompletion

from drafts_pipeline.errors import ConfigurationError, ProviderError
from drafts_pipeline.llm.batches import BatchAPI, BatchItemResult
from drafts_pipeline.llm.pricing import PRICES, ModelPrice, cost_usd, resolve_price
from drafts_pipeline.llm.provider import DraftRequest, LiveProvider
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.prompts.templates import build_prompt
from drafts_pipeline_tests.fake_clock import FakeTime
from drafts_pipeline_tests.fake_providers import WIRES, FakeProviderServer, FixedUsage, batch_route

CODE = """def scale(values: list[float], factor: float) -> list[float]:
    return [value * factor for value in values]
"""
PROVIDERS = [spec.name for spec in SHIPPED_PROVIDERS]
providers = pytest.mark.parametrize("provider", PROVIDERS)


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


def draft_request(position: int) -> DraftRequest:
    """A request whose task id no provider takes as a custom id (spaces, slashes, 90+ chars):
    batches carry positions instead."""
    symbol = f"numbers.scale_{position}"
    task_id = f"numbers/scale {position} {'x' * 80}"
    prompt = build_prompt(
        task_id=task_id,
        template="docstring",
        language="python",
        symbol=symbol,
        source_path="numbers.py",
        code=CODE,
        context='"""Numbers."""',
    )
    return DraftRequest(task_id=task_id, prompt=prompt.text, symbol=symbol, code=CODE)


REQUESTS = [draft_request(position) for position in range(3)]


# Moonshot's file objects say `status: "ready"`, outside the OpenAI SDK's schema, so Kimi's client
# parses answers leniently, as every client does by default
# (`test_moonshot_file_objects_need_lenient_sdk`); the others validate every answer.
STRICT = {name: WIRES[name] != "moonshot" for name in PROVIDERS}


def resource(fake: FakeProviderServer, provider: str, **overrides: Any) -> LiveProvider:
    """The provider's live resource on the fake, its retry waits on a fake clock."""
    return fake.resource(provider, strict=STRICT[provider], clock=FakeTime(), **overrides)


def poll_until_ended(api: BatchAPI, batch_id: str, most: int = 10) -> list[str]:
    statuses: list[str] = []
    for _ in range(most):
        state = api.state(batch_id)
        statuses.append(state.status)
        if state.ended:
            return statuses
    raise AssertionError(f"batch {batch_id} did not end in {most} polls: {statuses}")


def by_position(items: Iterator[BatchItemResult]) -> list[BatchItemResult]:
    collected = list(items)
    ids = [item.custom_id for item in collected]
    assert len(ids) == len(set(ids)), f"an item came twice: {ids}"
    return sorted(collected, key=lambda item: int(item.custom_id))


def result_lines(fake: FakeProviderServer, provider: str) -> list[dict[str, Any]]:
    """The result lines the fake served for the provider's last batch (OpenAI wires: both files)."""
    batch = fake.script(provider).batches[-1]
    book = fake.batch_book
    if WIRES[provider] == "anthropic":
        body = book.anthropic_results(fake.script(provider), batch.id).body
    else:
        ids = [file_id for file_id in (batch.output_file_id, batch.error_file_id) if file_id]
        body = b"".join(book.file_content(fake.script(provider), i).body for i in ids)
    return [json.loads(line) for line in body.splitlines()]


@providers
def test_a_batch_of_three_is_answered_as_live_calls_would_be(
    fake: FakeProviderServer, provider: str
) -> None:
    script = fake.script(provider)
    script.batch_polls_until_done = 2
    live = resource(fake, provider)
    api = live.batch_api()

    submission = api.submit(REQUESTS)

    assert submission.expires_at is not None and submission.expires_at.utcoffset() is not None
    assert (submission.input_file_id is None) == (WIRES[provider] == "anthropic")
    assert poll_until_ended(api, submission.batch_id) == ["in_progress", "ended"]
    state = api.state(submission.batch_id)
    assert (state.counts["total"], state.counts["succeeded"]) == (3, 3)
    items = by_position(api.results(submission.batch_id))
    assert [(item.custom_id, item.kind, item.error) for item in items] == [
        ("0", "succeeded", None),
        ("1", "succeeded", None),
        ("2", "succeeded", None),
    ]
    # Each item went out as the body a live call sends, and came back as a live call's answer.
    (batch,) = script.batches
    assert [body for _, body in batch.items] == [live.request_body(r) for r in REQUESTS]
    assert script.batch_items_answered == 3
    for request, item in zip(REQUESTS, items, strict=True):
        generation = live.generate(request)
        assert item.reply is not None and item.reply.usage is not None
        assert item.reply.text == generation.text
        assert item.reply.usage == generation.usage
        assert item.reply.usage.input_tokens > 0 and item.reply.usage.output_tokens > 0
        assert item.reply.model == generation.model
        assert item.reply.finish_reason == generation.finish_reason
        assert item.reply.request_id


@providers
def test_the_fake_serves_result_lines_the_sdk_schemas_accept(
    fake: FakeProviderServer, provider: str
) -> None:
    """What the client reads leniently is checked strictly here, so the fake stays honest."""
    fake.script(provider).batch_item_errors = {2: "server_error"}
    api = resource(fake, provider).batch_api()
    submission = api.submit(REQUESTS)
    poll_until_ended(api, submission.batch_id)

    lines = result_lines(fake, provider)

    assert sorted(line["custom_id"] for line in lines) == ["0", "1", "2"]
    for line in lines:
        if WIRES[provider] == "anthropic":
            MessageBatchIndividualResponse.model_validate(line)
        elif line["response"]["status_code"] == 200:
            ChatCompletion.model_validate(line["response"]["body"])


@providers
def test_an_expired_batch_reports_answered_items_and_expired_ones(
    fake: FakeProviderServer, provider: str
) -> None:
    script = fake.script(provider)
    script.batch_expire = True
    script.batch_expire_answered = 1
    api = resource(fake, provider).batch_api()
    submission = api.submit(REQUESTS)

    assert poll_until_ended(api, submission.batch_id) == ["expired"]
    items = by_position(api.results(submission.batch_id))

    assert [(item.custom_id, item.kind) for item in items] == [
        ("0", "succeeded"),
        ("1", "expired"),
        ("2", "expired"),
    ]
    assert items[0].reply is not None and items[0].reply.usage is not None
    assert all(item.reply is None and item.error for item in items[1:])
    assert script.batch_items_answered == 1


@providers
def test_a_batch_that_expires_before_any_answer_has_only_expired_items(
    fake: FakeProviderServer, provider: str
) -> None:
    fake.script(provider).batch_expire = True
    api = resource(fake, provider).batch_api()
    submission = api.submit(REQUESTS)
    poll_until_ended(api, submission.batch_id)

    items = by_position(api.results(submission.batch_id))

    assert [item.kind for item in items] == ["expired", "expired", "expired"]


@providers
def test_errored_and_unreadable_items_are_errored_results_and_the_rest_succeed(
    fake: FakeProviderServer, provider: str
) -> None:
    fake.script(provider).batch_item_errors = {1: "server_error", 2: "malformed", 3: "schema"}
    live = resource(fake, provider)
    api = live.batch_api()
    submission = api.submit([*REQUESTS, draft_request(3), draft_request(4)])
    poll_until_ended(api, submission.batch_id)

    items = by_position(api.results(submission.batch_id))

    assert [(item.custom_id, item.kind) for item in items] == [
        ("0", "succeeded"),
        ("1", "errored"),
        ("2", "errored"),
        ("3", "errored"),
        ("4", "succeeded"),
    ]
    assert items[1].error is not None and "server had an error" in items[1].error
    assert items[2].error is not None and "no readable result" in items[2].error
    assert items[3].error is not None and "unreadable" in items[3].error
    assert all(item.reply is None for item in items[1:4])
    assert all(item.usage is None for item in items[1:4])
    assert (
        items[4].reply is not None and items[4].reply.text == live.generate(draft_request(4)).text
    )


@providers
def test_an_item_answered_without_readable_content_is_errored_with_its_billed_tokens(
    fake: FakeProviderServer, provider: str
) -> None:
    fake.script(provider).batch_item_errors = {1: "unreadable"}
    api = resource(fake, provider).batch_api()
    submission = api.submit(REQUESTS)
    poll_until_ended(api, submission.batch_id)

    items = by_position(api.results(submission.batch_id))

    assert [item.kind for item in items] == ["succeeded", "errored", "succeeded"]
    answered, unreadable, _ = items
    assert unreadable.reply is None and unreadable.error and "unreadable" in unreadable.error
    assert answered.reply is not None and answered.reply.usage is not None
    assert unreadable.usage is not None
    assert unreadable.usage.output_tokens > 0
    assert fake.script(provider).batch_items_answered == 3


@providers
def test_a_request_the_api_rejects_is_an_errored_item(
    fake: FakeProviderServer, provider: str
) -> None:
    """An item whose body the API refuses is answered as the live call would be: a 400."""
    live = resource(fake, provider)
    api = live.batch_api()
    submission = api.submit(REQUESTS[:1])
    bad_body = dict(live.request_body(REQUESTS[0]))
    del bad_body["messages"]
    fake.script(provider).batches[0].items[0] = ("0", bad_body)
    poll_until_ended(api, submission.batch_id)

    (item,) = api.results(submission.batch_id)

    assert (item.kind, item.reply) == ("errored", None)
    assert item.error is not None and "messages" in item.error


@providers
def test_a_cancelled_batch_ends_with_its_items_cancelled(
    fake: FakeProviderServer, provider: str
) -> None:
    script = fake.script(provider)
    script.batch_polls_until_done = 5
    api = resource(fake, provider).batch_api()
    submission = api.submit(REQUESTS)
    assert api.state(submission.batch_id).status == "in_progress"

    api.cancel(submission.batch_id)

    assert poll_until_ended(api, submission.batch_id) == ["cancelled"]
    items = by_position(api.results(submission.batch_id))
    assert [item.kind for item in items] == ["cancelled", "cancelled", "cancelled"]
    assert script.batch_items_answered == 0


@providers
def test_a_collected_batch_is_discarded_once_it_has_ended_and_again_harmlessly(
    fake: FakeProviderServer, provider: str
) -> None:
    """Anthropic's batch is deleted (only once it has ended); OpenAI's and Moonshot's input
    and result files are (their batch objects cannot be). A second discard finds them gone."""
    script = fake.script(provider)
    script.batch_polls_until_done = 2
    script.batch_item_errors = {1: "server_error"}  # an error file too, on the OpenAI wires
    api = resource(fake, provider).batch_api()
    submission = api.submit(REQUESTS)
    anthropic = WIRES[provider] == "anthropic"
    if anthropic:
        with pytest.raises(ProviderError, match="still processing") as raised:
            api.discard(submission.batch_id)
        assert raised.value.status_code == 400
    poll_until_ended(api, submission.batch_id)
    held_batches, held_files = fake.batch_book.held(provider)
    assert len(held_batches) == 1 and len(held_files) == (0 if anthropic else 3)

    api.discard(submission.batch_id)
    api.discard(submission.batch_id)

    assert fake.batch_book.held(provider) == ([] if anthropic else held_batches, [])


@providers
def test_results_before_the_end_are_refused(fake: FakeProviderServer, provider: str) -> None:
    fake.script(provider).batch_polls_until_done = 5
    api = resource(fake, provider).batch_api()
    submission = api.submit(REQUESTS)

    with pytest.raises(ProviderError) as raised:
        list(api.results(submission.batch_id))

    assert raised.value.error_type == "batch_not_ended"
    assert "has not ended" in str(raised.value)


@providers
def test_a_wrong_key_on_submit_is_a_provider_error_without_the_key(
    fake: FakeProviderServer, provider: str
) -> None:
    wrong_key = "sk-wrong-" + "7" * 40
    spec = next(spec for spec in SHIPPED_PROVIDERS if spec.name == provider)
    api = resource(fake, provider, api_key=wrong_key).batch_api()

    with pytest.raises(ProviderError) as raised:
        api.submit(REQUESTS)

    error = raised.value
    assert (error.status_code, error.error_type, error.retryable) == (401, "authentication", False)
    assert spec.key_env in str(error)
    for secret in (wrong_key, fake.script(provider).api_key or "", wrong_key[-8:]):
        assert secret not in str(error) and secret not in repr(error.args)
    assert error.__cause__ is None
    assert fake.script(provider).batches == []
    # One request: an authentication failure is not retried.
    assert [request.status for request in fake.script(provider).batch_requests] == [401]


@providers
def test_an_unknown_batch_is_a_not_found_provider_error(
    fake: FakeProviderServer, provider: str
) -> None:
    api = resource(fake, provider).batch_api()

    with pytest.raises(ProviderError) as raised:
        api.state("batch_nonexistent")

    assert (raised.value.status_code, raised.value.error_type) == (404, "not_found")


@providers
def test_polls_ride_out_a_transient_failure(fake: FakeProviderServer, provider: str) -> None:
    script = fake.script(provider)
    clock = FakeTime()
    api = fake.resource(provider, strict=STRICT[provider], clock=clock).batch_api()
    submission = api.submit(REQUESTS)
    script.fail_batch("retrieve", "rate_limit", retry_after="3")

    state = api.state(submission.batch_id)

    assert state.status == "ended"
    assert [r.status for r in script.batch_requests if r.method == "GET"] == [429, 200]
    assert clock.slept == [3.0]


@providers
def test_a_create_refused_with_an_overload_is_sent_again(
    fake: FakeProviderServer, provider: str
) -> None:
    script = fake.script(provider)
    script.fail_batch("create", "overloaded")

    submission = resource(fake, provider).batch_api().submit(REQUESTS)

    assert [batch.id for batch in script.batches] == [submission.batch_id]
    assert _statuses(fake, provider, "create") == [529, 200]


@providers
def test_a_create_that_times_out_is_not_sent_again(fake: FakeProviderServer, provider: str) -> None:
    """After a timeout the batch may exist (here it does): a second create could pay for every
    item twice, so the error says to look before sending the items again."""
    script = fake.script(provider)
    script.fail_batch("create", "timeout", delay_s=0.5)
    api = resource(fake, provider, timeout_s=0.2).batch_api()

    with pytest.raises(ProviderError) as raised:
        api.submit(REQUESTS)

    assert raised.value.error_type == "timeout"
    assert "may have been created" in str(raised.value)
    assert len(_statuses(fake, provider, "create")) == 1
    assert _statuses(fake, provider, "delete") == []  # the batch may need its input file


@pytest.mark.parametrize("provider", ["openai", "kimi"])
def test_an_input_file_whose_batch_is_refused_is_deleted(
    fake: FakeProviderServer, provider: str
) -> None:
    """Moonshot keeps at most 1,000 batch files an organization: none is left behind."""
    script = fake.script(provider)
    script.fail_batch("create", "bad_request")

    with pytest.raises(ProviderError) as raised:
        resource(fake, provider).batch_api().submit(REQUESTS)

    assert raised.value.error_type == "bad_request"
    assert _statuses(fake, provider, "upload") == [200]
    assert _statuses(fake, provider, "delete") == [200]
    (upload,) = [r for r in script.batch_requests if r.path.endswith("/files")]
    assert upload.status == 200 and script.batches == []


def _statuses(fake: FakeProviderServer, provider: str, endpoint: str) -> list[int | None]:
    """The statuses the fake answered one batch endpoint of the provider with, in order."""
    statuses = []
    for request in fake.script(provider).batch_requests:
        route = batch_route(request.method, request.path.split("?", 1)[0])
        if route is not None and route[1] == endpoint:
            statuses.append(request.status)
    return statuses


def test_moonshot_file_objects_need_lenient_sdk(fake: FakeProviderServer) -> None:
    """Moonshot's file object says `status: "ready"`; the OpenAI SDK's strict schema refuses it,
    its default (lenient) parsing takes it (the previous tests)."""
    strict = fake.resource("kimi", strict=True, clock=FakeTime(), max_attempts=1)

    with pytest.raises(ProviderError) as raised:
        strict.batch_api().submit(REQUESTS)

    assert raised.value.error_type == "malformed_response"


def test_moonshot_batches_go_over_jsonl_files_with_a_supported_window(
    fake: FakeProviderServer,
) -> None:
    api = resource(fake, "kimi").batch_api()

    api.submit(REQUESTS)

    upload, create = fake.script("kimi").batch_requests
    assert upload.path.endswith("/moonshot/v1/files")
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert create.body["completion_window"] == "24h"
    assert create.body["endpoint"] == "/v1/chat/completions"


# The batch price: every rate times the provider's batch factor.

USAGE = FixedUsage(input_tokens=1000, output_tokens=500, cached_tokens=200)
# Hand-computed, USD: (uncached input x input rate + cached x cached rate + output x output rate)
# / 1e6 with the table's rates (claude-sonnet-5-5 2 / 0.10 / 10, gpt-6.2-sol 2 / 0.10 / 10,
# kimi-k3 3 / 0.30 / 15), then half (Anthropic, OpenAI) or 60% (Moonshot).
LIVE_COST = {
    "claude": Decimal("0.00662"),  # (800 * 2 + 200 * 0.10 + 500 * 10) / 1e6
    "openai": Decimal("0.00662"),
    "kimi": Decimal("0.00996"),  # (800 * 3 + 200 * 0.30 + 500 * 15) / 1e6
}
BATCH_COST = {
    "claude": Decimal("0.00331"),
    "openai": Decimal("0.00331"),
    "kimi": Decimal("0.005976"),
}


@providers
def test_a_batch_reply_costs_the_batch_share_of_the_live_price(
    fake: FakeProviderServer, provider: str
) -> None:
    fake.script(provider).usage = USAGE
    live = resource(fake, provider)
    api = live.batch_api()
    submission = api.submit(REQUESTS[:1])
    poll_until_ended(api, submission.batch_id)
    (item,) = api.results(submission.batch_id)
    price = live.price()
    assert item.reply is not None and item.reply.usage is not None and price is not None

    batch_cost = cost_usd(item.reply.usage, price.batch())

    assert live.generate(REQUESTS[0]).cost_usd == LIVE_COST[provider]
    assert batch_cost == BATCH_COST[provider]


def test_batch_prices_scale_every_rate_cache_writes_included() -> None:
    price = ModelPrice(
        input=Decimal("2"), cached_input=Decimal("0.10"), output=Decimal("10"),
        cache_write=Decimal("2.50"),
    )  # fmt: skip

    batch = price.batch()

    assert (batch.input, batch.cached_input, batch.output, batch.cache_write) == (
        Decimal("1"),
        Decimal("0.05"),
        Decimal("5"),
        Decimal("1.25"),
    )
    without_write = replace(price, cache_write=None).batch()
    assert without_write.cache_write_rate == Decimal("1")


def test_batch_factors_come_from_the_table_or_the_configuration() -> None:
    assert PRICES["claude-sonnet-5-5"].batch_factor == Decimal("0.5")
    assert PRICES["gpt-6.2-sol"].batch_factor == Decimal("0.5")
    assert PRICES["kimi-k3"].batch_factor == Decimal("0.6")
    unlisted = resolve_price("kimi-k9", input_usd_per_mtok=1, output_usd_per_mtok=4)
    assert unlisted is not None and unlisted.batch_factor == Decimal("0.5")
    configured = resolve_price(
        "kimi-k9", input_usd_per_mtok=1, output_usd_per_mtok=4, batch_factor=0.6
    )
    assert configured is not None and configured.batch().output == Decimal("2.4")


def test_a_batch_price_factor_outside_0_to_1_fails_the_run_at_its_start(
    fake: FakeProviderServer,
) -> None:
    live = fake.resource("claude", batch_price_factor=1.5)

    with pytest.raises(ConfigurationError, match="batch_price_factor"):
        live.setup_for_execution(dg.build_init_resource_context())


@pytest.mark.parametrize("provider", ["openai", "kimi"])
def test_a_batch_that_fails_validation_reports_every_item_errored_with_the_reason(
    fake: FakeProviderServer, provider: str
) -> None:
    """An input file with a line that is not JSON fails the whole batch (status `failed`)."""
    live = resource(fake, provider)
    client = live.sdk_client()
    line = {"custom_id": "0", "method": "POST", "url": "/v1/chat/completions"}
    good = json.dumps({**line, "body": live.request_body(REQUESTS[0])})
    uploaded = client.files.create(
        file=("bad.jsonl", f"{good}\n{{not json\n".encode(), "application/jsonl"), purpose="batch"
    )
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    api = live.batch_api()

    assert poll_until_ended(api, batch.id) == ["failed"]
    assert api.state(batch.id).error == "Line is not valid JSON."
    (item,) = api.results(batch.id)

    assert (item.custom_id, item.kind, item.reply) == ("0", "errored", None)
    assert item.error == "the batch failed: Line is not valid JSON."
