"""What every part of the store shares: an engine, short-lived sessions on it, and the clock
leases are measured on."""

from datetime import datetime

from sqlalchemy import ColumnElement, Engine, func, select
from sqlalchemy.orm import Session

from drafts_pipeline.store.models import DocumentationTask, DraftVersion, utcnow
from drafts_pipeline.store.schema import READ_ONLY


class Queries:
    """Base of the store's parts; `DraftStore` supplies the engine."""

    @property
    def engine(self) -> Engine:
        raise NotImplementedError

    def _session(self) -> Session:
        """A session whose transactions may write: on SQLite each takes the write lock as it
        begins (`BEGIN IMMEDIATE`)."""
        return Session(self.engine, expire_on_commit=False)

    def _reading(self) -> Session:
        """A session that only reads: on SQLite its transactions read the last committed state
        beside a writer instead of queueing for the write lock (WAL), so reads neither wait
        behind a long write nor hold up the writers."""
        return Session(self.engine.execution_options(**READ_ONLY), expire_on_commit=False)


def on_current_ballot() -> ColumnElement[bool]:
    """A draft of its task's current ballot: what ballots, reuse, labels and the voting set
    read; the drafts of earlier ballots are history."""
    current = (
        select(DocumentationTask.ballot)
        .where(DocumentationTask.id == DraftVersion.task_id)
        .correlate(DraftVersion)
        .scalar_subquery()
    )
    return DraftVersion.ballot == current


def store_now(session: Session) -> datetime:
    """The time leases are measured in: the database's clock on PostgreSQL, so that machines
    whose clocks disagree still agree on which lease has passed; this process's elsewhere
    (SQLite is one machine's file). The moment of the call (`clock_timestamp()`), not the
    transaction's start (`now()`), which a wait for locks may have left far behind."""
    if session.get_bind().dialect.name == "postgresql":
        moment = session.scalar(select(func.clock_timestamp()))
        if isinstance(moment, datetime):
            return moment
    return utcnow()
