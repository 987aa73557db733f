"""Batches sent to the providers' batch APIs, with the tasks they claim.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

timestamp = sa.DateTime(timezone=True)
serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "provider_batches",
        sa.Column("id", serial, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("settings_hash", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(128)),
        sa.Column("holder", sa.String(64), nullable=False, unique=True),
        sa.Column("run_id", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("task_ids", sa.JSON(), nullable=False),
        sa.Column("prompt_hashes", sa.JSON(), nullable=False),
        sa.Column("request_counts", sa.JSON()),
        sa.Column("submitted_at", timestamp, nullable=False),
        sa.Column("expires_at", timestamp),
        sa.Column("polled_at", timestamp),
        sa.Column("finished_at", timestamp),
        sa.Column("error", sa.Text()),
        sa.Column("estimated_usd", sa.Numeric(18, 8)),
        sa.UniqueConstraint("provider", "batch_id", name="uq_provider_batches_batch_id"),
        sa.CheckConstraint(
            "status IN ('submitting', 'in_progress', 'ended', 'expired', 'cancelled', "
            "'failed', 'collected')",
            name="ck_provider_batches_status",
        ),
    )
    op.create_index("ix_provider_batches_status", "provider_batches", ["status"])


def downgrade() -> None:
    op.drop_index("ix_provider_batches_status", table_name="provider_batches")
    op.drop_table("provider_batches")
