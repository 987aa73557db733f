"""Provider batches: requests sent to a provider's batch API, answered within a day at half
price, and the claims that keep their tasks from being drafted again meanwhile.

A batch's tasks are claimed in `draft_claims` under the batch's own holder id (not a run's),
with a lease that covers the batch's life. The row and the claims are written in one
transaction before the provider is called; the provider's batch id is recorded after it
answers. A crash in between leaves a `submitting` row whose claims run out with their lease.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from drafts_pipeline.store.drafts import FinishedCall, claim_in, record_paid_calls
from drafts_pipeline.store.models import (
    FINISHED_BATCH_STATUSES,
    DraftClaim,
    LLMCall,
    ProviderBatch,
)
from drafts_pipeline.store.outages import rides_out_outages
from drafts_pipeline.store.queries import Queries, store_now


@dataclass(frozen=True)
class NewBatch:
    """Who a batch is for, before it has any task."""

    provider: str
    model: str
    settings_hash: str
    holder: str
    run_id: str | None


@dataclass(frozen=True)
class HeldBatch:
    """A batch and the tasks whose claims it still holds, in the batch's order."""

    batch: ProviderBatch
    task_ids: list[str]
    lost: list[str] = field(default_factory=list)
    """The batch's tasks it holds no claim on any more (collected, returned, or taken over by
    another run after its lease), in the batch's order."""


def _held(session: Session, batches: Sequence[ProviderBatch]) -> list[HeldBatch]:
    """Each batch with the tasks its holder still has a claim on (a lease that has passed still
    counts until another run takes the claim over)."""
    if not batches:
        return []
    by_holder = {batch.holder: batch for batch in batches}
    held: dict[str, set[str]] = {holder: set() for holder in by_holder}
    rows = session.execute(
        select(DraftClaim.run_id, DraftClaim.task_id, DraftClaim.provider).where(
            DraftClaim.run_id.in_(list(by_holder))
        )
    )
    for holder, task_id, provider in rows:
        if provider == by_holder[holder].provider:
            held[holder].add(task_id)
    return [
        HeldBatch(
            batch,
            [task_id for task_id in batch.task_ids if task_id in held[batch.holder]],
            [task_id for task_id in batch.task_ids if task_id not in held[batch.holder]],
        )
        for batch in batches
    ]


def _release_all(session: Session, batch: ProviderBatch) -> None:
    session.execute(
        delete(DraftClaim).where(
            DraftClaim.run_id == batch.holder, DraftClaim.provider == batch.provider
        )
    )


# Request ids looked up per query (well under SQLite's limit on bound parameters).
LOOKUP_CHUNK = 1_000


@rides_out_outages
class BatchQueries(Queries):
    def open_batch(
        self, new: NewBatch, items: Sequence[tuple[str, str]], lease_until: datetime
    ) -> HeldBatch | None:
        """Claim the tasks of `items` (task id, prompt hash) for the batch until `lease_until`
        and insert its row (`submitting`), holding the tasks it claimed, in one transaction.
        None when it claimed none: another holder has every one, or none is in `drafting`."""
        with self._session() as session, session.begin():
            existing = session.scalar(
                select(ProviderBatch).where(ProviderBatch.holder == new.holder)
            )
            if existing is not None:  # the same transaction again, after a lost connection
                return _held(session, [existing])[0]
            now = store_now(session)
            claimed = claim_in(
                session, [task_id for task_id, _ in items], new.provider, new.holder, now,
                lease_until,
            )  # fmt: skip
            kept = [(task_id, prompt_hash) for task_id, prompt_hash in items if task_id in claimed]
            if not kept:
                return None
            batch = ProviderBatch(
                provider=new.provider,
                model=new.model,
                settings_hash=new.settings_hash,
                holder=new.holder,
                run_id=new.run_id,
                status="submitting",
                task_ids=[task_id for task_id, _ in kept],
                prompt_hashes=[prompt_hash for _, prompt_hash in kept],
                submitted_at=now,
            )
            session.add(batch)
        return HeldBatch(batch, list(batch.task_ids))

    def narrow_batch(self, batch_id: int, keep: Sequence[str]) -> ProviderBatch | None:
        """Keep only the tasks `keep` in a batch still `submitting` and release the claims of
        the others (their drafts are reused), in one transaction; a batch left with no task
        is deleted (nothing was sent) and None returned."""
        with self._session() as session, session.begin():
            batch = session.get(ProviderBatch, batch_id, with_for_update=True)
            if batch is None or batch.status != "submitting":
                raise ValueError(f"provider batch #{batch_id} is not being submitted")
            kept = set(keep)
            gone = [task_id for task_id in batch.task_ids if task_id not in kept]
            session.execute(
                delete(DraftClaim).where(
                    DraftClaim.task_id.in_(gone),
                    DraftClaim.provider == batch.provider,
                    DraftClaim.run_id == batch.holder,
                )
            )
            if not kept:
                session.delete(batch)
                return None
            pairs = [
                (task_id, prompt_hash)
                for task_id, prompt_hash in zip(batch.task_ids, batch.prompt_hashes, strict=True)
                if task_id in kept
            ]
            batch.task_ids = [task_id for task_id, _ in pairs]
            batch.prompt_hashes = [prompt_hash for _, prompt_hash in pairs]
        return batch

    def batch_submitted(
        self, batch_id: int, provider_batch_id: str, expires_at: datetime | None,
        lease_until: datetime, estimated_usd: Decimal | None = None,
    ) -> ProviderBatch | None:  # fmt: skip
        """The provider has the batch: its id, when it gives up on it, its estimated cost (spend
        in flight until it is collected) and the claims' lease pushed to `lease_until`, in one
        transaction. A row no longer `submitting` (an operator released it meanwhile) keeps its
        status and claims as they are, records the provider's id and the fact, and None is
        returned: the batch cannot be collected and is best cancelled at the provider."""
        with self._session() as session, session.begin():
            batch = session.get(ProviderBatch, batch_id, with_for_update=True)
            if batch is None:
                raise ValueError(f"no provider batch #{batch_id}")
            if batch.status != "submitting":
                batch.batch_id = provider_batch_id
                batch.error = (
                    f"{batch.error or batch.status}; the provider took it afterwards as "
                    f"{provider_batch_id}: cancel it there"
                )
                return None
            batch.batch_id = provider_batch_id
            batch.expires_at = expires_at
            batch.estimated_usd = estimated_usd
            batch.status = "in_progress"
            session.execute(
                update(DraftClaim)
                .where(DraftClaim.run_id == batch.holder, DraftClaim.provider == batch.provider)
                .values(lease_expires_at=lease_until)
            )
        return batch

    def close_batch(
        self, batch_id: int, status: str, error: str | None = None, *, only_from: str | None = None
    ) -> bool:
        """End a batch as `status` (`failed` when the provider refused it, `collected`) with
        the reason, and release whatever claims it still holds, in one transaction. With
        `only_from`, only a batch in that status is ended (False when it was not: a run moved
        it meanwhile)."""
        with self._session() as session, session.begin():
            batch = session.get(ProviderBatch, batch_id, with_for_update=True)
            if batch is None:
                raise ValueError(f"no provider batch #{batch_id}")
            if only_from is not None and batch.status != only_from:
                return False
            batch.status = status
            batch.error = error if error is not None else batch.error
            batch.finished_at = batch.finished_at or store_now(session)
            _release_all(session, batch)
            return True

    def release_item(
        self,
        task_id: str,
        provider: str,
        holder: str,
        calls: Sequence[FinishedCall] = (),
        run_id: str | None = None,
    ) -> bool:
        """Release the claim a batch holds on one task and record the item's calls (for run
        `run_id`), in one transaction, if the batch still holds it (True): two collections
        record it once."""
        with self._session() as session, session.begin():
            released = session.execute(
                delete(DraftClaim).where(
                    DraftClaim.task_id == task_id,
                    DraftClaim.provider == provider,
                    DraftClaim.run_id == holder,
                )
            )
            if released.rowcount != 1:  # type: ignore[attr-defined]
                record_paid_calls(session, task_id, run_id, calls)
                return False
            session.add_all(call.row(task_id, run_id) for call in calls)
            return True

    def record_lost_items(
        self, calls: Sequence[tuple[str, FinishedCall]], run_id: str | None
    ) -> None:
        """Record the answered items (task id, call) of a batch that no longer holds their
        tasks, in one transaction: paid all the same, each recorded once, by its provider's
        request id (one without is left out, as `record_paid_calls` does). Most are known
        already (collected earlier): they are looked up together, not one by one."""
        identified = [(task_id, call) for task_id, call in calls if call.attempt.request_id]
        if not identified:
            return
        with self._session() as session, session.begin():
            known: set[tuple[str, str | None]] = set()
            for start in range(0, len(identified), LOOKUP_CHUNK):
                chunk = identified[start : start + LOOKUP_CHUNK]
                rows = session.execute(
                    select(LLMCall.provider, LLMCall.request_id).where(
                        LLMCall.request_id.in_([c.attempt.request_id for _, c in chunk])
                    )
                )
                known |= {(provider, request_id) for provider, request_id in rows}
            session.add_all(
                call.row(task_id, run_id)
                for task_id, call in identified
                if (call.attempt.provider, call.attempt.request_id) not in known
            )

    def batches_to_poll(self, limit: int, polled_before: datetime) -> list[ProviderBatch]:
        """Up to `limit` batches the provider is working on, not asked about since
        `polled_before`, those asked about longest ago first."""
        with self._reading() as session:
            return list(
                session.scalars(
                    select(ProviderBatch)
                    .where(
                        ProviderBatch.status == "in_progress",
                        (ProviderBatch.polled_at.is_(None))
                        | (ProviderBatch.polled_at < polled_before),
                    )
                    .order_by(
                        ProviderBatch.polled_at.is_not(None),
                        ProviderBatch.polled_at,
                        ProviderBatch.id,
                    )
                    .limit(limit)
                )
            )

    def batch_polled(
        self,
        batch_id: int,
        status: str | None,
        counts: dict[str, int] | None = None,
        error: str | None = None,
    ) -> None:
        """What the provider said of a batch still `in_progress`: its status (None: it could
        not be asked, `error` says why) and item counts; the first finished status found sets
        `finished_at`."""
        values: dict[str, Any] = {"error": error}
        if counts is not None:
            values["request_counts"] = counts
        with self._session() as session, session.begin():
            now = store_now(session)
            values["polled_at"] = now
            if status is not None:
                values["status"] = status
                if status in FINISHED_BATCH_STATUSES:
                    values["finished_at"] = now
            session.execute(
                update(ProviderBatch)
                .where(ProviderBatch.id == batch_id, ProviderBatch.status == "in_progress")
                .values(**values)
            )

    def batches_to_collect(self) -> list[HeldBatch]:
        """Batches the provider is done with and not yet collected, with the tasks they still
        hold."""
        with self._reading() as session:
            batches = session.scalars(
                select(ProviderBatch)
                .where(ProviderBatch.status.in_(FINISHED_BATCH_STATUSES))
                .order_by(ProviderBatch.id)
            ).all()
            return _held(session, batches)

    def finished_batches_holding(self, task_ids: Sequence[str], provider: str) -> list[HeldBatch]:
        """The batches of `provider` that are done at the provider and still hold claims on
        some of `task_ids`, each with those tasks: what a collecting step collects."""
        if not task_ids:
            return []
        wanted = set(task_ids)
        with self._reading() as session:
            batches = session.scalars(
                select(ProviderBatch)
                .where(
                    ProviderBatch.provider == provider,
                    ProviderBatch.status.in_(FINISHED_BATCH_STATUSES),
                    ProviderBatch.holder.in_(
                        select(DraftClaim.run_id).where(
                            DraftClaim.task_id.in_(sorted(wanted)),
                            DraftClaim.provider == provider,
                        )
                    ),
                )
                .order_by(ProviderBatch.id)
            ).all()
            return [
                HeldBatch(
                    held.batch,
                    [task_id for task_id in held.task_ids if task_id in wanted],
                    held.lost,
                )
                for held in _held(session, batches)
            ]

    def settle_batch(self, batch_id: int) -> bool:
        """Mark a finished batch `collected` once it holds no claim (each item stored, or its
        task back in `drafting`); True if it is collected now."""
        with self._session() as session, session.begin():
            batch = session.get(ProviderBatch, batch_id, with_for_update=True)
            if batch is None:
                return False
            if batch.status == "collected":
                return True
            if batch.status not in FINISHED_BATCH_STATUSES or _held(session, [batch])[0].task_ids:
                return False
            batch.status = "collected"
            return True

    def stale_submissions(self, started_before: datetime) -> list[ProviderBatch]:
        """Batches still `submitting` that began before `started_before`: the run that sent
        them died before it learnt the provider's batch id (an operator's case)."""
        with self._reading() as session:
            return list(
                session.scalars(
                    select(ProviderBatch)
                    .where(
                        ProviderBatch.status == "submitting",
                        ProviderBatch.submitted_at < started_before,
                    )
                    .order_by(ProviderBatch.id)
                )
            )

    def provider_batches(self, statuses: Sequence[str] | None = None) -> list[HeldBatch]:
        """Every batch (of `statuses`), oldest first, with the tasks it still holds."""
        query = select(ProviderBatch).order_by(ProviderBatch.id)
        if statuses is not None:
            query = query.where(ProviderBatch.status.in_(list(statuses)))
        with self._reading() as session:
            return _held(session, session.scalars(query).all())
