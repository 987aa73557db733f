"""`drafts-pipeline estimate` and the estimate each drafting run makes before it calls: figures
computed here by hand, and not one request at the provider server."""

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import func, select

from drafts_pipeline.drafting.estimates import call_estimator, estimate_drafting
from drafts_pipeline.errors import NoSuchTask
from drafts_pipeline.llm.estimate import (
    DEFAULT_OUTPUT_TOKENS,
    CallEstimator,
    DraftSample,
    token_ratio,
)
from drafts_pipeline.llm.generation import TokenUsage
from drafts_pipeline.llm.pricing import resolve_price
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.prompts.templates import prompt_for
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import LLMCall
from drafts_pipeline_tests.factories import make_draft, make_task, task_with_prompt_of
from drafts_pipeline_tests.fake_providers import FakeProviderServer
from drafts_pipeline_tests.graph_runs import materialize_tasks


def test_two_calls_of_known_length_cost_what_the_price_table_says() -> None:
    """7,000 and 3,500 characters at the default 3.5 a token: 2,000 + 1,000 input tokens;
    600 output tokens each; claude-sonnet-5-5 at $2 and $10 per million:
    3,000 x 2 + 1,200 x 10 = 18,000 micro-dollars."""
    estimator = CallEstimator.from_history(
        "claude", "claude-sonnet-5-5", resolve_price("claude-sonnet-5-5"), []
    )
    estimate = estimator.estimate([("a" * 7000,), ("b" * 3500,)])
    assert (estimate.tasks, estimate.input_tokens, estimate.output_tokens) == (2, 3000, 1200)
    assert estimate.cost_usd == Decimal("0.018")
    assert estimate.call_cost_usd == Decimal("0.009")
    assert "3.5 characters per token, the default" in estimate.input_method
    assert "o200k_base" in estimate.input_method and "not measured" in estimate.input_method
    assert f"{DEFAULT_OUTPUT_TOKENS} a call, the default" in estimate.output_method
    # Every text a call sends counts: a fixed part and a task part are summed.
    split = estimator.estimate([("a" * 3500, "a" * 3500), ("b" * 3500,)])
    assert split.input_tokens == 3000 and split.cost_usd == Decimal("0.018")


def test_the_ratio_is_calibrated_on_the_providers_own_drafts() -> None:
    """10 drafts of 400 characters counted 100 tokens, 10 counted 125: 8,000 characters over
    2,250 tokens = 3.556 a token; each call's estimate (112.5 tokens) is 12.5% or 10% off."""
    samples = [DraftSample(400, 100, 200)] * 10 + [DraftSample(400, 125, 300)] * 10
    ratio = token_ratio(samples)
    assert ratio.drafts == 20
    assert ratio.chars_per_token == pytest.approx(8000 / 2250)
    assert ratio.mean_error == pytest.approx(0.1125)
    assert ratio.worst_error == pytest.approx(0.125)
    assert "calibrated on the provider's 20 newest valid drafts" in ratio.describe()
    assert "11.2% on average and 12.5% at most" in ratio.describe()
    # 19 drafts are not enough: the default.
    assert token_ratio(samples[:19]).drafts == 0


def test_the_calibration_reads_the_providers_valid_drafts_by_its_model(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    store.add_tasks([make_task(f"svc.t{i}") for i in range(25)])
    for i in range(25):
        # claude's valid drafts by its model (a dated snapshot included): 4 characters a token,
        # 80% of them read from the prompt cache.
        model = "claude-sonnet-5-5" if i % 2 else "claude-sonnet-5-5-20261001"
        draft = make_draft(
            f"svc.t{i}", "claude", model=model, prompt_used="p" * 400,
            usage=TokenUsage(input_tokens=100, output_tokens=250, cached_tokens=80),
        )  # fmt: skip
        assert store.add_draft(draft) is not None
        # Neither another model's, nor an invalid draft, nor another provider's count.
        for other in (
            make_draft(f"svc.t{i}", "claude", model="claude-opus-5-5", prompt_used="p" * 400,
                       usage=_usage(400, 900)),
            make_draft(f"svc.t{i}", "claude", "invalid", model="claude-sonnet-5-5",
                       prompt_used="p" * 400, usage=_usage(10, 9000)),
            make_draft(f"svc.t{i}", "openai", model="claude-sonnet-5-5", prompt_used="p" * 400,
                       usage=_usage(10, 9000)),
        ):  # fmt: skip
            assert store.add_draft(other) is not None
    estimator = call_estimator(store, fake_providers.resource("claude"))
    assert estimator.ratio.chars_per_token == 4.0 and estimator.ratio.drafts == 25
    assert estimator.output_tokens == 250
    assert estimator.cache.read == 0.8 and estimator.cache.written == 0.0
    assert "80% read from the prompt cache" in estimator.cache.method
    # 7,000 characters at 4 a token: 1,750 input tokens, 1,400 of them cached at $0.10, 350 at
    # $2; 250 output tokens at $10: 350 x 2 + 1,400 x 0.1 + 250 x 10 = 3,340 micro-dollars.
    assert estimator.cost_usd(("c" * 7000,)) == Decimal("0.00334")


def _usage(input_tokens: int, output_tokens: int) -> TokenUsage:
    return TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens)


def test_an_unknown_price_is_said_unknown_never_zero(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    store.add_tasks([make_task("svc.one")])
    provider = fake_providers.resource("claude", model="mystery-model-1")
    found = estimate_drafting(store, [provider, fake_providers.resource("openai")])
    claude, openai = found.providers
    assert claude.cost_usd is None and claude.input_tokens > 0
    assert claude.cost_note is not None and "DRAFTS_CLAUDE_INPUT_USD_PER_MTOK" in claude.cost_note
    assert openai.cost_usd is not None and openai.cost_usd > 0
    assert found.cost_usd is None


def test_valid_drafts_that_a_run_would_reuse_are_not_counted(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    store.add_tasks([make_task("svc.done"), make_task("svc.open", symbol="other")])
    claude = fake_providers.resource("claude")
    done = store.tasks_by_id(["svc.done"])["svc.done"]
    built = prompt_for(done)
    reusable = make_draft(
        "svc.done", "claude", prompt_hash=built.prompt_hash, settings_hash=claude.settings_hash()
    )
    assert store.add_draft(reusable) is not None
    found = estimate_drafting(store, [claude, fake_providers.resource("openai")])
    assert found.tasks == 2
    assert [e.tasks for e in found.providers] == [1, 2]


def test_named_tasks_must_exist_and_those_not_drafting_are_left_out(
    store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    store.add_tasks([make_task("svc.a"), make_task("svc.b")])
    store.fail_task("svc.b", "broken")
    with pytest.raises(NoSuchTask, match=r"no task 'svc\.x', 'svc\.y'"):
        estimate_drafting(store, [fake_providers.resource("claude")], ["svc.a", "svc.x", "svc.y"])
    found = estimate_drafting(store, [fake_providers.resource("claude")], ["svc.a", "svc.b"])
    assert found.tasks == 1 and found.left_out == ["svc.b (failed)"]


def live_env(tmp_path: Path, database_url: str, server: FakeProviderServer) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DRAFTS_", "ANTHROPIC_"))}
    env = {**keep, "DRAFTS_DATA_DIR": str(tmp_path / "data"), "DRAFTS_DATABASE_URL": database_url}
    for spec in SHIPPED_PROVIDERS:
        env[spec.key_env] = server.script(spec.name).api_key or ""
        env[spec.base_url_env] = server.base_url(spec.name)
    return env


@pytest.mark.slow
def test_the_command_prints_the_hand_computed_figures_and_calls_nobody(
    tmp_path: Path, store: DraftStore, fake_providers: FakeProviderServer
) -> None:
    """Two tasks whose prompts (fixed part and task part) are 14,000 and 10,500 characters:
    at the default 3.5 characters a token, 4,000 + 3,000 input tokens; 600 output tokens each.
    At $2 and $10 per million (claude-sonnet-5-5, gpt-6.2-sol): 7,000 x 2 + 1,200 x 10 =
    $0.026; at $3 and $15 (kimi-k3): 7,000 x 3 + 1,200 x 15 = $0.039; together $0.091."""
    store.add_tasks(
        [task_with_prompt_of("svc.long_one", 14000), task_with_prompt_of("svc.short_one", 10500)]
    )
    result = subprocess.run(
        [sys.executable, "-m", "drafts_pipeline", "estimate"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env=live_env(tmp_path, store.database_url, fake_providers),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line}
    assert rows["claude"] == ["claude-sonnet-5-5", "2", "7,000", "1,200", "0.026000"]
    assert rows["openai"] == ["gpt-6.2-sol", "2", "7,000", "1,200", "0.026000"]
    assert rows["kimi"] == ["kimi-k3", "2", "7,000", "1,200", "0.039000"]
    assert rows["total"] == ["6", "21,000", "3,600", "0.091000"]
    assert "no provider is called" in result.stdout
    assert "3.5 characters per token, the default" in result.stdout
    assert "23% more input tokens" in result.stdout

    assert [fake_providers.script(spec.name).calls for spec in SHIPPED_PROVIDERS] == [0, 0, 0]
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(LLMCall)).scalar_one() == 0

    unknown = subprocess.run(
        [sys.executable, "-m", "drafts_pipeline", "estimate", "svc.long_one", "svc.nope"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env=live_env(tmp_path, store.database_url, fake_providers),
    )  # fmt: skip
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: no task 'svc.nope' in the store"


def test_each_drafting_run_shows_its_estimate_before_it_calls(
    instance: dg.DagsterInstance, store: DraftStore, data_dir: Path
) -> None:
    """Offline: the same method (no drafts yet: the defaults), at no cost."""
    ids = ["svc.long_one", "svc.short_one"]
    store.add_tasks([task_with_prompt_of(ids[0], 14000), task_with_prompt_of(ids[1], 10500)])
    result = materialize_tasks(instance, store.database_url, ids)
    assert result.success
    records = instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1000
    ).records
    for spec in SHIPPED_PROVIDERS:
        in_progress = [
            {name: value.value for name, value in r.asset_materialization.metadata.items()}
            for r in records
            if r.asset_materialization is not None
            and r.asset_materialization.asset_key == dg.AssetKey(spec.asset_name)
            and r.asset_materialization.metadata["this_run"].value == "in progress"
        ]
        assert len(in_progress) == 2
        assert in_progress[0] == {
            "this_run": "in progress",
            "estimate_tasks": 2,
            "estimate_input_tokens": 7000,
            "estimate_output_tokens": 1200,
            "estimate_usd": 0.0,
        }
    logged = "\n".join(
        str(event.user_message) for event in instance.all_logs(result.run_id)
    )  # fmt: skip
    assert "claude (offline-claude) estimate: 2 call(s), 7000 input tokens" in logged
