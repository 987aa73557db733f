"""The draft store on SQLite and PostgreSQL: schema, invariants, ballots."""

import random
import threading
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text, update
from sqlalchemy.exc import DataError, IntegrityError

from drafts_pipeline.drafting.ballot import cast_ballots
from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.store import DraftStore, schema
from drafts_pipeline.store.models import Base, DocumentationTask, DraftVersion
from drafts_pipeline_tests.factories import make_draft, make_task, seed_drafts


def test_migration_matches_the_models(store: DraftStore) -> None:
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_upgrade_is_idempotent_and_required(database_url: str) -> None:
    store = DraftStore(database_url=database_url)
    with pytest.raises(ConfigurationError, match="drafts-pipeline db upgrade"):
        store.require_current()
    store.upgrade()
    store.upgrade()
    store.require_current()


def test_the_known_head_is_the_newest_migration() -> None:
    assert schema.migrations_head() == schema.HEAD_REVISION


def test_upgrade_brings_an_older_schema_to_the_head(database_url: str) -> None:
    from alembic import command

    store = DraftStore(database_url=database_url)
    config = schema._alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    with pytest.raises(
        ConfigurationError, match=f"at schema 0001, expected {schema.HEAD_REVISION}"
    ):
        store.require_current()
    store.upgrade()
    store.require_current()
    with store.engine.connect() as connection:
        assert schema.current_revision(connection) == schema.HEAD_REVISION


def test_add_tasks_skips_existing_ids(store: DraftStore) -> None:
    assert store.add_tasks([make_task("a.one"), make_task("a.two")]) == 2
    assert store.add_tasks([make_task("a.two"), make_task("a.three")]) == 1
    assert store.task_ids("drafting") == ["a.one", "a.two", "a.three"]


@pytest.mark.parametrize(
    ("column", "value"),
    [("id", "has,comma"), ("id", "x" * 129), ("id", ""), ("status", "published")],
)
def test_database_rejects_bad_task_rows(store: DraftStore, column: str, value: str) -> None:
    row = {"id": "ok.id", "status": "drafting"} | {column: value}
    with pytest.raises((IntegrityError, DataError)), store.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO documentation_tasks (id, status, language, symbol, code, context,"
                " template, priority, attempts) VALUES (:id, :status, 'python', 's', 'c', '',"
                " 'docstring', 0, 0)"
            ),
            row,
        )


def test_drafting_after_reads_past_the_cursor_in_arrival_order(store: DraftStore) -> None:
    store.add_tasks([make_task(f"t.{name}") for name in "cab"])
    first = store.drafting_after(0, 2)
    assert [key for _, key in first] == ["t.c", "t.a"]
    rest = store.drafting_after(first[-1][0], 10)
    assert [key for _, key in rest] == ["t.b"]
    assert store.drafting_after(rest[-1][0], 10) == []


def test_drafts_get_versions_and_keep_exact_cost(store: DraftStore) -> None:
    store.add_tasks([make_task("t.x")])
    first = store.add_draft(make_draft("t.x", "claude", cost_usd=Decimal("0.00012345")))
    second = store.add_draft(make_draft("t.x", "claude"))
    assert (first.version, second.version) == (1, 2)
    latest = store.latest_drafts(["t.x"], "claude")["t.x"]
    assert latest.version == 2
    with store._session() as session:
        stored = session.scalar(select(DraftVersion.cost_usd).where(DraftVersion.id == first.id))
    assert stored == Decimal("0.00012345")


def test_duplicate_version_is_refused_by_the_database(store: DraftStore) -> None:
    store.add_tasks([make_task("t.x")])
    draft = store.add_draft(make_draft("t.x", "claude"))
    with pytest.raises(IntegrityError), store._session() as session, session.begin():
        session.add(DraftVersion(**{**_columns(draft), "id": None}))


def _columns(draft: DraftVersion) -> dict:
    return {c.key: getattr(draft, c.key) for c in DraftVersion.__table__.columns}


def test_ballot_at_quorum_labels_drafts_and_moves_to_voting(store: DraftStore) -> None:
    store.add_tasks([make_task("t.x")])
    seed_drafts(store, "t.x", {"claude": "valid", "openai": "valid", "kimi": "failed"})
    outcome = cast_ballots(store, ["t.x"], min_drafts=2, max_attempts=3, rng=random.Random(1))[0]
    assert outcome.outcome == "voting"
    assert sorted(outcome.labels.values()) == ["A", "B"]
    assert set(outcome.labels) == {"claude", "openai"}
    assert store.task_ids("voting") == ["t.x"]
    assert sorted(store.ballot_labels(["t.x"])["t.x"]) == ["A", "B"]


def test_ballot_uses_the_newest_version_of_each_provider(store: DraftStore) -> None:
    store.add_tasks([make_task("t.x")])
    seed_drafts(store, "t.x", {"claude": "valid", "openai": "valid"})
    seed_drafts(store, "t.x", {"claude": "failed"})
    outcome = cast_ballots(store, ["t.x"], min_drafts=2, max_attempts=3, rng=random.Random(1))[0]
    assert outcome.outcome == "drafting"
    assert outcome.valid_drafts == 1


def test_below_quorum_counts_attempts_then_fails(store: DraftStore) -> None:
    store.add_tasks([make_task("t.x")])
    seed_drafts(store, "t.x", {"claude": "valid", "openai": "failed", "kimi": "invalid"})
    outcomes = [
        cast_ballots(store, ["t.x"], min_drafts=2, max_attempts=3, rng=random.Random())[0].outcome
        for _ in range(4)
    ]
    assert outcomes == ["drafting", "drafting", "failed", "unchanged"]
    task = store.tasks_by_id(["t.x"])["t.x"]
    assert (task.status, task.attempts) == ("failed", 3)
    assert "1 valid draft(s), quorum is 2" in task.last_error


def test_one_batch_of_ballots_decides_each_task_on_its_own(store: DraftStore) -> None:
    store.add_tasks([make_task(t) for t in ("t.quorum", "t.below", "t.last_try", "t.done")])
    seed_drafts(store, "t.quorum", {"claude": "valid", "openai": "valid", "kimi": "valid"})
    seed_drafts(store, "t.below", {"claude": "valid", "openai": "failed"})
    seed_drafts(store, "t.last_try", {"kimi": "invalid"})
    seed_drafts(store, "t.done", {"claude": "valid", "openai": "valid"})
    cast_ballots(store, ["t.done"], min_drafts=2, max_attempts=3, rng=random.Random(1))[0]
    for _ in range(2):
        cast_ballots(store, ["t.last_try"], min_drafts=2, max_attempts=3, rng=random.Random(1))[0]

    keys = ["t.quorum", "t.below", "t.missing", "t.last_try", "t.done"]
    ballots = cast_ballots(store, keys, min_drafts=2, max_attempts=3, rng=random.Random(2))

    assert [(b.task_id, b.outcome, b.valid_drafts) for b in ballots] == [
        ("t.quorum", "voting", 3),
        ("t.below", "drafting", 1),
        ("t.missing", "unchanged", 0),
        ("t.last_try", "failed", 0),
        ("t.done", "unchanged", 0),
    ]
    assert sorted(ballots[0].labels.values()) == ["A", "B", "C"]
    labels = store.ballot_labels(["t.quorum", "t.below", "t.done"])
    assert sorted(labels["t.quorum"]) == ["A", "B", "C"]
    assert labels["t.below"] == []
    assert sorted(labels["t.done"]) == ["A", "B"]
    tasks = store.tasks_by_id(["t.below", "t.last_try"])
    assert (tasks["t.below"].status, tasks["t.below"].attempts) == ("drafting", 1)
    assert tasks["t.below"].last_error == "1 valid draft(s), quorum is 2; openai: failed"
    assert (tasks["t.last_try"].status, tasks["t.last_try"].attempts) == ("failed", 3)


def test_voting_ballot_never_changes_again(store: DraftStore) -> None:
    store.add_tasks([make_task("t.x")])
    seed_drafts(store, "t.x", {"claude": "valid", "openai": "valid", "kimi": "valid"})
    first = cast_ballots(store, ["t.x"], min_drafts=2, max_attempts=3, rng=random.Random(7))[0]
    assert store.add_draft(make_draft("t.x", "claude")) is None
    again = cast_ballots(store, ["t.x"], min_drafts=2, max_attempts=3, rng=random.Random(8))[0]
    assert again.outcome == "unchanged"
    with store._session() as session:
        labels = dict(
            session.execute(
                select(DraftVersion.provider, DraftVersion.label).where(
                    DraftVersion.label.is_not(None)
                )
            ).all()
        )
    assert labels == first.labels


def test_database_refuses_a_second_draft_with_the_same_label(store: DraftStore) -> None:
    store.add_tasks([make_task("t.x")])
    seed_drafts(store, "t.x", {"claude": "valid", "openai": "valid"})
    cast_ballots(store, ["t.x"], min_drafts=2, max_attempts=3, rng=random.Random(3))[0]
    with pytest.raises(IntegrityError), store._session() as session, session.begin():
        session.execute(update(DraftVersion).values(label="A"))


def test_failed_task_is_not_drafted(store: DraftStore) -> None:
    store.add_tasks([make_task("t.x")])
    assert store.fail_task("t.x", "bad template")
    assert not store.fail_task("t.x", "again")
    assert store.add_draft(make_draft("t.x", "claude")) is None
    with store._session() as session:
        assert session.scalar(select(DocumentationTask.last_error)) == "bad template"


def test_reads_do_not_queue_behind_a_writer_on_sqlite(sqlite_url: str) -> None:
    """A long write holds SQLite's write lock (a discovery of many tasks, a big ballot): the
    store's reads go on beside it, from the last committed state, instead of waiting for the
    lock (and failing after the busy timeout)."""
    store = DraftStore(database_url=sqlite_url)
    store.upgrade()
    store.add_tasks([make_task("t.x")])
    found: list[object] = []

    def read() -> None:
        found.append(sorted(store.tasks_by_id(["t.x"])))
        found.append(store.latest_drafts(["t.x"], "claude"))
        found.append(store.live_claims(["t.x"]))

    with schema.engine_for(sqlite_url).begin() as writer:  # BEGIN IMMEDIATE: the write lock
        writer.execute(update(DocumentationTask).values(attempts=1))
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(5)
        assert not reader.is_alive(), "a read waited for the write lock"
    assert found == [["t.x"], {}, {}]
    assert store.tasks_by_id(["t.x"])["t.x"].attempts == 1
