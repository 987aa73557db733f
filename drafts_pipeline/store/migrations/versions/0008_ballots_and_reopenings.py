"""Ballots and task history: a task's current ballot and source hash, the ballot of each draft
and vote, drafts carried into a new ballot, the `retired` status, and the reopenings.

Every row stored before is on ballot 1.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

timestamp = sa.DateTime(timezone=True)
Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OLD_STATUSES = "status IN ('drafting', 'voting', 'failed')"
NEW_STATUSES = "status IN ('drafting', 'voting', 'failed', 'retired')"


def _ballot() -> sa.Column[int]:
    return sa.Column("ballot", sa.Integer(), nullable=False, server_default="1")


def upgrade() -> None:
    with op.batch_alter_table("documentation_tasks") as table:
        table.add_column(sa.Column("source_hash", sa.String(64)))
        table.add_column(_ballot())
        table.drop_constraint("ck_tasks_status", type_="check")
        table.create_check_constraint("ck_tasks_status", NEW_STATUSES)
        table.create_check_constraint("ck_tasks_ballot", "ballot >= 1")
    with op.batch_alter_table("draft_versions") as table:
        table.add_column(_ballot())
        table.add_column(
            sa.Column(
                "carried_from",
                Serial,
                sa.ForeignKey(
                    "draft_versions.id", name="fk_drafts_carried_from", ondelete="SET NULL"
                ),
            )
        )
        table.drop_constraint("uq_drafts_task_label", type_="unique")
        table.create_unique_constraint(
            "uq_drafts_task_ballot_label", ["task_id", "ballot", "label"]
        )
        table.create_check_constraint("ck_drafts_ballot", "ballot >= 1")
    op.drop_index("uq_votes_current_per_voter", table_name="votes")
    with op.batch_alter_table("votes") as table:
        table.add_column(_ballot())
    op.create_index(
        "uq_votes_current_per_voter",
        "votes",
        ["task_id", "ballot", "voter"],
        unique=True,
        sqlite_where=sa.text("replaced_at IS NULL"),
        postgresql_where=sa.text("replaced_at IS NULL"),
    )
    op.create_table(
        "task_reopenings",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column(
            "task_id",
            sa.String(128),
            sa.ForeignKey("documentation_tasks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ballot", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=False),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("run_id", sa.String(64)),
        sa.Column("created_at", timestamp, nullable=False),
        sa.CheckConstraint(
            "cause IN ('source_changed', 'reopen', 'regenerate')", name="ck_reopenings_cause"
        ),
    )
    op.create_index("ix_task_reopenings_task_id", "task_reopenings", ["task_id"])


def downgrade() -> None:
    """Back to one ballot per task: refused while any task has been reopened or retired, as
    the older schema cannot hold its history."""
    connection = op.get_bind()
    reopened = connection.scalar(
        sa.text("SELECT count(*) FROM documentation_tasks WHERE ballot > 1 OR status = 'retired'")
    )
    if reopened:
        raise RuntimeError(
            f"{reopened} task(s) were reopened or retired: their history does not fit schema 0007"
        )
    op.drop_index("ix_task_reopenings_task_id", table_name="task_reopenings")
    op.drop_table("task_reopenings")
    op.drop_index("uq_votes_current_per_voter", table_name="votes")
    with op.batch_alter_table("votes") as table:
        table.drop_column("ballot")
    op.create_index(
        "uq_votes_current_per_voter",
        "votes",
        ["task_id", "voter"],
        unique=True,
        sqlite_where=sa.text("replaced_at IS NULL"),
        postgresql_where=sa.text("replaced_at IS NULL"),
    )
    with op.batch_alter_table("draft_versions") as table:
        table.drop_constraint("ck_drafts_ballot", type_="check")
        table.drop_constraint("uq_drafts_task_ballot_label", type_="unique")
        table.create_unique_constraint("uq_drafts_task_label", ["task_id", "label"])
        table.drop_constraint("fk_drafts_carried_from", type_="foreignkey")
        table.drop_column("carried_from")
        table.drop_column("ballot")
    with op.batch_alter_table("documentation_tasks") as table:
        table.drop_constraint("ck_tasks_ballot", type_="check")
        table.drop_constraint("ck_tasks_status", type_="check")
        table.create_check_constraint("ck_tasks_status", OLD_STATUSES)
        table.drop_column("ballot")
        table.drop_column("source_hash")
