"""Tasks, draft versions and LLM calls.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
money = sa.Numeric(18, 8)
timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "documentation_tasks",
        sa.Column("seq", serial, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("language", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(512), nullable=False),
        sa.Column("source_path", sa.String(1024)),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("prompt", sa.Text()),
        sa.Column("prompt_hash", sa.String(64)),
        sa.Column("template_version", sa.String(64)),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("updated_at", timestamp, nullable=False),
        sa.UniqueConstraint("id"),
        sa.CheckConstraint("status IN ('drafting', 'voting', 'failed')", name="ck_tasks_status"),
        sa.CheckConstraint("id NOT LIKE '%,%'", name="ck_tasks_id_no_comma"),
        sa.CheckConstraint("length(id) BETWEEN 1 AND 128", name="ck_tasks_id_length"),
        sa.CheckConstraint("attempts >= 0", name="ck_tasks_attempts"),
    )
    op.create_index("ix_tasks_status_seq", "documentation_tasks", ["status", "seq"])

    op.create_table(
        "draft_versions",
        sa.Column("id", serial, primary_key=True, autoincrement=True),
        sa.Column(
            "task_id",
            sa.String(128),
            sa.ForeignKey("documentation_tasks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(4)),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("prompt_used", sa.Text(), nullable=False),
        sa.Column("prompt_hash", sa.String(64), nullable=False),
        sa.Column("template_version", sa.String(64), nullable=False),
        sa.Column("settings_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("validation", sa.JSON(), nullable=False),
        sa.Column("finish_reason", sa.String(64)),
        sa.Column("request_id", sa.String(128)),
        sa.Column("input_tokens", sa.Integer()),
        sa.Column("output_tokens", sa.Integer()),
        sa.Column("cached_tokens", sa.Integer()),
        sa.Column("reasoning_tokens", sa.Integer()),
        sa.Column("cost_usd", money),
        sa.Column("latency_ms", sa.Integer()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("created_at", timestamp, nullable=False),
        sa.UniqueConstraint(
            "task_id", "provider", "version", name="uq_drafts_task_provider_version"
        ),
        sa.UniqueConstraint("task_id", "label", name="uq_drafts_task_label"),
        sa.CheckConstraint("status IN ('valid', 'invalid', 'failed')", name="ck_drafts_status"),
        sa.CheckConstraint("version >= 1", name="ck_drafts_version"),
        sa.CheckConstraint("label IS NULL OR status = 'valid'", name="ck_drafts_label_valid"),
    )
    op.create_index("ix_draft_versions_task_id", "draft_versions", ["task_id"])

    op.create_table(
        "llm_calls",
        sa.Column("id", serial, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(128), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("error_type", sa.String(128)),
        sa.Column("error_message", sa.Text()),
        sa.Column("request_id", sa.String(128)),
        sa.Column("input_tokens", sa.Integer()),
        sa.Column("output_tokens", sa.Integer()),
        sa.Column("cached_tokens", sa.Integer()),
        sa.Column("reasoning_tokens", sa.Integer()),
        sa.Column("cost_usd", money),
        sa.Column("latency_ms", sa.Integer()),
        sa.Column("started_at", timestamp, nullable=False),
        sa.Column("run_id", sa.String(64)),
    )
    op.create_index("ix_llm_calls_task_id", "llm_calls", ["task_id"])
    op.create_index("ix_llm_calls_started_at", "llm_calls", ["started_at"])


def downgrade() -> None:
    op.drop_table("llm_calls")
    op.drop_table("draft_versions")
    op.drop_index("ix_tasks_status_seq", table_name="documentation_tasks")
    op.drop_table("documentation_tasks")
