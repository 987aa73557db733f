"""Claims on (task, provider) work, and calls recorded when they are sent.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "draft_claims",
        sa.Column(
            "task_id",
            sa.String(128),
            sa.ForeignKey("documentation_tasks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("claimed_at", timestamp, nullable=False),
        sa.Column("lease_expires_at", timestamp, nullable=False),
    )
    with op.batch_alter_table("llm_calls") as table:
        table.add_column(sa.Column("finished_at", timestamp))
    # Calls stored before this revision were written once complete.
    op.execute("UPDATE llm_calls SET finished_at = started_at")


def downgrade() -> None:
    with op.batch_alter_table("llm_calls") as table:
        table.drop_column("finished_at")
    op.drop_table("draft_claims")
