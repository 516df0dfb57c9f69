"""mail log: app_mail_log (app.mail.models.MailLog), one row per transactional mail

Revision ID: c3d4e5f6a7b8
Revises: b7c1d2e3f4a5
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision = "c3d4e5f6a7b8"
down_revision = "b7c1d2e3f4a5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_mail_log",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("to_address", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("tag", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("smtp_answer", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("sent_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_mail_log")),
    )
    with op.batch_alter_table("app_mail_log", schema=None) as batch_op:
        batch_op.create_index("ix_app_mail_log_created_at", ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_app_mail_log_to_address"), ["to_address"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("app_mail_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_mail_log_to_address"))
        batch_op.drop_index("ix_app_mail_log_created_at")
    op.drop_table("app_mail_log")
