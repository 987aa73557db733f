"""Drafts, the claims that make each one paid for once, and the call log.

A run claims (task, provider) before calling the provider: a row in `draft_claims` with its run
id and a lease. Claiming is one statement that loses on the primary key, plus one conditional
update that takes over a claim whose lease has passed, so two runs (in one process or on two
machines) never both hold it. The holder renews the lease while its call is alive and deletes
the claim in the transaction that stores the draft.
"""

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from drafts_pipeline.errors import StoreLocked, StoreUnavailable
from drafts_pipeline.llm.generation import CallAttempt, TokenUsage
from drafts_pipeline.store import schema
from drafts_pipeline.store.models import (
    DocumentationTask,
    DraftClaim,
    DraftVersion,
    LLMCall,
    utcnow,
)
from drafts_pipeline.store.outages import rides_out_outages, riding_out
from drafts_pipeline.store.queries import Queries, on_current_ballot, store_now

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DraftRecord:
    """A draft to store; the store assigns its version."""

    task_id: str
    provider: str
    model: str
    content: str
    prompt_used: str
    prompt_hash: str
    template_version: str
    settings_hash: str
    status: str
    validation: dict[str, Any]
    finish_reason: str | None = None
    request_id: str | None = None
    usage: TokenUsage | None = None
    cost_usd: Decimal | None = None
    latency_ms: int | None = None
    attempts: int = 0
    run_id: str | None = None
    output_schema_version: str | None = None
    """The answer schema its template version asked for (`templates.output_schema_version`)."""
    attempted_models: list[str] | None = None
    """Every model asked for the draft, in order, when a fallback model was (None: only the
    configured one)."""


def usage_columns(usage: TokenUsage | None) -> dict[str, int | None]:
    """The token columns of `draft_versions` and `llm_calls`; cached and cache-write tokens
    are parts of the input tokens, reasoning tokens part of the output tokens."""
    return {
        "input_tokens": usage.input_tokens if usage else None,
        "output_tokens": usage.output_tokens if usage else None,
        "cached_tokens": usage.cached_tokens if usage else None,
        "cache_write_tokens": usage.cache_write_tokens if usage else None,
        "reasoning_tokens": usage.reasoning_tokens if usage else None,
    }


def _call_outcome(call: CallAttempt) -> dict[str, Any]:
    return {
        "status_code": call.status_code,
        "error_type": call.error_type,
        "error_message": call.error_message,
        "request_id": call.request_id,
        "cost_usd": call.cost_usd,
        "latency_ms": call.latency_ms,
        **usage_columns(call.usage),
    }


@dataclass(frozen=True)
class FinishedCall:
    """A call whose start and end are known already (an item of a provider batch, answered
    hours after it was sent): its row of `llm_calls`."""

    attempt: CallAttempt
    finished_at: datetime

    def row(self, task_id: str, run_id: str | None) -> LLMCall:
        call = self.attempt
        return LLMCall(task_id=task_id, run_id=run_id, provider=call.provider, model=call.model,
                       attempt=call.attempt, started_at=call.started_at,
                       finished_at=self.finished_at, **_call_outcome(call))  # fmt: skip


class StoreCallLog:
    """`CallLog` over `llm_calls`: a row just before an attempt is sent, completed when it
    ends, so a crash leaves an unfinished row (`finished_at` null), never a missing one."""

    def __init__(self, engine: Engine, run_id: str | None) -> None:
        self._engine = engine
        self._run_id = run_id

    @property
    def engine(self) -> Engine:
        return self._engine

    @riding_out
    def call_sent(self, task_id: str, call: CallAttempt) -> int:
        """The attempt's row, before it is sent (in the pace's wait for its start): while the
        store is out of reach, nothing is sent (this waits, or fails the step past
        `DRAFTS_DB_RETRY_S`)."""
        with self._engine.begin() as connection:
            return connection.execute(
                insert(LLMCall)
                .values(task_id=task_id, run_id=self._run_id, provider=call.provider,
                        model=call.model, attempt=call.attempt, started_at=call.started_at)
                .returning(LLMCall.id)
            ).scalar_one()  # fmt: skip

    @riding_out
    def _complete(self, handle: object, call: CallAttempt) -> None:
        # `started_at` too: the row was written in the pace's wait, with the start it was due.
        with self._engine.begin() as connection:
            connection.execute(
                update(LLMCall).where(LLMCall.id == handle).values(**_call_outcome(call),
                                                                    started_at=call.started_at,
                                                                    finished_at=utcnow())
            )  # fmt: skip

    @riding_out
    def _delete(self, handle: object) -> None:
        with self._engine.begin() as connection:
            connection.execute(delete(LLMCall).where(LLMCall.id == handle))

    def call_withdrawn(self, handle: object) -> None:
        """Delete the row of an attempt that was never sent (through a short outage). A
        failure to is logged, not raised, and the row stays marked unfinished."""
        with self._left_unfinished_on_failure(handle, "take back"):
            self._delete(handle)

    def call_finished(self, handle: object, call: CallAttempt) -> None:
        """Complete the attempt's row (through a short outage). A failure to write it is
        logged, not raised: the answer in hand matters more, and the row stays marked
        unfinished."""
        with self._left_unfinished_on_failure(handle, "complete", call):
            self._complete(handle, call)

    @contextmanager
    def _left_unfinished_on_failure(
        self, handle: object, doing: str, call: CallAttempt | None = None
    ) -> Iterator[None]:
        """Log, not raise, a failure to `doing` the row: it stays marked unfinished."""
        prefix = f"{call.provider}: " if call is not None else ""
        extra = self._log_fields(call) if call is not None else {"run_id": self._run_id}
        try:
            yield
        except StoreLocked as error:
            # The lock may be free again by the next operation: this row alone is left.
            logger.warning(
                "%scould not %s call row %s (%s); it stays marked unfinished",
                prefix, doing, handle, error, extra=extra,
            )  # fmt: skip
        except StoreUnavailable:
            # Past the outage's limit: the step fails at its next store operation, and its
            # error line names the outage; a line per unfinished row would only repeat it.
            logger.info("%scall row %s stays marked unfinished", prefix, handle, extra=extra)
        except SQLAlchemyError as error:
            logger.warning(
                "%scould not %s call row %s (%s); it stays marked unfinished",
                prefix, doing, handle, type(error).__name__, extra=extra,
            )  # fmt: skip

    def _log_fields(self, call: CallAttempt) -> dict[str, object]:
        return {"provider": call.provider, "attempt": call.attempt, "run_id": self._run_id}


def record_paid_calls(
    session: Session, task_id: str, run_id: str | None, calls: Sequence[FinishedCall]
) -> None:
    """Record a provider batch's answered calls whose claim is gone (a live run took the task
    over after the batch's lease): paid all the same, so they belong in the call log, once.
    Each is known by its provider's request id; a call without one cannot be told apart from
    an earlier record of it and is left out."""
    for call in calls:
        request_id = call.attempt.request_id
        if request_id is None:
            continue
        known = session.scalar(
            select(LLMCall.id).where(
                LLMCall.provider == call.attempt.provider, LLMCall.request_id == request_id
            )
        )
        if known is None:
            session.add(call.row(task_id, run_id))


def live_claim_holders(
    session: Session, task_ids: Sequence[str], other_than: str | None = None
) -> dict[str, str]:
    """task id -> a run holding a live claim on it (any provider), `other_than` left out."""
    if not task_ids:
        return {}
    query = select(DraftClaim.task_id, DraftClaim.run_id).where(
        DraftClaim.task_id.in_(task_ids), DraftClaim.lease_expires_at >= store_now(session)
    )
    if other_than is not None:
        query = query.where(DraftClaim.run_id != other_than)
    return {task_id: holder for task_id, holder in session.execute(query)}


def claim_in(
    session: Session,
    task_ids: Sequence[str],
    provider: str,
    holder: str,
    now: datetime | None,
    lease: datetime | timedelta,
) -> set[str]:
    """`DraftQueries.claim_drafts` inside the caller's transaction, with the lease ending at
    `lease` (a moment, or a length from now): the ids of `task_ids` that `holder` now holds.
    `now` None: the store's clock, read once the task rows are locked, so that a long wait
    for them neither shortens the lease nor lets a lease that passed meanwhile stand."""
    ids = sorted(set(task_ids))
    if not ids:
        return set()
    drafting = list(
        session.scalars(
            select(DocumentationTask.id)
            .where(DocumentationTask.id.in_(ids), DocumentationTask.status == "drafting")
            .order_by(DocumentationTask.id)
            .with_for_update(read=True)
        )
    )
    if not drafting:
        return set()
    now = now or store_now(session)
    expires = now + lease if isinstance(lease, timedelta) else lease
    rows = [
        {"task_id": task_id, "provider": provider, "run_id": holder, "claimed_at": now,
         "lease_expires_at": expires}
        for task_id in drafting
    ]  # fmt: skip
    dialect = session.get_bind().dialect.name
    inserted = set(
        session.scalars(
            schema.dialect_insert(dialect)(DraftClaim)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["task_id", "provider"])
            .returning(DraftClaim.task_id)
        )
    )
    taken = set(
        session.scalars(
            update(DraftClaim)
            .where(
                DraftClaim.task_id.in_(sorted(set(drafting) - inserted)),
                DraftClaim.provider == provider,
                or_(DraftClaim.lease_expires_at < now, DraftClaim.run_id == holder),
            )
            .values(run_id=holder, claimed_at=now, lease_expires_at=expires)
            .returning(DraftClaim.task_id)
        )
    )
    return inserted | taken


def _stale(record: DraftRecord, prompt_hash: str | None) -> bool:
    """Whether `record` answers a prompt its task no longer has (a task whose prompt is not
    built yet has none to compare with)."""
    return prompt_hash is not None and record.prompt_hash != prompt_hash


@rides_out_outages
class DraftQueries(Queries):
    # --- claims ------------------------------------------------------------------------

    def claim_drafts(
        self,
        task_ids: Sequence[str],
        provider: str,
        run_id: str,
        lease_s: float,
        now: datetime | None = None,
    ) -> set[str]:
        """Claim `task_ids` with `provider` for `run_id`; returns the ids now held.

        Only tasks still in `drafting` are claimed: their rows are read `FOR SHARE` (PostgreSQL),
        so a ballot moving one to `voting` is waited for and then seen. A claim is free, held by
        this run already (renewed), or expired (taken over); a live claim of another run is left
        to it. Ids are taken in sorted order, so that two runs cannot deadlock on them.
        """
        with self._session() as session, session.begin():
            return claim_in(session, task_ids, provider, run_id, now, timedelta(seconds=lease_s))

    def renew_claims(
        self,
        task_ids: Sequence[str],
        provider: str,
        run_id: str,
        lease_s: float,
        now: datetime | None = None,
    ) -> set[str]:
        """Push the lease of the claims `run_id` still holds; returns those it holds."""
        ids = sorted(set(task_ids))
        if not ids:
            return set()
        with self._session() as session, session.begin():
            expires = (now or store_now(session)) + timedelta(seconds=lease_s)
            return set(
                session.scalars(
                    update(DraftClaim)
                    .where(
                        DraftClaim.task_id.in_(ids),
                        DraftClaim.provider == provider,
                        DraftClaim.run_id == run_id,
                    )
                    .values(lease_expires_at=expires)
                    .returning(DraftClaim.task_id)
                )
            )

    def release_claims(self, task_ids: Sequence[str], provider: str, run_id: str) -> None:
        """Drop the claims `run_id` holds on `task_ids` (reused drafts, or a batch that ends)."""
        ids = sorted(set(task_ids))
        if not ids:
            return
        with self._session() as session, session.begin():
            session.execute(
                delete(DraftClaim).where(
                    DraftClaim.task_id.in_(ids),
                    DraftClaim.provider == provider,
                    DraftClaim.run_id == run_id,
                )
            )

    def live_claims(self, task_ids: Sequence[str]) -> dict[str, str]:
        """task id -> run id of a claim on it whose lease has not passed (any provider)."""
        with self._reading() as session:
            return live_claim_holders(session, task_ids)

    # --- drafts and calls --------------------------------------------------------------

    def call_log(self, run_id: str | None) -> StoreCallLog:
        """Where a run's provider calls are recorded as they are sent."""
        return StoreCallLog(self.engine, run_id)

    def latest_drafts(self, task_ids: Sequence[str], provider: str) -> dict[str, DraftVersion]:
        """The newest draft version per task for one provider, of the task's current ballot
        (a reopened task has none until it is drafted again)."""
        newest = (
            select(DraftVersion.task_id, func.max(DraftVersion.version).label("version"))
            .where(
                DraftVersion.task_id.in_(task_ids),
                DraftVersion.provider == provider,
                on_current_ballot(),
            )
            .group_by(DraftVersion.task_id)
            .subquery()
        )
        with self._reading() as session:
            rows = session.scalars(
                select(DraftVersion).join(
                    newest,
                    (DraftVersion.task_id == newest.c.task_id)
                    & (DraftVersion.version == newest.c.version)
                    & (DraftVersion.provider == provider),
                )
            )
            return {row.task_id: row for row in rows}

    def add_draft(
        self,
        record: DraftRecord,
        *,
        holder: str | None = None,
        calls: Sequence[FinishedCall] = (),
        for_ballot: int | None = None,
    ) -> DraftVersion | None:
        """Store the draft as the next version of its task and provider, on the task's
        current ballot (read in the same transaction).

        With `holder`, only while that run still holds the claim, which the same transaction
        deletes, and only while the task's prompt is exactly the one the draft answers (a
        prompt cleared by a changed source counts as another: a run that read the task before
        the change may have claimed it after the change dropped the claims). Not stored (None)
        when the claim was lost (a reopening or a changed source drops the task's claims),
        when the task left `drafting` meanwhile, when the task's prompt is no longer the one
        the draft answers (its `prompt_hash` differs from the task's recorded one), or when a
        concurrent writer stored that version first (the unique key decides).

        `for_ballot`: the ballot the caller read the task on; the draft is stored only while
        the task is still on it. A provider batch keeps its claims through a reopening, so a
        collection that read the task before one must not store what the batch answered for
        the closed ballot.

        `calls` are rows of the call log written in the same transaction once the claim is
        released (a provider batch's items, paid whether or not the task still wants the
        draft): two collections of one batch record each item once. When the claim is gone
        (a live run took the task over after the batch's lease), they are recorded all the
        same, once by their request ids (`record_paid_calls`), and no draft is stored.
        """
        fields = asdict(record)
        fields.update(usage_columns(record.usage))
        del fields["usage"]
        try:
            with self._session() as session, session.begin():
                # Read FOR SHARE (PostgreSQL): a ballot holding the task waits this store out,
                # or this store waits the ballot out and then sees `voting`.
                task = session.execute(
                    select(
                        DocumentationTask.status,
                        DocumentationTask.ballot,
                        DocumentationTask.prompt_hash,
                    )
                    .where(DocumentationTask.id == record.task_id)
                    .with_for_update(read=True)
                ).first()
                status = None if task is None else task.status
                if holder is not None:
                    released = session.execute(
                        delete(DraftClaim).where(
                            DraftClaim.task_id == record.task_id,
                            DraftClaim.provider == record.provider,
                            DraftClaim.run_id == holder,
                        )
                    )
                    if released.rowcount != 1:  # type: ignore[attr-defined]
                        record_paid_calls(session, record.task_id, record.run_id, calls)
                        return None
                session.add_all(call.row(record.task_id, record.run_id) for call in calls)
                if task is None or status != "drafting" or _stale(record, task.prompt_hash):
                    return None
                if holder is not None and task.prompt_hash != record.prompt_hash:
                    return None
                if for_ballot is not None and task.ballot != for_ballot:
                    return None
                current = session.scalar(
                    select(func.max(DraftVersion.version)).where(
                        DraftVersion.task_id == record.task_id,
                        DraftVersion.provider == record.provider,
                    )
                )
                draft = DraftVersion(**fields, version=(current or 0) + 1, ballot=task.ballot)
                session.add(draft)
            return draft
        except IntegrityError:
            return None

    def add_calls(self, task_id: str, run_id: str | None, calls: Sequence[CallAttempt]) -> None:
        """Record finished attempts made elsewhere (imports, tests) in one transaction."""
        if not calls:
            return
        rows = [
            FinishedCall(call, call.started_at + timedelta(milliseconds=call.latency_ms or 0))
            .row(task_id, run_id)
            for call in calls
        ]  # fmt: skip
        with self._session() as session, session.begin():
            session.add_all(rows)
