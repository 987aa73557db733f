"""The draft store: SQLAlchemy models, migrations, and `DraftStore` by aggregate (tasks, drafts
and claims, ballots, reports). It knows nothing of Dagster's assets or of the drafting rules."""

from drafts_pipeline.store.drafts import DraftRecord
from drafts_pipeline.store.resource import DraftStore
from drafts_pipeline.store.tasks import TaskInput, TaskSizeLimits

__all__ = ["DraftRecord", "DraftStore", "TaskInput", "TaskSizeLimits"]
