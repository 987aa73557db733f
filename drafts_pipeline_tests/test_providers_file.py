"""The providers file: a fourth provider, a subset for a run, two models of one vendor, the
offline styles, malformed files, and the shipped default that keeps today's behaviour."""

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import select

from drafts_pipeline.definitions import build_definitions
from drafts_pipeline.defs.drafting.partitions import TASK_PARTITIONS_NAME, range_tags
from drafts_pipeline.defs.usage.assets import daily_llm_usage, provider_scorecard
from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.llm.offline import offline_answer
from drafts_pipeline.llm.openai_chat import OpenAIChatProvider
from drafts_pipeline.llm.provider_file import (
    PROVIDERS_FILE_ENV,
    SHIPPED_PROVIDERS_FILE,
    ProviderEntry,
    ProvidersFileError,
    ProviderSpec,
    configured_providers,
    read_providers_file,
)
from drafts_pipeline.llm.providers import (
    SHIPPED_PROVIDERS,
    TUNABLE_SETTINGS,
    MisconfiguredProvider,
    provider_resources,
    selected_providers,
)
from drafts_pipeline.settings import Settings
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import LLMCall
from drafts_pipeline.voting_set import voting_ready_frame
from drafts_pipeline_tests.factories import make_task
from drafts_pipeline_tests.fake_providers import FakeProviderServer
from drafts_pipeline_tests.graph_runs import materialize_tasks

GRANITE = """
[providers.granite]
api = "openai-chat"
base_url = "{base_url}"
api_key_env = "GRANITE_API_KEY"
model = "{model}"
{more}
"""


def toml_value(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def shipped_entries(fake: FakeProviderServer, names: tuple[str, ...] = ()) -> str:
    """The shipped providers (or those of `names`) as file entries pointing at the fake."""
    entries = []
    for spec in SHIPPED_PROVIDERS:
        if names and spec.name not in names:
            continue
        lines = [
            f"[providers.{spec.name}]",
            f'api = "{spec.api}"',
            f'base_url = "{fake.base_url(spec.name)}"',
            f'api_key_env = "{spec.key_env}"',
            f'model = "{spec.default_model}"',
            *(f"{name} = {toml_value(value)}" for name, value in spec.settings),
        ]
        entries.append("\n".join(lines) + "\n")
    return "\n".join(entries)


UseFile = Callable[[str], tuple[ProviderSpec, ...]]


@pytest.fixture
def use_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_providers: FakeProviderServer
) -> UseFile:
    """Write a providers file, point DRAFTS_PROVIDERS_FILE at it, give every provider of the
    fake its key; returns the providers it lists."""
    for spec in SHIPPED_PROVIDERS:
        monkeypatch.setenv(spec.key_env, fake_providers.script(spec.name).api_key or "")
        monkeypatch.delenv(spec.base_url_env or "", raising=False)
    monkeypatch.delenv("DRAFTS_PROVIDERS", raising=False)

    def write(text: str) -> tuple[ProviderSpec, ...]:
        path = tmp_path / "providers.toml"
        path.write_text(text)
        monkeypatch.setenv(PROVIDERS_FILE_ENV, str(path))
        for name, script in fake_providers.scripts.items():
            monkeypatch.setenv(f"{name.upper()}_API_KEY", script.api_key or "")
        return configured_providers()

    return write


def causes(error: Any) -> Iterator[str]:
    """The messages of a step's error and of the errors that caused it."""
    while error is not None:
        yield str(error.message)
        error = error.cause


def add_tasks(store: DraftStore, count: int, prefix: str = "svc.handler") -> list[str]:
    ids = [f"{prefix}_{i}" for i in range(count)]
    store.add_tasks(
        [make_task(task_id, code=f"def handler_{i}(event, context=None):\n    return event\n")
         for i, task_id in enumerate(ids)]
    )  # fmt: skip
    return ids


def test_a_fourth_provider_defined_only_in_the_file_drafts_and_is_balloted_and_counted(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
    use_file: UseFile,
) -> None:
    granite = fake_providers.add_provider("granite")
    specs = use_file(
        shipped_entries(fake_providers)
        + GRANITE.format(
            base_url=fake_providers.base_url("granite"), model="granite-4-coder", more=""
        )
    )
    assert [spec.name for spec in specs] == ["claude", "openai", "kimi", "granite"]
    ids = add_tasks(store, 3)

    result = materialize_tasks(instance, store.database_url, ids, specs=specs, mode="live")

    assert result.success
    assert granite.calls == 3 and {r.body["model"] for r in granite.requests} == {"granite-4-coder"}
    assert store.task_ids("voting") == ids
    assert all(sorted(labels) == list("ABCD") for labels in store.ballot_labels(ids).values())
    drafts = store.latest_drafts(ids, "granite")
    assert {(d.status, d.model) for d in drafts.values()} == {("valid", "granite-4-coder")}
    frame = voting_ready_frame(store)
    assert len(frame) == 12 and "granite" not in frame.to_csv().lower()

    scorecard = dg.materialize([provider_scorecard], instance=instance, resources={"store": store})
    card = scorecard.output_for_node("provider_scorecard").set_index("provider")
    assert (card.loc["granite", "drafts"], card.loc["granite", "valid"]) == (3, 3)

    # The calls were made today; moved to yesterday, the last day the usage asset covers.
    with store._session() as session, session.begin():
        for call in session.scalars(select(LLMCall)):
            call.started_at -= timedelta(days=1)
    day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    usage = dg.materialize(
        [daily_llm_usage], instance=instance, resources={"store": store}, partition_key=day
    )
    rows = usage.output_for_node("daily_llm_usage").set_index("provider")
    assert rows.loc["granite", "model"] == "granite-4-coder"
    assert rows.loc["granite", "calls"] == 3


@pytest.mark.parametrize(
    "model, more",
    [("granite-4-coder", ""), ("local-coder-7b", 'family = "granite"')],
    ids=["model id", "family word"],
)
def test_the_fourth_providers_family_name_is_a_leak(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
    use_file: UseFile,
    model: str,
    more: str,
) -> None:
    granite = fake_providers.add_provider("granite")
    base = fake_providers.base_url("granite")
    specs = use_file(
        shipped_entries(fake_providers) + GRANITE.format(base_url=base, model=model, more=more)
    )
    ids = add_tasks(store, 1)
    code = "def handler_0(event, context=None):\n    return event\n"
    said = json.loads(offline_answer("granite", "handler_0", code))
    said["summary"] = "I am Granite, and I return the event unchanged."
    granite.answer = lambda prompt: json.dumps(said)

    result = materialize_tasks(instance, store.database_url, ids, specs=specs, mode="live")

    assert result.success
    draft = store.latest_drafts(ids, "granite")[ids[0]]
    assert draft.status == "invalid" and not draft.validation["blind"]["ok"]
    assert "granite" in draft.validation["blind"]["reason"].lower()
    failed = {
        check.asset_key.to_user_string()
        for check in result.get_asset_check_evaluations()
        if check.check_name == "no_self_identification" and not check.passed
    }
    assert failed == {"granite_draft"}
    assert sorted(store.ballot_labels(ids)[ids[0]]) == list("ABC")


def test_drafts_providers_chooses_the_providers_a_run_calls(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
    use_file: UseFile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_providers.add_provider("granite")
    specs = use_file(
        shipped_entries(fake_providers)
        + GRANITE.format(
            base_url=fake_providers.base_url("granite"),
            model="granite-4-coder",
            more="default = false",
        )
    )
    monkeypatch.setenv("DRAFTS_DATABASE_URL", store.database_url)
    monkeypatch.setenv("DRAFTS_LLM_MODE", "live")

    def run_job(ids: list[str]) -> dg.ExecuteInProcessResult:
        job = build_definitions(specs).resolve_job_def("draft_tasks")
        instance.add_dynamic_partitions(TASK_PARTITIONS_NAME, ids)
        return job.execute_in_process(
            instance=instance, tags=range_tags(ids[0], ids[-1]), raise_on_error=False
        )

    def calls() -> dict[str, int]:
        return {name: script.calls for name, script in fake_providers.scripts.items()}

    # Without DRAFTS_PROVIDERS: the file's defaults; granite is defined but not called.
    first = add_tasks(store, 2, "first.handler")
    assert run_job(first).success
    assert calls() == {"claude": 2, "openai": 2, "kimi": 2, "granite": 0}

    monkeypatch.setenv("DRAFTS_PROVIDERS", "granite, claude")
    second = add_tasks(store, 3, "second.handler")
    assert run_job(second).success
    assert calls() == {"claude": 5, "openai": 2, "kimi": 2, "granite": 3}
    assert all(sorted(labels) == ["A", "B"] for labels in store.ballot_labels(second).values())

    monkeypatch.setenv("DRAFTS_PROVIDERS", "claude,mistral")
    third = add_tasks(store, 1, "third.handler")
    failed = run_job(third)
    assert not failed.success
    said = "\n".join(
        message
        for event in failed.all_events
        if event.is_step_failure
        for message in causes(event.step_failure_data.error)
    )
    assert "DRAFTS_PROVIDERS='claude,mistral'" in said
    assert "mistral" in said and "known: claude, openai, kimi, granite" in said
    assert calls() == {"claude": 5, "openai": 2, "kimi": 2, "granite": 3}


def test_two_models_of_one_vendor_draft_side_by_side(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
    use_file: UseFile,
) -> None:
    mini = fake_providers.add_provider("openai_mini", wire="openai")
    specs = use_file(
        shipped_entries(fake_providers, ("openai",))
        + f"""
[providers.openai_mini]
api = "openai-chat"
base_url = "{fake_providers.base_url("openai_mini")}"
api_key_env = "OPENAI_MINI_API_KEY"
model = "gpt-6.2-mini"
token_limit_parameter = "max_completion_tokens"
input_usd_per_mtok = 0.25
output_usd_per_mtok = 2
"""
    )
    ids = add_tasks(store, 2)

    result = materialize_tasks(instance, store.database_url, ids, specs=specs, mode="live")

    assert result.success
    assert {r.body["model"] for r in fake_providers.script("openai").requests} == {"gpt-6.2-sol"}
    assert {r.body["model"] for r in mini.requests} == {"gpt-6.2-mini"}
    models = {
        name: {d.model for d in store.latest_drafts(ids, name).values()}
        for name in ("openai", "openai_mini")
    }
    assert models == {"openai": {"gpt-6.2-sol"}, "openai_mini": {"gpt-6.2-mini"}}
    assert all(d.cost_usd for d in store.latest_drafts(ids, "openai_mini").values())
    assert store.task_ids("voting") == ids
    assert all(sorted(labels) == ["A", "B"] for labels in store.ballot_labels(ids).values())


def test_offline_providers_of_no_known_style_still_draft_differently(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
    use_file: UseFile,
) -> None:
    extra = "".join(
        f'\n[providers.{name}]\napi = "openai-chat"\napi_key_env = "NO_KEY"\nmodel = "m-{name}"\n'
        for name in ("local", "granite", "mistral_small")
    )
    specs = use_file(shipped_entries(fake_providers) + extra)
    ids = add_tasks(store, 2)

    assert materialize_tasks(instance, store.database_url, ids, specs=specs).success

    for task_id in ids:
        contents = [store.latest_drafts([task_id], s.name)[task_id].content for s in specs]
        assert len(set(contents)) == 6
    assert all(sorted(labels) == list("ABCDEF") for labels in store.ballot_labels(ids).values())


def test_thirty_generic_offline_styles_are_all_different() -> None:
    code = "def load_config(path, strict=False):\n    return path\n"
    answers = {offline_answer("local", "load_config", code, variant=v) for v in range(30)}
    known = {offline_answer(name, "load_config", code) for name in ("claude", "openai", "kimi")}
    assert len(answers) == 30 and not answers & known


def test_changing_the_providers_never_rewrites_a_ballot(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
    use_file: UseFile,
) -> None:
    ids = add_tasks(store, 2)
    assert materialize_tasks(instance, store.database_url, ids).success
    before = store.ballot_labels(ids)
    frame_before = voting_ready_frame(store)

    fewer = use_file(
        shipped_entries(fake_providers, ("claude",))
        + '\n[providers.local]\napi = "openai-chat"\napi_key_env = "NO_KEY"\nmodel = "m-local"\n'
    )
    later = add_tasks(store, 1, "later.handler")
    result = materialize_tasks(
        instance, store.database_url, ids + later, specs=fewer, run_config=None
    )

    assert result.success
    assert store.ballot_labels(ids) == before
    assert {d.provider for d in store.latest_drafts(ids, "kimi").values()} == {"kimi"}
    frame = voting_ready_frame(store)
    old = frame[frame["task_id"].isin(ids)].reset_index(drop=True)
    assert old.equals(frame_before.reset_index(drop=True))
    assert sorted(store.ballot_labels(later)[later[0]]) == ["A", "B"]


def test_the_quorum_is_a_setting(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
    use_file: UseFile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    two = use_file(shipped_entries(fake_providers, ("claude", "kimi")))
    monkeypatch.setenv("DRAFTS_MIN_DRAFTS", "3")
    ids = add_tasks(store, 1)
    assert materialize_tasks(instance, store.database_url, ids, specs=two).success
    assert store.task_ids("drafting") == ids

    for bad in ("0", "27", "two"):
        problem = Settings.from_environment({"DRAFTS_MIN_DRAFTS": bad}).problems["min_drafts"]
        assert problem.startswith(f"DRAFTS_MIN_DRAFTS={bad!r}") and "1 to 26" in problem
    monkeypatch.setenv("DRAFTS_MIN_DRAFTS", "2")
    assert materialize_tasks(instance, store.database_url, ids, specs=two).success
    assert store.task_ids("voting") == ids


# Malformed files: each error names the file, the entry and the field.

LOCAL = {
    "api": '"openai-chat"',
    "base_url": '"http://127.0.0.1:8000/v1"',
    "api_key_env": '"LOCAL_LLM_API_KEY"',
    "model": '"qwen3-coder"',
}


def local_entry(name: str = "local", **fields: str | None) -> str:
    chosen = {**LOCAL, **fields}
    lines = [f"{key} = {value}" for key, value in chosen.items() if value is not None]
    return f"[providers.{name}]\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text, entry, field",
    [
        (local_entry(api='"gemini-rest"'), "[providers.local]", "api"),
        (local_entry(model=None), "[providers.local]", "model"),
        (local_entry(requests_per_minute='"fast"'), "[providers.local]", "requests_per_minute"),
        (local_entry(max_in_flight="0"), "[providers.local]", "max_in_flight"),
        (local_entry(input_usd_per_mtok="-1.5"), "[providers.local]", "input_usd_per_mtok"),
        (local_entry(modle='"qwen3"'), "[providers.local]", "modle"),
        (local_entry(base_url='"127.0.0.1:8000"'), "[providers.local]", "base_url"),
        (local_entry("Local-Server"), "[providers.'Local-Server']", "name"),
        (local_entry("l" * 33), f"[providers.'{'l' * 33}']", "name"),
        (
            local_entry(api='"anthropic-messages"', token_limit_parameter='"max_tokens"'),
            "[providers.local]",
            "token_limit_parameter",
        ),
        (local_entry(fallback_model='"qwen3-coder"'), "[providers.local]", "fallback_model"),
    ],
    ids=[
        "unknown api", "missing model", "number as text", "zero in flight", "negative price",
        "unknown field", "bad url", "bad name", "long name", "setting of another api",
        "fallback is the model",
    ],
)  # fmt: skip
def test_a_malformed_file_names_the_file_the_entry_and_the_field(
    tmp_path: Path, text: str, entry: str, field: str
) -> None:
    path = tmp_path / "providers.toml"
    path.write_text(text)
    with pytest.raises(ProvidersFileError) as raised:
        read_providers_file(path)
    said = str(raised.value)
    assert said.startswith(f"providers file {path}: ")
    assert f"{entry} {field}" in said


def test_a_file_that_is_no_providers_file_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "providers.toml"
    for text, expected in [
        ("[providers.local\n", "not valid TOML"),
        ("", "no [providers.<name>] entry"),
        ("[provider.local]\nmodel = 'x'\n", "unknown table(s) provider"),
    ]:
        path.write_text(text)
        with pytest.raises(
            ProvidersFileError, match=re.escape(f"providers file {path}: {expected}")
        ):
            read_providers_file(path)
    monkeypatch.setenv(PROVIDERS_FILE_ENV, str(tmp_path / "missing.toml"))
    with pytest.raises(ProvidersFileError, match=r"missing\.toml: cannot be read"):
        configured_providers()


def test_every_tunable_setting_can_be_written_in_the_file() -> None:
    assert set(TUNABLE_SETTINGS) <= set(ProviderEntry.model_fields)


# The shipped default: today's three providers, models and base URLs.


def test_the_shipped_file_is_package_data_and_lists_todays_providers() -> None:
    assert SHIPPED_PROVIDERS_FILE.parent == Path(__file__).parent.parent / "drafts_pipeline/llm"
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert '"llm/providers.toml"' in pyproject
    shipped = {
        spec.name: (spec.api, spec.kind, spec.default_model, spec.key_env, spec.base_url_env)
        for spec in SHIPPED_PROVIDERS
    }
    assert shipped == {
        "claude": (
            "anthropic-messages", "anthropic", "claude-sonnet-5-5", "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
        ),
        "openai": ("openai-chat", "openai", "gpt-6.2-sol", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
        "kimi": ("openai-chat", "moonshot", "kimi-k3", "MOONSHOT_API_KEY", "MOONSHOT_BASE_URL"),
    }  # fmt: skip
    assert all(spec.default for spec in SHIPPED_PROVIDERS)


def test_the_shipped_resources_are_todays(monkeypatch: pytest.MonkeyPatch) -> None:
    for spec in SHIPPED_PROVIDERS:
        monkeypatch.delenv(spec.base_url_env or "", raising=False)
        monkeypatch.delenv(spec.model_env, raising=False)
    monkeypatch.delenv(PROVIDERS_FILE_ENV, raising=False)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/claude")
    resources = provider_resources("live")
    claude, openai, kimi = (resources[f"{n}_llm"] for n in ("claude", "openai", "kimi"))
    assert isinstance(openai, OpenAIChatProvider) and isinstance(kimi, OpenAIChatProvider)
    assert claude.base_url == "http://127.0.0.1:9/claude"
    assert (openai.base_url, openai.token_limit_key) == (
        "https://api.openai.com/v1",
        "max_completion_tokens",
    )
    assert (kimi.base_url, kimi.token_limit_key) == ("https://api.moonshot.ai/v1", "max_tokens")
    assert kimi.batch_price_factor == 0.6 and openai.batch_price_factor is None
    assert [r.model for r in (claude, openai, kimi)] == [
        "claude-sonnet-5-5",
        "gpt-6.2-sol",
        "kimi-k3",
    ]
    monkeypatch.delenv("ANTHROPIC_BASE_URL")
    assert provider_resources("live")["claude_llm"].base_url == "https://api.anthropic.com"


def test_the_environment_still_tunes_any_provider_over_the_file(
    use_file: UseFile,
    fake_providers: FakeProviderServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    specs = use_file(
        GRANITE.format(
            base_url="http://127.0.0.1:8000/v1",
            model="granite-4-coder",
            more="requests_per_minute = 30\nmax_attempts = 2",
        )
    )
    monkeypatch.setenv("DRAFTS_GRANITE_REQUESTS_PER_MINUTE", "5")
    monkeypatch.setenv("DRAFTS_GRANITE_MODEL", "granite-4-small")
    granite = provider_resources("live", specs)["granite_llm"]
    assert isinstance(granite, OpenAIChatProvider)
    assert (granite.requests_per_minute, granite.max_attempts) == (5, 2)
    assert granite.model == "granite-4-small"
    monkeypatch.setenv("DRAFTS_GRANITE_MAX_IN_FLIGHT", "many")
    broken = provider_resources("live", specs)["granite_llm"]
    assert isinstance(broken, MisconfiguredProvider)
    with pytest.raises(ConfigurationError, match="DRAFTS_GRANITE_MAX_IN_FLIGHT='many'"):
        broken.require_key()


def test_drafts_providers_selects_in_the_files_order() -> None:
    local = ProviderSpec("local", "openai-chat", "openai", "m", "LOCAL_KEY", default=False)
    specs = (*SHIPPED_PROVIDERS, local)
    assert [s.name for s in selected_providers(specs, {})] == ["claude", "openai", "kimi"]
    chosen = selected_providers(specs, {"DRAFTS_PROVIDERS": "local, claude"})
    assert [s.name for s in chosen] == ["claude", "local"]
    with pytest.raises(ConfigurationError) as raised:
        selected_providers(specs, {"DRAFTS_PROVIDERS": "claude,gemini"})
    assert str(raised.value) == (
        "DRAFTS_PROVIDERS='claude,gemini' names no provider of the providers file (gemini); "
        "known: claude, openai, kimi, local"
    )
