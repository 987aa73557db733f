"""What every part of the store shares: an engine, short-lived sessions on it, and the clock
leases are measured on."""

from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from drafts_pipeline.store.models import utcnow


class Queries:
    """Base of the store's parts; `DraftStore` supplies the engine."""

    @property
    def engine(self) -> Engine:
        raise NotImplementedError

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)


def store_now(session: Session) -> datetime:
    """The time leases are measured in: the database's clock on PostgreSQL, so that machines
    whose clocks disagree still agree on which lease has passed; this process's elsewhere
    (SQLite is one machine's file)."""
    if session.get_bind().dialect.name == "postgresql":
        moment = session.scalar(select(func.now()))
        if isinstance(moment, datetime):
            return moment
    return utcnow()
