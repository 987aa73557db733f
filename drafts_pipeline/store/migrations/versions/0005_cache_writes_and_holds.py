"""Cache-write tokens on calls and drafts; tasks held back until a time (a budget reached).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    for table_name in ("llm_calls", "draft_versions"):
        with op.batch_alter_table(table_name) as table:
            table.add_column(sa.Column("cache_write_tokens", sa.Integer()))
    with op.batch_alter_table("documentation_tasks") as table:
        table.add_column(sa.Column("held_until", timestamp))
        table.add_column(sa.Column("hold_reason", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("documentation_tasks") as table:
        table.drop_column("hold_reason")
        table.drop_column("held_until")
    for table_name in ("draft_versions", "llm_calls"):
        with op.batch_alter_table(table_name) as table:
            table.drop_column("cache_write_tokens")
