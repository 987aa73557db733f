"""Fallback models: a provider whose model is gone (404) or stays overloaded asks its fallback
model once, through the real SDKs against the fake provider server, and the stored draft and
call log say which models were asked and which answered."""

from decimal import Decimal

import dagster as dg
import pytest
from sqlalchemy import select

from drafts_pipeline.drafting.provider_batch import draft_with_provider
from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.llm.generation import TokenUsage
from drafts_pipeline.llm.pricing import cost_usd, resolve_price
from drafts_pipeline.llm.provider import LiveProvider, settings_hash
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS, provider_resource
from drafts_pipeline.prompts.templates import prompt_for
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DocumentationTask, DraftVersion, LLMCall
from drafts_pipeline_tests.factories import make_task
from drafts_pipeline_tests.fake_clock import FakeTime
from drafts_pipeline_tests.fake_providers import FakeProviderServer

FALLBACKS = {"claude": "claude-haiku-4-5", "openai": "gpt-6-luna"}


def prompted_tasks(store: DraftStore, count: int) -> list[DocumentationTask]:
    ids = [f"shop.orders.handler_{i}" for i in range(count)]
    store.add_tasks([make_task(task_id) for task_id in ids])
    tasks = store.tasks_by_id(ids)
    store.record_prompts([(t.id, prompt_for(t)) for t in tasks.values()])
    refreshed = store.tasks_by_id(ids)
    return [refreshed[task_id] for task_id in ids]


def resource(server: FakeProviderServer, name: str, **overrides: object) -> LiveProvider:
    """A provider on the fake server whose waits take no time, sending one request at a time
    (so the order of a batch's tasks is the order of its requests)."""
    settings: dict[str, object] = {"max_in_flight": 1, "initial_delay_s": 0.0, "max_delay_s": 0.0}
    return server.resource(name, clock=FakeTime(), **{**settings, **overrides})


def calls(store: DraftStore) -> list[tuple[str, str, int | None, str | None]]:
    """(task, model, status, error type) of every `llm_calls` row, in the order sent."""
    with store._session() as session:
        rows = session.scalars(select(LLMCall).order_by(LLMCall.id)).all()
    return [(row.task_id, row.model, row.status_code, row.error_type) for row in rows]


def drafts(store: DraftStore) -> dict[str, DraftVersion]:
    with store._session() as session:
        return {row.task_id: row for row in session.scalars(select(DraftVersion)).all()}


def sent_models(server: FakeProviderServer, name: str) -> list[str]:
    return [request.body["model"] for request in server.script(name).requests]


@pytest.mark.parametrize("name", ["claude", "openai"])
def test_a_404_model_falls_back_and_the_draft_shows_both_attempted_models(
    store: DraftStore, fake_providers: FakeProviderServer, name: str
) -> None:
    primary = next(spec.default_model for spec in SHIPPED_PROVIDERS if spec.name == name)
    fake_providers.script(name).unknown_models = {primary}
    provider = resource(fake_providers, name, fallback_model=FALLBACKS[name])
    [task] = prompted_tasks(store, 1)

    report = draft_with_provider(store, provider, [task], run_id="run-1")

    draft = drafts(store)[task.id]
    assert report.outcomes["valid"] == 1
    assert (draft.status, draft.model, draft.attempts) == ("valid", FALLBACKS[name], 2)
    assert draft.attempted_models == [primary, FALLBACKS[name]]
    assert sent_models(fake_providers, name) == [primary, FALLBACKS[name]]
    assert calls(store) == [
        (task.id, primary, 404, "not_found"),
        (task.id, FALLBACKS[name], 200, None),
    ]


def test_overloaded_until_the_retries_run_out_falls_back(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    """Three 529s use up the primary's three attempts; the fallback answers the first time.
    Overload is no reason to skip the primary for the next task: it is asked again."""
    script = fake_providers.script("claude")
    script.fail("overloaded", times=3)
    provider = resource(fake_providers, "claude", max_attempts=3, fallback_model="claude-opus-5-5")
    first, second = prompted_tasks(store, 2)

    draft_with_provider(store, provider, [first, second], run_id="run-1")

    stored = drafts(store)
    assert stored[first.id].model == "claude-opus-5-5"
    assert stored[first.id].attempted_models == ["claude-sonnet-5-5", "claude-opus-5-5"]
    assert stored[first.id].attempts == 4
    assert (stored[second.id].model, stored[second.id].attempted_models) == (
        "claude-sonnet-5-5",
        None,
    )
    assert calls(store) == [
        *[(first.id, "claude-sonnet-5-5", 529, "overloaded")] * 3,
        (first.id, "claude-opus-5-5", 200, None),
        (second.id, "claude-sonnet-5-5", 200, None),
    ]


def test_without_a_fallback_a_404_fails_the_draft_as_before(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    fake_providers.script("claude").unknown_models = {"claude-sonnet-5-5"}
    provider = resource(fake_providers, "claude")
    first, second = prompted_tasks(store, 2)

    draft_with_provider(store, provider, [first, second], run_id="run-1")

    stored = drafts(store)
    for task in (first, second):
        draft = stored[task.id]
        assert (draft.status, draft.model, draft.attempted_models) == (
            "failed",
            "claude-sonnet-5-5",
            None,
        )
        assert draft.validation["provider"]["error_type"] == "not_found"
    assert calls(store) == [
        (first.id, "claude-sonnet-5-5", 404, "not_found"),
        (second.id, "claude-sonnet-5-5", 404, "not_found"),
    ]
    # No fallback: the hash has none (the structured output form is the model's own).
    form = provider.structured_output_form
    assert provider.settings_hash() == settings_hash(
        "claude-sonnet-5-5", 8192, None, structured_output=form
    )


def test_the_fallback_changes_the_settings_hash() -> None:
    plain = settings_hash("claude-sonnet-5-5", 8192, None)
    assert settings_hash("claude-sonnet-5-5", 8192, None, "claude-haiku-4-5") != plain
    assert settings_hash("claude-sonnet-5-5", 8192, None, "claude-opus-5-5") != settings_hash(
        "claude-sonnet-5-5", 8192, None, "claude-haiku-4-5"
    )


def test_the_fallbacks_calls_are_priced_at_the_fallbacks_price(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    """The configured price overrides are the primary model's: the fallback's call is priced
    from the price table at the fallback model's own rates."""
    fake_providers.script("claude").unknown_models = {"claude-sonnet-5-5"}
    provider = resource(
        fake_providers,
        "claude",
        fallback_model="claude-haiku-4-5",
        input_usd_per_mtok=100.0,
        output_usd_per_mtok=100.0,
    )
    [task] = prompted_tasks(store, 1)

    draft_with_provider(store, provider, [task], run_id="run-1")

    draft = drafts(store)[task.id]
    with store._session() as session:
        answered = session.scalars(select(LLMCall).where(LLMCall.status_code == 200)).one()
    assert answered.input_tokens is not None and answered.output_tokens is not None
    haiku = resolve_price("claude-haiku-4-5")
    assert haiku is not None
    expected = cost_usd(
        TokenUsage(
            input_tokens=answered.input_tokens,
            output_tokens=answered.output_tokens,
            cached_tokens=answered.cached_tokens or 0,
            cache_write_tokens=answered.cache_write_tokens or 0,
        ),
        haiku,
        "claude-haiku-4-5",
    )
    assert expected is not None and expected > 0
    assert answered.cost_usd == expected == draft.cost_usd
    overridden = Decimal(100) * (answered.input_tokens + answered.output_tokens) / 1_000_000
    assert draft.cost_usd < overridden


def test_after_a_404_later_tasks_of_the_run_go_straight_to_the_fallback(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    fake_providers.script("claude").unknown_models = {"claude-sonnet-5-5"}
    provider = resource(fake_providers, "claude", fallback_model="claude-haiku-4-5")
    tasks = prompted_tasks(store, 3)

    draft_with_provider(store, provider, tasks, run_id="run-1")

    assert sent_models(fake_providers, "claude") == [
        "claude-sonnet-5-5",
        *["claude-haiku-4-5"] * 3,
    ]
    stored = drafts(store)
    attempted = [stored[task.id].attempted_models for task in tasks]
    assert attempted == [
        ["claude-sonnet-5-5", "claude-haiku-4-5"],
        ["claude-haiku-4-5"],
        ["claude-haiku-4-5"],
    ]
    assert {stored[task.id].status for task in tasks} == {"valid"}

    # A new run step (a fresh resource) asks the primary again: it may be back.
    fake_providers.script("claude").unknown_models = set()
    again = one_more_task(store)
    fresh = resource(fake_providers, "claude", fallback_model="claude-haiku-4-5")
    draft_with_provider(store, fresh, [again], run_id="run-2")
    assert sent_models(fake_providers, "claude")[-1] == "claude-sonnet-5-5"
    assert drafts(store)[again.id].attempted_models is None


def one_more_task(store: DraftStore) -> DocumentationTask:
    task_id = "shop.orders.handler_later"
    store.add_tasks([make_task(task_id)])
    [task] = store.tasks_by_id([task_id]).values()
    store.record_prompts([(task.id, prompt_for(task))])
    return store.tasks_by_id([task_id])[task_id]


def test_when_both_models_fail_the_failed_draft_names_both(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    fake_providers.script("openai").unknown_models = {"gpt-6.2-sol", "gpt-6-luna"}
    provider = resource(fake_providers, "openai", fallback_model="gpt-6-luna")
    [task] = prompted_tasks(store, 1)

    draft_with_provider(store, provider, [task], run_id="run-1")

    draft = drafts(store)[task.id]
    reason = draft.validation["provider"]["reason"]
    assert draft.status == "failed"
    assert "gpt-6.2-sol: " in reason and "then fallback gpt-6-luna: " in reason
    assert draft.attempted_models == ["gpt-6.2-sol", "gpt-6-luna"]
    assert draft.attempts == 2
    assert calls(store) == [
        (task.id, "gpt-6.2-sol", 404, "not_found"),
        (task.id, "gpt-6-luna", 404, "not_found"),
    ]


def test_the_fallback_model_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRAFTS_KIMI_FALLBACK_MODEL", "kimi-k2")
    spec = next(spec for spec in SHIPPED_PROVIDERS if spec.name == "kimi")
    made = provider_resource(spec, "live")
    assert isinstance(made, LiveProvider)
    assert made.fallback_model == "kimi-k2"
    assert made.settings_hash() != settings_hash("kimi-k3", made.max_output_tokens, None)


def test_a_fallback_equal_to_the_model_fails_the_run_at_its_start(
    fake_providers: FakeProviderServer,
) -> None:
    provider = fake_providers.resource("claude", fallback_model="claude-sonnet-5-5")
    with pytest.raises(ConfigurationError, match="DRAFTS_CLAUDE_FALLBACK_MODEL"):
        provider.setup_for_execution(dg.build_init_resource_context())


def test_the_fallback_is_asked_in_its_own_models_form(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    """The primary takes the draft's schema as `output_config`; an older fallback takes only a
    forced tool: its request is built for it, not copied from the primary's."""
    script = fake_providers.script("claude")
    script.unknown_models = {"claude-sonnet-5-5"}
    provider = resource(fake_providers, "claude", fallback_model="claude-3-5-haiku-20241022")
    [task] = prompted_tasks(store, 1)

    draft_with_provider(store, provider, [task], run_id="run-1")

    primary, fallback = (request.body for request in script.requests)
    assert "output_config" in primary and "tools" not in primary
    assert fallback["model"] == "claude-3-5-haiku-20241022"
    assert "output_config" not in fallback and fallback["tool_choice"]["type"] == "tool"
    assert drafts(store)[task.id].status == "valid"
