"""Each task partition of a provider's draft asset shows that task's own draft, as the UI reads
it from the instance; a later run that drafts nothing for the task keeps those figures."""

from decimal import Decimal
from pathlib import Path

import dagster as dg

from drafts_pipeline.llm.providers import PROVIDER_SPECS
from drafts_pipeline.store import DraftStore
from drafts_pipeline_tests.factories import make_task
from drafts_pipeline_tests.fake_providers import FakeProviderServer
from drafts_pipeline_tests.graph_runs import materialize_tasks

FAST = {"initial_delay_s": 0.01, "max_delay_s": 0.05, "requests_per_minute": 60_000}
BATCH_TOTALS = {"valid", "invalid", "failed", "reused", "latency_p50_ms", "latency_p95_ms"}


def latest_metadata(instance: dg.DagsterInstance, asset: str, task_id: str) -> dict[str, object]:
    """What the UI shows for the partition: its latest materialisation's metadata, by value."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(dg.AssetKey(asset), asset_partitions=[task_id]), limit=1
    ).records
    materialisation = records[0].asset_materialization
    assert materialisation is not None
    return {"run_id": records[0].run_id} | {
        name: value.value for name, value in materialisation.metadata.items()
    }


def test_each_partition_shows_its_task_draft_and_a_later_run_keeps_it(
    instance: dg.DagsterInstance,
    store: DraftStore,
    fake_providers: FakeProviderServer,
    data_dir: Path,
) -> None:
    # Prompts of different lengths: the fake server counts tokens from the prompt.
    ids = [f"svc.sized.handler_{i}" for i in range(4)]
    store.add_tasks(
        [
            make_task(task_id, code=f"def handler_{i}(event, context=None):\n    return event\n",
                      context="# notes\n" * (40 * i))
            for i, task_id in enumerate(ids)
        ]
    )  # fmt: skip
    # One claude call is refused for good (400): that task's claude draft is `failed`.
    fake_providers.script("claude").fail("bad_request")
    providers = {
        spec.resource_key: fake_providers.resource(spec.name, **FAST) for spec in PROVIDER_SPECS
    }
    first = materialize_tasks(instance, store.database_url, ids, providers=providers)
    assert first.success and store.task_ids("voting") == ids

    shown: dict[tuple[str, str], dict[str, object]] = {}
    for spec in PROVIDER_SPECS:
        drafts = store.latest_drafts(ids, spec.name)
        for task_id in ids:
            draft = drafts[task_id]
            metadata = latest_metadata(instance, spec.asset_name, task_id)
            shown[spec.name, task_id] = metadata
            assert metadata["run_id"] == first.run_id
            assert not BATCH_TOTALS & set(metadata), metadata
            assert metadata["this_run"] == "drafted"
            assert metadata["status"] == draft.status
            assert metadata["model"] == draft.model
            assert metadata["attempts"] == draft.attempts
            if draft.status == "failed":
                assert "input_tokens" not in metadata and "cost_usd" not in metadata
                assert "400" in str(metadata["problem"])
                continue
            assert metadata["input_tokens"] == draft.input_tokens
            assert metadata["output_tokens"] == draft.output_tokens
            assert metadata["latency_ms"] == draft.latency_ms
            assert draft.cost_usd is not None and draft.cost_usd > 0
            assert Decimal(str(metadata["cost_usd"])) == draft.cost_usd.normalize()
        valid = [shown[spec.name, t] for t in ids if shown[spec.name, t]["status"] == "valid"]
        # Each task its own figures: no two prompts were alike.
        assert len({m["input_tokens"] for m in valid}) == len(valid)
        assert len({m["cost_usd"] for m in valid}) == len(valid)
    assert [shown["claude", t]["status"] for t in ids].count("failed") == 1
    # What it costs: per task, one materialisation of pending_tasks and of the ballot, two of
    # each provider's draft (the step's output, then the task's own figures).
    records = instance.get_records_for_run(
        first.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    per_task = [r for r in records if r.partition_key is not None]
    assert len(per_task) == (2 + 2 * len(PROVIDER_SPECS)) * len(ids)

    # A backfill over the same tasks, now in voting: nothing is drafted or called again.
    calls = sum(fake_providers.script(spec.name).calls for spec in PROVIDER_SPECS)
    again = materialize_tasks(instance, store.database_url, ids, providers=providers)
    assert again.success
    assert sum(fake_providers.script(spec.name).calls for spec in PROVIDER_SPECS) == calls
    for (provider, task_id), before in shown.items():
        after = latest_metadata(instance, f"{provider}_draft", task_id)
        assert after["run_id"] == again.run_id
        assert after["this_run"] == "not drafting"
        figures = {k: v for k, v in before.items() if k not in ("run_id", "this_run")}
        assert {k: v for k, v in after.items() if k not in ("run_id", "this_run")} == figures
