"""Per task: the folder discovery found it under, so that discovering another folder never
retires it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documentation_tasks") as table:
        table.add_column(sa.Column("source_root", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("documentation_tasks") as table:
        table.drop_column("source_root")
