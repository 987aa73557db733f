"""`DraftStore`: the Dagster resource over the draft store, made of its parts by aggregate."""

import dagster as dg
from sqlalchemy import Engine

from drafts_pipeline.store import schema
from drafts_pipeline.store.ballots import BallotQueries
from drafts_pipeline.store.batches import BatchQueries
from drafts_pipeline.store.drafts import DraftQueries
from drafts_pipeline.store.history import HistoryQueries
from drafts_pipeline.store.outages import riding_out
from drafts_pipeline.store.pacing import StorePaceBook, StoreSendingTurn
from drafts_pipeline.store.reports import ReportQueries
from drafts_pipeline.store.tasks import TaskQueries
from drafts_pipeline.store.vote_results import VoteResultQueries
from drafts_pipeline.store.votes import VoteQueries


class DraftStore(
    TaskQueries,
    HistoryQueries,
    DraftQueries,
    BallotQueries,
    BatchQueries,
    VoteQueries,
    VoteResultQueries,
    ReportQueries,
    dg.ConfigurableResource,
):
    """The relational store of tasks, drafts, claims, provider batches, calls and votes (SQLite
    or PostgreSQL)."""

    database_url: str

    @property
    def engine(self) -> Engine:
        return schema.engine_for(self.database_url)

    @riding_out
    def upgrade(self) -> None:
        schema.upgrade(self.database_url)

    @riding_out
    def require_current(self) -> None:
        schema.require_current(self.database_url)

    def pace_book(self, provider: str) -> StorePaceBook:
        """The request pace of `provider` that every process drafting on this store shares."""
        return StorePaceBook(self.engine, provider)

    def sending_turn(self, provider: str) -> StoreSendingTurn:
        """The turn to send requests to `provider`, one batch at a time across processes."""
        return StoreSendingTurn(self.engine, provider)
