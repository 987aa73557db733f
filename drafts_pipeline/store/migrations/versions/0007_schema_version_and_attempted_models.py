"""Per draft: the output schema version it was asked for, and the models attempted for it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("draft_versions") as table:
        table.add_column(sa.Column("output_schema_version", sa.String(64)))
        table.add_column(sa.Column("attempted_models", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("draft_versions") as table:
        table.drop_column("attempted_models")
        table.drop_column("output_schema_version")
