"""`provider_scorecard`: drafts by status, valid rate, retries, latency, tokens and cost."""

from decimal import Decimal

import dagster as dg
import pytest

from drafts_pipeline.defs.usage.assets import percentile, provider_scorecard
from drafts_pipeline.drafting.validation import validate_draft
from drafts_pipeline.llm.generation import TokenUsage
from drafts_pipeline.store import DraftStore
from drafts_pipeline_tests.factories import make_draft, make_task


def test_percentile_is_the_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile([7], 0.95) == 7.0
    assert percentile([], 0.5) is None


@pytest.fixture
def drafted(store: DraftStore) -> DraftStore:
    """Claude: three valid drafts (one a second version, read after a JSON repair) and one
    failed; Kimi: one invalid and one drafted offline (no attempt at all)."""
    store.add_tasks([make_task(f"shop.f{i}") for i in range(3)])
    for i, latency in enumerate([1000, 3000]):
        store.add_draft(
            make_draft(
                f"shop.f{i}",
                "claude",
                latency_ms=latency,
                attempts=1 + i,
                usage=TokenUsage(input_tokens=100, output_tokens=50),
                cost_usd=Decimal("0.00100001"),
            )
        )
    repaired = validate_draft('{"summary": "Sum the lines.",}', "stop", None)
    assert repaired.status == "valid" and repaired.checks["json"]["read_as"] == "repaired"
    second = make_draft(
        "shop.f0",
        "claude",
        latency_ms=2000,
        attempts=1,
        cost_usd=None,
        validation=repaired.checks,
    )
    assert store.add_draft(second).version == 2  # type: ignore[union-attr]
    store.add_draft(
        make_draft("shop.f2", "claude", status="failed", latency_ms=None, attempts=3, content="")
    )
    store.add_draft(make_draft("shop.f1", "kimi", status="invalid", latency_ms=500, attempts=1))
    store.add_draft(make_draft("shop.f2", "kimi", latency_ms=None, attempts=0))
    return store


def test_the_scorecard_rates_each_provider(
    drafted: DraftStore, instance: dg.DagsterInstance
) -> None:
    result = dg.materialize([provider_scorecard], instance=instance, resources={"store": drafted})
    assert result.success
    frame = result.output_for_node("provider_scorecard").set_index("provider")
    claude, kimi = frame.loc["claude"], frame.loc["kimi"]
    assert (claude["drafts"], claude["valid"], claude["failed"]) == (4, 3, 1)
    assert claude["valid_rate"] == 0.75
    assert (claude["repaired"], kimi["repaired"]) == (1, 0)
    assert claude["retries"] == 3  # attempts 1, 2, 1 and 3: 0 + 1 + 0 + 2 past the first
    assert (claude["latency_p50_ms"], claude["latency_p95_ms"]) == (2000.0, 3000.0)
    assert claude["cost_usd"] == Decimal("0.00200002")
    assert (kimi["drafts"], kimi["invalid"], kimi["valid_rate"]) == (2, 1, 0.5)
    assert kimi["retries"] == 0  # an offline draft took no attempt: no negative retries
    metadata = result.asset_materializations_for_node("provider_scorecard")[0].metadata
    assert metadata["drafts"].value == 6
    assert "| claude | 4 | 3 | 0 | 1 | 0.75 | 1 |" in metadata["scorecard"].value


def test_a_store_without_drafts_has_an_empty_scorecard(
    store: DraftStore, instance: dg.DagsterInstance
) -> None:
    result = dg.materialize([provider_scorecard], instance=instance, resources={"store": store})
    assert result.success
    assert result.output_for_node("provider_scorecard").empty
