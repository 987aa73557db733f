"""Alembic environment: the connection comes from `drafts_pipeline.store.schema.upgrade`."""

from alembic import context

from drafts_pipeline.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
