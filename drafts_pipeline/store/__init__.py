"""The draft store: SQLAlchemy models, migrations and the `DraftStore` resource."""

from drafts_pipeline.store.draft_store import BallotOutcome, DraftRecord, DraftStore, TaskInput

__all__ = ["BallotOutcome", "DraftRecord", "DraftStore", "TaskInput"]
