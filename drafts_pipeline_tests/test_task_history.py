"""Tasks that follow their code: changed sources updated or reopened on a new ballot, symbols
gone retired, tasks reopened and regenerated on purpose; every earlier ballot kept."""

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from drafts_pipeline.cli import SAMPLE_PROJECT, main
from drafts_pipeline.defs.voting.results import accepted_drafts as accepted_drafts_asset
from drafts_pipeline.drafting.regenerate import (
    MODEL_TAG,
    REGENERATE_TAG,
    TEMPLATE_TAG,
    regeneration,
    tagged_regeneration,
)
from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DraftVersion, Vote
from drafts_pipeline.store.votes import VoteInput
from drafts_pipeline.tasks.discover import sync_discovered
from drafts_pipeline.voting.acceptance import accepted_drafts
from drafts_pipeline.voting_set import voting_ready_frame
from drafts_pipeline_tests.factories import make_task, seed_drafts
from drafts_pipeline_tests.fake_providers import FakeProviderServer
from drafts_pipeline_tests.graph_runs import materialize_tasks

CHANGED = "bookshop.orders.compute_total"
REMOVED = "bookshop.orders.format_price"
DOCUMENTED = "bookshop.orders.apply_discount"


def drafts_of(store: DraftStore, task_id: str) -> list[DraftVersion]:
    with store._session() as session:
        return list(
            session.scalars(
                select(DraftVersion)
                .where(DraftVersion.task_id == task_id)
                .order_by(DraftVersion.ballot, DraftVersion.provider, DraftVersion.version)
            )
        )


def history_of(store: DraftStore, task_id: str) -> list[tuple[object, ...]]:
    """Each draft's row as stored: what must never change once its ballot is closed."""
    return [
        (d.id, d.provider, d.version, d.ballot, d.label, d.status, d.content, d.model)
        for d in drafts_of(store, task_id)
    ]


def votes_of(store: DraftStore, task_id: str) -> list[Vote]:
    with store._session() as session:
        return list(session.scalars(select(Vote).where(Vote.task_id == task_id).order_by(Vote.id)))


def vote(task_id: str, voter: str, choice: str = "A") -> VoteInput:
    return VoteInput(vote_id=f"{task_id}/{voter}/{choice}", task_id=task_id, voter=voter,
                     choice=choice)  # fmt: skip


def in_voting(instance: dg.DagsterInstance, store: DraftStore, task_ids: list[str]) -> None:
    result = materialize_tasks(instance, store.database_url, task_ids)
    assert result.success
    assert set(task_ids) <= set(store.task_ids("voting"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(SAMPLE_PROJECT, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_discover_follows_a_changed_sample_project(
    project: Path,
    store: DraftStore,
    instance: dg.DagsterInstance,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found, first = sync_discovered(store, project)
    assert len(first.new) == len(found.tasks) and not first.reopened
    in_voting(instance, store, first.new)
    store.record_votes([vote(CHANGED, "ada"), vote(DOCUMENTED, "ada")])
    before = {task_id: history_of(store, task_id) for task_id in (CHANGED, DOCUMENTED)}
    before_removed = history_of(store, REMOVED)

    orders = project / "bookshop" / "orders.py"
    edit(orders, "shipping_cents: int = 0)", "shipping_cents: int = 0, free_from: int = 5000)")
    edit(orders, "5000 else", "free_from else")
    text = orders.read_text()
    start = text.index("def format_price")
    orders.write_text(text[:start] + text[text.index("async def", start) :])
    # What `apply` writes: a docstring alone is no change of the source.
    edit(orders, "-> int:\n    if not 0", '-> int:\n    """Take a percentage off."""\n    if not 0')

    monkeypatch.setenv("DRAFTS_DATABASE_URL", store.database_url)
    shown = CliRunner().invoke(main, ["tasks", "discover", str(project)])
    assert shown.exit_code == 0, shown.output
    unchanged = len(first.new) - 2
    assert f"tasks: 0 new, {unchanged} unchanged, 0 updated, 1 reopened, 1 retired" in shown.output

    tasks = store.tasks_by_id([CHANGED, REMOVED, DOCUMENTED])
    changed = tasks[CHANGED]
    assert (changed.status, changed.ballot, changed.attempts) == ("drafting", 2, 0)
    assert "free_from" in changed.code and changed.prompt is None
    assert (tasks[REMOVED].status, tasks[REMOVED].ballot) == ("retired", 1)
    assert (tasks[DOCUMENTED].status, tasks[DOCUMENTED].ballot) == ("voting", 1)
    assert history_of(store, CHANGED) == before[CHANGED]
    assert history_of(store, DOCUMENTED) == before[DOCUMENTED]
    assert {row[4] for row in before[CHANGED]} == {"A", "B", "C"}
    assert [(v.ballot, v.replaced_at) for v in votes_of(store, CHANGED)] == [(1, None)]
    (reopening,) = store.reopenings(CHANGED)
    assert (reopening.ballot, reopening.from_status) == (1, "voting")
    assert reopening.cause == "source_changed"

    # Retired tasks are never drafted again; the reopened one is, on its new ballot.
    assert REMOVED not in store.drafting_queue()
    assert materialize_tasks(instance, store.database_url, [CHANGED, REMOVED]).success
    assert store.tasks_by_id([REMOVED])[REMOVED].status == "retired"
    assert store.tasks_by_id([CHANGED])[CHANGED].status == "voting"
    assert history_of(store, REMOVED) == before_removed
    second = [d for d in drafts_of(store, CHANGED) if d.ballot == 2]
    assert {d.label for d in second} == {"A", "B", "C"}
    assert all("free_from" in d.prompt_used for d in second)
    frame = voting_ready_frame(store)
    assert sorted(frame.loc[frame["task_id"] == CHANGED, "content"]) == sorted(
        d.content for d in second
    )
    assert REMOVED not in set(frame["task_id"])

    again = CliRunner().invoke(main, ["tasks", "discover", str(project)])
    assert f"0 new, {unchanged + 1} unchanged, 0 updated, 0 reopened, 0 retired" in again.output


def test_import_updates_a_drafting_task_and_reopens_one_in_voting(
    tmp_path: Path,
    store: DraftStore,
    instance: dg.DagsterInstance,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = {
        "pkg.load": {"id": "pkg.load", "symbol": "load", "language": "python",
                     "code": "def load(path):\n    return open(path).read()\n"},
        "pkg.save": {"id": "pkg.save", "symbol": "save", "language": "python",
                     "code": "def save(path, text):\n    open(path, 'w').write(text)\n"},
        "pkg.wait": {"id": "pkg.wait", "symbol": "wait", "language": "python",
                     "code": "def wait(seconds):\n    return seconds\n"},
    }  # fmt: skip
    path = tmp_path / "tasks.jsonl"

    def imported() -> str:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows.values()))
        result = CliRunner().invoke(main, ["tasks", "import", str(path)])
        assert result.exit_code == 0, result.output
        return result.output

    monkeypatch.setenv("DRAFTS_DATABASE_URL", store.database_url)
    assert "3 new, 0 unchanged, 0 updated, 0 reopened" in imported()
    in_voting(instance, store, ["pkg.load", "pkg.save"])
    rows["pkg.load"]["code"] = "def load(path, encoding='utf-8'):\n    return open(path).read()\n"
    rows["pkg.wait"]["code"] = "def wait(seconds, jitter=0):\n    return seconds + jitter\n"

    assert "0 new, 1 unchanged, 1 updated, 1 reopened" in imported()
    tasks = store.tasks_by_id(list(rows))
    assert (tasks["pkg.load"].status, tasks["pkg.load"].ballot) == ("drafting", 2)
    assert "encoding" in tasks["pkg.load"].code
    assert (tasks["pkg.wait"].status, tasks["pkg.wait"].ballot) == ("drafting", 1)
    assert "jitter" in tasks["pkg.wait"].code and tasks["pkg.wait"].prompt is None
    assert (tasks["pkg.save"].status, tasks["pkg.save"].ballot) == ("voting", 1)
    assert {d.ballot for d in drafts_of(store, "pkg.load")} == {1}
    assert "0 new, 3 unchanged, 0 updated, 0 reopened" in imported()


def test_reopen_keeps_the_ballot_and_its_votes_and_counts_only_the_current_one(
    store: DraftStore, instance: dg.DagsterInstance, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add_tasks(
        [
            make_task(
                "shop.a",
                symbol="add_item",
                code="def add_item(cart, item):\n    cart.append(item)\n",
            ),
            make_task(
                "shop.b",
                symbol="remove_item",
                code="def remove_item(cart, item):\n    cart.remove(item)\n",
            ),
        ]
    )
    in_voting(instance, store, ["shop.a"])
    store.record_votes([vote("shop.a", voter, "B") for voter in ("ada", "bob", "cy")])
    assert [d.task_id for d in accepted_drafts(store, min_votes=3)] == ["shop.a"]
    first = history_of(store, "shop.a")

    monkeypatch.setenv("DRAFTS_DATABASE_URL", store.database_url)
    result = CliRunner().invoke(
        main, ["tasks", "reopen", "shop.a", "shop.b", "nope", "--reason", "new style guide"]
    )
    assert result.exit_code == 1
    assert "task shop.b: in drafting, not voting" in result.output
    assert "task nope: no such task" in result.output
    assert "1 task(s) reopened, 2 left as they were" in result.output
    task = store.tasks_by_id(["shop.a", "shop.b"])
    assert (task["shop.a"].status, task["shop.a"].ballot) == ("drafting", 2)
    assert (task["shop.b"].status, task["shop.b"].ballot) == ("drafting", 1)
    (reopening,) = store.reopenings("shop.a")
    assert (reopening.cause, reopening.reason) == ("reopen", "new style guide")
    # The closed ballot takes no votes and accepts nothing any more; its votes stay.
    assert accepted_drafts(store, min_votes=3) == []
    assert store.voting_task("shop.a") is None

    in_voting(instance, store, ["shop.a"])
    # Nor does the accepted_drafts asset count them for the new ballot, which has no vote yet.
    monkeypatch.setenv("DRAFTS_MIN_VOTES", "3")
    assets = dg.materialize([accepted_drafts_asset], resources={"store": store}, instance=instance)
    assert assets.output_for_node("accepted_drafts").empty
    assert history_of(store, "shop.a")[: len(first)] == first
    current = [d for d in drafts_of(store, "shop.a") if d.ballot == 2]
    assert {d.label for d in current} == {"A", "B", "C"}
    assert {d.version for d in current} == {2}
    assert sorted(store.ballot_labels(["shop.a"])["shop.a"]) == ["A", "B", "C"]
    frame = voting_ready_frame(store)
    assert sorted(frame["content"]) == sorted(d.content for d in current)

    store.record_votes([VoteInput("again", "shop.a", "ada", "C")])
    assert [(v.voter, v.ballot, v.replaced_at is None) for v in votes_of(store, "shop.a")] == [
        ("ada", 1, True), ("bob", 1, True), ("cy", 1, True), ("ada", 2, True),
    ]  # fmt: skip
    every = store.vote_outcomes()
    assert sorted(o.ballot for o in every) == [1, 1, 1, 2]
    assert [o.ballot for o in store.vote_outcomes(current_ballots_only=True)] == [2]
    labelled = {(d.ballot, d.label): d.provider for d in drafts_of(store, "shop.a") if d.label}
    assert {o.order[0] for o in every if o.ballot == 1} == {labelled[(1, "B")]}
    assert [o.order[0] for o in every if o.ballot == 2] == [labelled[(2, "C")]]


def regenerate(**request: object) -> dict[str, object]:
    return {"ops": {"provider_drafts": {"config": {"regenerate": request}}}}


def test_regenerate_one_provider_with_another_model_and_template_through_run_config(
    store: DraftStore, instance: dg.DagsterInstance, data_dir: Path
) -> None:
    store.add_tasks([make_task("shop.total", symbol="compute_total")])
    in_voting(instance, store, ["shop.total"])
    store.record_votes([vote("shop.total", "ada")])
    first = history_of(store, "shop.total")

    result = materialize_tasks(
        instance, store.database_url, ["shop.total"],
        run_config=regenerate(providers=["claude"], model="claude-next", template="any-symbol"),
    )  # fmt: skip
    assert result.success
    task = store.tasks_by_id(["shop.total"])["shop.total"]
    assert (task.status, task.ballot, task.template) == ("voting", 2, "any-symbol")
    assert history_of(store, "shop.total")[: len(first)] == first
    by_provider = {d.provider: d for d in drafts_of(store, "shop.total") if d.ballot == 2}
    claude = by_provider["claude"]
    assert (claude.version, claude.carried_from) == (2, None)
    assert claude.model == "offline-claude:claude-next"
    assert claude.template_version == "any-symbol-v1" and claude.input_tokens
    originals = {d.provider: d.id for d in drafts_of(store, "shop.total") if d.ballot == 1}
    for name in ("openai", "kimi"):
        carried = by_provider[name]
        assert (carried.version, carried.carried_from) == (2, originals[name])
        assert (carried.input_tokens, carried.cost_usd, carried.attempts) == (None, None, 0)
        assert carried.template_version != "any-symbol-v1"
    assert {d.label for d in by_provider.values()} == {"A", "B", "C"}
    (reopening,) = store.reopenings("shop.total")
    assert (reopening.cause, reopening.run_id) == ("regenerate", result.run_id)
    assert "model claude-next" in (reopening.reason or "")
    # Carried drafts are counted once, as the drafts a provider answered.
    scorecard = {row["provider"]: row["drafts"] for row in store.scorecard_rows()}
    assert scorecard == {"claude": 2, "openai": 1, "kimi": 1}
    assert [(v.ballot, v.voter) for v in votes_of(store, "shop.total")] == [(1, "ada")]
    frame = voting_ready_frame(store)
    assert sorted(frame["content"]) == sorted(d.content for d in by_provider.values())


def test_regenerate_asks_the_override_model_live_and_calls_no_other_provider(
    store: DraftStore,
    instance: dg.DagsterInstance,
    data_dir: Path,
    fake_providers: FakeProviderServer,
) -> None:
    providers = {
        spec.resource_key: fake_providers.resource(spec.name, initial_delay_s=0.01)
        for spec in SHIPPED_PROVIDERS
    }
    store.add_tasks([make_task("shop.total", symbol="compute_total")])
    first = materialize_tasks(instance, store.database_url, ["shop.total"], providers=providers)
    assert first.success and store.task_ids("voting") == ["shop.total"]
    before = {spec.name: fake_providers.script(spec.name).calls for spec in SHIPPED_PROVIDERS}
    assert before == {"claude": 1, "openai": 1, "kimi": 1}

    result = materialize_tasks(
        instance, store.database_url, ["shop.total"], providers=providers,
        run_config=regenerate(providers=["openai"], model="gpt-6.2-mini"),
    )  # fmt: skip
    assert result.success
    after = {spec.name: fake_providers.script(spec.name).calls for spec in SHIPPED_PROVIDERS}
    assert after == {"claude": 1, "openai": 2, "kimi": 1}
    assert fake_providers.script("openai").requests[-1].body["model"] == "gpt-6.2-mini"
    current = {d.provider: d for d in drafts_of(store, "shop.total") if d.ballot == 2}
    assert (current["openai"].version, current["openai"].model) == (2, "gpt-6.2-mini")
    assert current["openai"].carried_from is None
    assert {current[name].carried_from is not None for name in ("claude", "kimi")} == {True}
    assert store.tasks_by_id(["shop.total"])["shop.total"].status == "voting"


def test_a_regenerate_request_names_what_is_wrong() -> None:
    with pytest.raises(ConfigurationError, match="kimi, which this run does not materialise"):
        regeneration(["kimi"], None, None, ["claude", "openai"])
    with pytest.raises(ConfigurationError, match="'nope' is not a template"):
        regeneration(None, None, "nope", ["claude"])
    with pytest.raises(ConfigurationError, match=r"regenerate\.model is empty"):
        regeneration(None, " ", None, ["claude"])
    assert regeneration(None, None, None, ["claude", "kimi"]).providers == ("claude", "kimi")
    assert tagged_regeneration({}) is None
    assert tagged_regeneration({REGENERATE_TAG: "all", MODEL_TAG: "m"}) == (None, "m", None)
    assert tagged_regeneration({REGENERATE_TAG: "claude,kimi"}) == (["claude", "kimi"], None, None)
    with pytest.raises(ConfigurationError, match="without drafts/regenerate"):
        tagged_regeneration({TEMPLATE_TAG: "any-symbol"})


def test_rows_stored_before_ballots_migrate_to_ballot_one(database_url: str) -> None:
    from alembic import command
    from sqlalchemy import text

    from drafts_pipeline.store import schema

    store = DraftStore(database_url=database_url)
    config = schema._alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0007")
        connection.execute(
            text(
                "INSERT INTO documentation_tasks (id, status, language, symbol, code, context,"
                " template, priority, attempts, created_at, updated_at) VALUES ('old.task',"
                " 'voting', 'python', 'f', 'def f(): pass', '', 'docstring', 0, 0,"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        # Rows that reference the task: rebuilding its table must not cascade to them.
        for provider, label in (("claude", "A"), ("openai", "B")):
            connection.execute(
                text(
                    "INSERT INTO draft_versions (task_id, provider, model, version, label,"
                    " content, prompt_used, prompt_hash, template_version, settings_hash,"
                    " status, validation, attempts, created_at) VALUES ('old.task', :provider,"
                    " 'm', 1, :label, 'Does f.', 'p', 'h', 'v1', 's', 'valid', '{}', 1,"
                    " CURRENT_TIMESTAMP)"
                ),
                {"provider": provider, "label": label},
            )
        connection.execute(
            text(
                "INSERT INTO votes (vote_id, task_id, voter, labels, kind, choice, created_at,"
                " recorded_at) VALUES ('v1', 'old.task', 'ada', '[\"A\", \"B\"]', 'winner',"
                " 'A', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO draft_claims (task_id, provider, run_id, claimed_at,"
                " lease_expires_at) VALUES ('old.task', 'kimi', 'r1', CURRENT_TIMESTAMP,"
                " CURRENT_TIMESTAMP)"
            )
        )
    store.upgrade()
    task = store.tasks_by_id(["old.task"])["old.task"]
    assert (task.ballot, task.source_hash, task.status) == (1, None, "voting")
    drafts = drafts_of(store, "old.task")
    assert [(d.provider, d.label, d.ballot) for d in drafts] == [
        ("claude", "A", 1),
        ("openai", "B", 1),
    ]
    assert [(v.voter, v.choice, v.ballot) for v in votes_of(store, "old.task")] == [("ada", "A", 1)]
    assert store.live_claims(["old.task"]) == {} and _claims(store) == [("old.task", "kimi")]
    synced = store.sync_tasks([make_task("old.task", symbol="f", code="def f(): pass", context="")])
    assert synced.unchanged == ["old.task"]
    assert store.tasks_by_id(["old.task"])["old.task"].source_hash is not None


def _claims(store: DraftStore) -> list[tuple[str, str]]:
    from drafts_pipeline.store.models import DraftClaim

    with store.engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(select(DraftClaim.task_id, DraftClaim.provider))
        ]


def test_discover_retires_only_tasks_it_found_under_the_same_path(
    tmp_path: Path, store: DraftStore
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for root, name in ((first, "tool"), (second, "other")):
        root.mkdir()
        (root / f"{name}.py").write_text(f"def {name}_run(x):\n    return x\n")
        (root / "shared.py").write_text(f"def {name}_shared(y):\n    return y\n")
    store.add_tasks(
        [make_task("imported.load", source_path="loader.py", symbol="load", code="def load(): 1")]
    )
    _, found_first = sync_discovered(store, first)
    assert sorted(found_first.new) == ["shared.tool_shared", "tool.tool_run"]

    # Another tree, with a file of the same name that defines other symbols: the first
    # tree's tasks and the imported one are not this walk's to retire.
    _, found_second = sync_discovered(store, second)
    assert found_second.retired == []
    assert set(store.task_ids("drafting")) >= {
        "imported.load", "shared.tool_shared", "tool.tool_run"
    }  # fmt: skip

    # Under its own tree, a task whose symbol is gone is retired as before.
    (first / "tool.py").unlink()
    _, again = sync_discovered(store, first)
    assert again.retired == ["tool.tool_run"]


def test_a_changed_source_in_drafting_leaves_no_draft_of_the_old_one_on_the_ballot(
    store: DraftStore,
) -> None:
    task = make_task("pkg.area", code="def area(w, h):\n    return w * h\n")
    store.add_tasks([task])
    # Below quorum: one provider's valid draft of the old code waits for a second.
    seed_drafts(store, task.id, {"claude": "valid", "openai": "failed"})
    before = history_of(store, task.id)

    changed = make_task(task.id, code="def area(w, h, depth=1):\n    return w * h * depth\n")
    assert store.sync_tasks([changed]).updated == [task.id]

    # A run of another provider alone (DRAFTS_PROVIDERS=openai) must not reach quorum with
    # claude's draft of the old signature.
    with store.ballot_box([task.id], None) as box:
        assert box.candidates[task.id].valid_drafts == {}
    assert history_of(store, task.id) == before
    assert store.tasks_by_id([task.id])[task.id].status == "drafting"
