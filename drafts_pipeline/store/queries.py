"""What every part of the store shares: an engine and short-lived sessions on it."""

from sqlalchemy import Engine
from sqlalchemy.orm import Session


class Queries:
    """Base of the store's parts; `DraftStore` supplies the engine."""

    @property
    def engine(self) -> Engine:
        raise NotImplementedError

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)
