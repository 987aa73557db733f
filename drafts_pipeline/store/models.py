"""Tables of the draft store (DESIGN section 2). The Alembic migration mirrors these."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TASK_STATUSES = ("drafting", "voting", "failed", "retired")
"""`retired`: its source no longer defines the symbol; kept, never drafted again."""
DRAFT_STATUSES = ("valid", "invalid", "failed")

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
Serial = BigInteger().with_variant(Integer(), "sqlite")
Money = Numeric(18, 8, asdecimal=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A time read back from the store: SQLite hands back naive datetimes, and every time the
    store writes is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def column_length(model: type["Base"], name: str) -> int:
    """The declared length of a string column, for checks before an insert."""
    column_type = model.__table__.c[name].type
    if not isinstance(column_type, String) or column_type.length is None:
        raise TypeError(f"{model.__tablename__}.{name} is not a string of bounded length")
    return column_type.length


class Base(DeclarativeBase):
    pass


class DocumentationTask(Base):
    """A code symbol to document. `seq` orders arrivals for the sensor's cursor; a task
    re-queued after failing (`tasks retry`) gets a new one, as if it arrived again."""

    __tablename__ = "documentation_tasks"
    __table_args__ = (
        CheckConstraint(
            "status IN ('drafting', 'voting', 'failed', 'retired')", name="ck_tasks_status"
        ),
        CheckConstraint("id NOT LIKE '%,%'", name="ck_tasks_id_no_comma"),
        CheckConstraint("length(id) BETWEEN 1 AND 128", name="ck_tasks_id_length"),
        CheckConstraint("attempts >= 0", name="ck_tasks_attempts"),
        CheckConstraint("ballot >= 1", name="ck_tasks_ballot"),
        Index("ix_tasks_status_seq", "status", "seq"),
    )

    seq: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="drafting")
    language: Mapped[str] = mapped_column(String(32), nullable=False)
    symbol: Mapped[str] = mapped_column(String(512), nullable=False)
    source_path: Mapped[str | None] = mapped_column(String(1024))
    code: Mapped[str] = mapped_column(Text, nullable=False)
    context: Mapped[str] = mapped_column(Text, nullable=False, default="")
    template: Mapped[str] = mapped_column(String(64), nullable=False, default="docstring")
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    prompt: Mapped[str | None] = mapped_column(Text)
    prompt_hash: Mapped[str | None] = mapped_column(String(64))
    template_version: Mapped[str | None] = mapped_column(String(64))
    held_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Set when a run left the task undrafted on purpose (a daily budget reached): no ballot
    counts an attempt for it, and no schedule retries it, before this time."""
    hold_reason: Mapped[str | None] = mapped_column(Text)
    source_hash: Mapped[str | None] = mapped_column(String(64))
    """Hex SHA-256 of the task's code and context as discovery or import gave them (a
    discovered Python symbol's code without its docstring); null for tasks stored before 0008."""
    source_root: Mapped[str | None] = mapped_column(Text)
    """The folder (absolute) `tasks discover` last found the task under: only that folder's
    walk may retire it. Null for imported tasks and tasks not found again since 0009."""
    ballot: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")
    """The current ballot: 1, then one more each time the task is reopened. Drafts and votes
    carry the ballot they belong to; earlier ballots are history."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class DraftVersion(Base):
    """One provider's answer for one task; a regenerate adds `version + 1`. A draft belongs to
    the ballot its task was on when it was stored; a ballot labels only its own drafts."""

    __tablename__ = "draft_versions"
    __table_args__ = (
        UniqueConstraint("task_id", "provider", "version", name="uq_drafts_task_provider_version"),
        UniqueConstraint("task_id", "ballot", "label", name="uq_drafts_task_ballot_label"),
        CheckConstraint("status IN ('valid', 'invalid', 'failed')", name="ck_drafts_status"),
        CheckConstraint("version >= 1", name="ck_drafts_version"),
        CheckConstraint("label IS NULL OR status = 'valid'", name="ck_drafts_label_valid"),
        CheckConstraint("ballot >= 1", name="ck_drafts_ballot"),
    )

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(
        ForeignKey("documentation_tasks.id", ondelete="CASCADE"), nullable=False, index=True
    )
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    ballot: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")
    carried_from: Mapped[int | None] = mapped_column(
        Serial, ForeignKey("draft_versions.id", name="fk_drafts_carried_from", ondelete="SET NULL")
    )
    """The earlier ballot's draft this one repeats (a regenerate of other providers): no call,
    no tokens and no cost of its own; null for a draft a provider answered."""
    label: Mapped[str | None] = mapped_column(String(4))
    content: Mapped[str] = mapped_column(Text, nullable=False, default="")
    prompt_used: Mapped[str] = mapped_column(Text, nullable=False)
    prompt_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    template_version: Mapped[str] = mapped_column(String(64), nullable=False)
    output_schema_version: Mapped[str | None] = mapped_column(String(64))
    """The version of the answer's JSON schema the template asked for; null before 0007."""
    settings_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    validation: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    finish_reason: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_write_tokens: Mapped[int | None] = mapped_column(Integer)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[Decimal | None] = mapped_column(Money)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    attempted_models: Mapped[list[str] | None] = mapped_column(JSON)
    """Every model asked for this draft, in order (the primary, then a fallback); null when
    only the configured model was."""
    run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LLMCall(Base):
    """One HTTP attempt at a provider, successful or not: written just before it is sent (in
    the pace's wait, due at its start), completed when its answer or error arrives."""

    __tablename__ = "llm_calls"

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(String(128))
    error_message: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(128))
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_write_tokens: Mapped[int | None] = mapped_column(Integer)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[Decimal | None] = mapped_column(Money)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, index=True
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Null while the attempt is in flight; a row left null by a crash is an unfinished call."""
    run_id: Mapped[str | None] = mapped_column(String(64))


class ProviderPace(Base):
    """One provider's request pace, shared by every process that calls it (`store/pacing.py`).
    Times are Unix seconds."""

    __tablename__ = "provider_pace"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_start_at: Mapped[float] = mapped_column(Float, nullable=False)
    paused_until: Mapped[float] = mapped_column(Float, nullable=False)
    rate_factor: Mapped[float] = mapped_column(Float, nullable=False)

    __table_args__ = (
        CheckConstraint("rate_factor > 0 AND rate_factor <= 1", name="ck_pace_rate_factor"),
    )


class DraftClaim(Base):
    """A run's claim on drafting one task with one provider: taken before the provider is
    called, renewed while the call is alive, deleted when the draft is stored. Another run
    takes it over only once `lease_expires_at` has passed (its holder died)."""

    __tablename__ = "draft_claims"

    task_id: Mapped[str] = mapped_column(
        ForeignKey("documentation_tasks.id", ondelete="CASCADE"), primary_key=True
    )
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64), nullable=False)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    lease_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


BATCH_STATUSES = (
    "submitting", "in_progress", "ended", "expired", "cancelled", "failed", "collected",
)  # fmt: skip
"""`submitting` until the provider has the batch (a row left so by a crash is for an operator
to look at), `in_progress` while the provider works, then what it said (`ended`, `expired`,
`cancelled`, `failed`), and `collected` once every item is stored or back in `drafting`."""
FINISHED_BATCH_STATUSES = ("ended", "expired", "cancelled", "failed")
# A batch the provider took and whose items are not yet in the call log: its estimate counts
# as spend in flight (a `failed` batch ran nothing; a `collected` one's calls are recorded).
UNCOLLECTED_BATCH_STATUSES = ("in_progress", "ended", "expired", "cancelled")


class ProviderBatch(Base):
    """One batch of requests sent to a provider's batch API (half price, answered within a
    day). Its tasks are claimed in `draft_claims` under `holder` until they are collected, so
    that no live run pays for them again; item i of the batch (custom id `"i"`) is
    `task_ids[i]`, sent with the prompt whose hash is `prompt_hashes[i]`."""

    __tablename__ = "provider_batches"
    __table_args__ = (
        UniqueConstraint("provider", "batch_id", name="uq_provider_batches_batch_id"),
        CheckConstraint(
            "status IN ('submitting', 'in_progress', 'ended', 'expired', 'cancelled', "
            "'failed', 'collected')",
            name="ck_provider_batches_status",
        ),
        Index("ix_provider_batches_status", "status"),
    )

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    settings_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    batch_id: Mapped[str | None] = mapped_column(String(128))
    """The provider's id (`msgbatch_…`, `batch_…`); null until the provider has answered."""
    holder: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    """The id the batch's claims are held under (`draft_claims.run_id`)."""
    run_id: Mapped[str | None] = mapped_column(String(64))
    """The Dagster run that submitted it."""
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="submitting")
    task_ids: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    prompt_hashes: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    request_counts: Mapped[dict[str, int] | None] = mapped_column(JSON)
    """The item counts the provider last reported (`succeeded`, `errored`, …)."""
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    polled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the provider was first seen done with it (ended, expired, cancelled or failed)."""
    error: Mapped[str | None] = mapped_column(Text)
    estimated_usd: Mapped[Decimal | None] = mapped_column(Money)
    """The batch's estimated cost at the batch price, written when the provider takes it (null
    when its price is unknown): spend in flight for the daily budgets until it is collected."""


VOTE_KINDS = ("winner", "ranking", "tie", "all_bad")


class Vote(Base):
    """One voter's vote on one ballot of a task, labels only (the provider behind a label is
    the labelled draft's of that ballot). A voter's newer vote on the same ballot replaces the
    older, which stays as history with `replaced_at` set: at most one vote per voter, task and
    ballot has it null."""

    __tablename__ = "votes"
    __table_args__ = (
        CheckConstraint("kind IN ('winner', 'ranking', 'tie', 'all_bad')", name="ck_votes_kind"),
        Index(
            "uq_votes_current_per_voter",
            "task_id",
            "ballot",
            "voter",
            unique=True,
            sqlite_where=text("replaced_at IS NULL"),
            postgresql_where=text("replaced_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    vote_id: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    task_id: Mapped[str] = mapped_column(
        ForeignKey("documentation_tasks.id", ondelete="CASCADE"), nullable=False, index=True
    )
    voter: Mapped[str] = mapped_column(String(128), nullable=False)
    ballot: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")
    labels: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    """The ballot's labels when the vote was cast, in label order."""
    display_order: Mapped[list[str] | None] = mapped_column(JSON)
    """The labels in the order the voter saw them; null where not recorded (an import)."""
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    choice: Mapped[str] = mapped_column(String(64), nullable=False)
    """`B`, `B>A>C`, `tie` or `all_bad`."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    replaced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


REOPEN_CAUSES = ("source_changed", "reopen", "regenerate")


class TaskReopening(Base):
    """A task sent back to `drafting` from `voting` or `failed` (or brought back from
    `retired`): the ballot it closed, and why. The closed ballot's drafts, labels and votes
    stay as they were."""

    __tablename__ = "task_reopenings"
    __table_args__ = (
        CheckConstraint(
            "cause IN ('source_changed', 'reopen', 'regenerate')", name="ck_reopenings_cause"
        ),
    )

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(
        ForeignKey("documentation_tasks.id", ondelete="CASCADE"), nullable=False, index=True
    )
    ballot: Mapped[int] = mapped_column(Integer, nullable=False)
    """The ballot closed; the task's new one is this plus one."""
    from_status: Mapped[str] = mapped_column(String(16), nullable=False)
    cause: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(64))
    """The Dagster run of a regenerate; null from the command line."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
