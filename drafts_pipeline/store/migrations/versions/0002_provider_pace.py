"""Each provider's request pace, shared by every process.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_pace",
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("next_start_at", sa.Float(), nullable=False),
        sa.Column("paused_until", sa.Float(), nullable=False),
        sa.Column("rate_factor", sa.Float(), nullable=False),
        sa.CheckConstraint("rate_factor > 0 AND rate_factor <= 1", name="ck_pace_rate_factor"),
    )


def downgrade() -> None:
    op.drop_table("provider_pace")
