"""Votes: one current vote per voter and task, replaced votes kept as history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

timestamp = sa.DateTime(timezone=True)
Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "votes",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("vote_id", sa.String(128), nullable=False, unique=True),
        sa.Column(
            "task_id",
            sa.String(128),
            sa.ForeignKey("documentation_tasks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("voter", sa.String(128), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("display_order", sa.JSON()),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("choice", sa.String(64), nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("recorded_at", timestamp, nullable=False),
        sa.Column("replaced_at", timestamp),
        sa.CheckConstraint("kind IN ('winner', 'ranking', 'tie', 'all_bad')", name="ck_votes_kind"),
    )
    op.create_index("ix_votes_task_id", "votes", ["task_id"])
    op.create_index(
        "uq_votes_current_per_voter",
        "votes",
        ["task_id", "voter"],
        unique=True,
        sqlite_where=sa.text("replaced_at IS NULL"),
        postgresql_where=sa.text("replaced_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("votes")
